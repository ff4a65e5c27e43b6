"""The long-lived resources of one app instance, built by ``create_app()``'s lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import SecretStr

from api.core.config import Settings
from api.services.health_service import ReadinessProbe


@dataclass(slots=True)
class AppResources:
    """Everything the lifespan builds; handlers reach it through the aliases in ``api.deps``."""

    settings: Settings
    jwt_secret: SecretStr
    readiness_probes: dict[str, ReadinessProbe] = field(default_factory=dict)
