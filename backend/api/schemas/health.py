"""Response models of the health routes."""

from __future__ import annotations

from pydantic import BaseModel


class HealthPublic(BaseModel):
    status: str


class ReadinessPublic(BaseModel):
    status: str
    checks: dict[str, str]
