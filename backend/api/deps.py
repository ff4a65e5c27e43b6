"""Every FastAPI dependency, as an ``Annotated`` alias handlers take as typed parameters."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from api.core.cache_contract import CacheBackend
from api.core.config import Settings
from api.errors import ForbiddenError
from api.resources import AppResources
from api.services.auth_service import AuthService, InvalidAccessTokenError, Principal, RequestMeta
from api.services.conversion_jobs import ConversionJobs
from api.services.health_service import ReadinessProbe
from api.services.job_service import JobService
from api.services.metrics import MetricsService
from api.services.rate_limiter import RateLimiter
from api.services.storage_service import StorageService
from api.services.user_service import UserService
from api.services.workspace_records import WorkspaceSession
from api.workers.queue import JobQueue

# The OAuth2 password flow makes the Authorize button in /docs log in through /api/auth/login.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/auth/login", auto_error=False)


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


def get_cache(resources: ResourcesDep) -> CacheBackend:
    return resources.session_cache


def get_auth_service(resources: ResourcesDep) -> AuthService:
    return resources.auth


def get_user_service(resources: ResourcesDep) -> UserService:
    return resources.users


def get_rate_limiter(resources: ResourcesDep) -> RateLimiter:
    return resources.rate_limiter


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
ReadinessProbesDep = Annotated[dict[str, ReadinessProbe], Depends(get_readiness_probes)]
CacheDep = Annotated[CacheBackend, Depends(get_cache)]
AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]
UserServiceDep = Annotated[UserService, Depends(get_user_service)]
RateLimiterDep = Annotated[RateLimiter, Depends(get_rate_limiter)]
BearerTokenDep = Annotated[str | None, Depends(oauth2_scheme)]


def get_request_meta(request: Request) -> RequestMeta:
    """Client address, user agent and request id, for audit entries."""
    client = request.client.host if request.client else None
    request_id = getattr(request.state, "request_id", None)
    return RequestMeta(ip=client, user_agent=request.headers.get("user-agent"), request_id=request_id)


RequestMetaDep = Annotated[RequestMeta, Depends(get_request_meta)]


def get_current_user(token: BearerTokenDep, auth: AuthServiceDep) -> Principal:
    """The caller, from a valid access token whose login session and account are still live."""
    if not token:
        raise InvalidAccessTokenError("Not authenticated: send an access token as 'Authorization: Bearer …'")
    return auth.authenticate(token)


CurrentUser = Annotated[Principal, Depends(get_current_user)]


def get_admin_user(user: CurrentUser) -> Principal:
    """The caller, who must be an admin."""
    if not user.is_admin:
        raise ForbiddenError("This needs the admin role")
    return user


AdminUser = Annotated[Principal, Depends(get_admin_user)]


def get_storage(resources: ResourcesDep) -> StorageService:
    return resources.storage


StorageDep = Annotated[StorageService, Depends(get_storage)]


def get_owned_session(session_id: str, user: CurrentUser, storage: StorageDep) -> WorkspaceSession:
    """The workspace session named in the path, if the caller owns it; anyone else gets 404."""
    return storage.owned_session(session_id, user.user_id)


OwnedSession = Annotated[WorkspaceSession, Depends(get_owned_session)]


def get_job_queue(resources: ResourcesDep) -> JobQueue:
    return resources.jobs


JobQueueDep = Annotated[JobQueue, Depends(get_job_queue)]


def get_job_service(queue: JobQueueDep) -> JobService:
    return JobService(queue)


JobServiceDep = Annotated[JobService, Depends(get_job_service)]


def get_conversion_jobs(queue: JobQueueDep, storage: StorageDep) -> ConversionJobs:
    return ConversionJobs(queue, storage)


ConversionJobsDep = Annotated[ConversionJobs, Depends(get_conversion_jobs)]


def get_metrics_service(resources: ResourcesDep) -> MetricsService:
    if resources.metrics is None:
        raise RuntimeError("the metrics service is missing: METRICS_ENABLED is false")
    return resources.metrics


MetricsServiceDep = Annotated[MetricsService, Depends(get_metrics_service)]


def require_metrics_reader(token: BearerTokenDep, settings: SettingsDep, auth: AuthServiceDep) -> None:
    """Admit the scraper's ``METRICS_BEARER_TOKEN`` (when set) or an admin's access token."""
    configured = settings.metrics_bearer_token
    expected = configured.get_secret_value().encode() if configured else b""
    if token and expected and hmac.compare_digest(token.encode(), expected):
        return
    get_admin_user(get_current_user(token, auth))


MetricsReader = Depends(require_metrics_reader)
