"""Prometheus metrics of the whole server (every worker process), for admins and the scraper."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response

from api.deps import MetricsReader, MetricsServiceDep

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    dependencies=[MetricsReader],
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
        401: {"description": "No valid access token or metrics token"},
        403: {"description": "The access token is not an admin's"},
    },
)
def metrics(service: MetricsServiceDep, accept: Annotated[str | None, Header()] = None) -> Response:
    """Prometheus exposition (text format; OpenMetrics when the Accept header asks for it)."""
    body, content_type = service.scrape(accept)
    return Response(content=body, media_type=content_type)
