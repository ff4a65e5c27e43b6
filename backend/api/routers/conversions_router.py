"""Conversions of a workspace session (owner only): start one, read the latest, preview tables.

Progress is read through the jobs API (``GET /api/jobs/{job_id}``, or its events); results are
downloaded through the workspace file routes.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from api.deps import ConversionJobsDep, CurrentUser, OwnedSession
from api.schemas.conversions import (
    ConversionAccepted,
    ConversionCreate,
    ConversionLatestPublic,
    TablePagePublic,
)
from api.schemas.jobs import JobPublic

router = APIRouter(prefix="/sessions/{session_id}", tags=["conversions"])

MAX_PAGE_ROWS = 1000


@router.post("/conversions", status_code=status.HTTP_202_ACCEPTED)
def start_conversion(
    session: OwnedSession,
    user: CurrentUser,
    conversions: ConversionJobsDep,
    body: ConversionCreate | None = None,
) -> ConversionAccepted:
    """Start converting the session's uploads to tables; follow the job through the jobs API."""
    job = conversions.start(user, session, (body or ConversionCreate()).options())
    return ConversionAccepted.of(JobPublic.of(job))


@router.get("/conversions/latest")
def latest_conversion(session: OwnedSession, conversions: ConversionJobsDep) -> ConversionLatestPublic:
    """The newest conversion job of the session, and the manifest of the outputs in place."""
    return ConversionLatestPublic.of(conversions.latest(session))


@router.get("/tables/{record_type}")
def table_rows(
    session: OwnedSession,
    record_type: str,
    conversions: ConversionJobsDep,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_ROWS)] = 100,
) -> TablePagePublic:
    """A page of rows of one converted table (a preview; download the CSV for all of it)."""
    return TablePagePublic.of(conversions.table_page(session, record_type, offset, limit), limit)
