"""Liveness and readiness endpoints."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import ReadinessProbesDep
from api.schemas.health import HealthPublic, ReadinessPublic
from api.services import health_service

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> HealthPublic:
    """Liveness: the process answers (no I/O)."""
    return HealthPublic(status="ok")


@router.get("/ready", responses={503: {"description": "A store is unreachable or read-only"}})
def ready(probes: ReadinessProbesDep) -> ReadinessPublic:
    """Readiness: every store is reachable and writable; 503 names the failing part."""
    return ReadinessPublic(status="ready", checks=health_service.check_readiness(probes))
