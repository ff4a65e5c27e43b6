"""Every FastAPI dependency, as an ``Annotated`` alias handlers take as typed parameters."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.core.config import Settings
from api.resources import AppResources
from api.services.health_service import ReadinessProbe


def get_resources(request: Request) -> AppResources:
    """The long-lived resources the lifespan built for this app."""
    resources: AppResources | None = getattr(request.app.state, "resources", None)
    if resources is None:
        raise RuntimeError("app resources are missing: create_app()'s lifespan has not run")
    return resources


ResourcesDep = Annotated[AppResources, Depends(get_resources)]


def get_app_settings(resources: ResourcesDep) -> Settings:
    return resources.settings


def get_readiness_probes(resources: ResourcesDep) -> dict[str, ReadinessProbe]:
    return resources.readiness_probes


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
ReadinessProbesDep = Annotated[dict[str, ReadinessProbe], Depends(get_readiness_probes)]
