"""Login, refresh, logout, the caller's profile and password change."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Cookie, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from api.core.config import Settings
from api.deps import (
    AuthServiceDep,
    BearerTokenDep,
    CurrentUser,
    RequestMetaDep,
    SettingsDep,
    UserServiceDep,
)
from api.errors import AppError
from api.schemas.auth import (
    LoginRequest,
    LogoutPublic,
    PasswordChange,
    PasswordChangePublic,
    TokenPublic,
    UserPublic,
)
from api.services.auth_service import InvalidRefreshTokenError, TokenPair

router = APIRouter(prefix="/auth", tags=["auth"])

REFRESH_COOKIE = "ret_refresh"
# Every route that reads the refresh cookie lives under this path, so the browser sends it there.
REFRESH_COOKIE_PATH = "/api/auth"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
LOGIN_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": LoginRequest.model_json_schema()},
            "application/x-www-form-urlencoded": {"schema": LoginRequest.model_json_schema()},
        },
    }
}


class UnsupportedLoginBodyError(AppError):
    status_code = 415
    code = "unsupported_media_type"


async def read_login_request(request: Request) -> LoginRequest:
    """Credentials as JSON, or as the OAuth2 password form the /docs Authorize button sends."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in FORM_TYPES:
        form = await request.form()
        raw: Any = {"username": form.get("username"), "password": form.get("password")}
    elif content_type == "application/json":
        try:
            raw = await request.json()
        except ValueError:
            raise RequestValidationError(
                [{"type": "json_invalid", "loc": ("body",), "msg": "Invalid JSON"}]
            ) from None
    else:
        raise UnsupportedLoginBodyError("Send the credentials as JSON or as an OAuth2 password form")
    try:
        return LoginRequest.model_validate(raw)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None


LoginBody = Annotated[LoginRequest, Depends(read_login_request)]
RefreshCookie = Annotated[str | None, Cookie(alias=REFRESH_COOKIE)]


def set_refresh_cookie(response: Response, pair: TokenPair, settings: Settings) -> None:
    response.set_cookie(
        REFRESH_COOKIE,
        pair.refresh_token,
        max_age=pair.refresh_expires_in,
        path=REFRESH_COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=settings.env == "production",
    )


def token_response(response: Response, pair: TokenPair, settings: Settings) -> TokenPublic:
    set_refresh_cookie(response, pair, settings)
    response.headers["Cache-Control"] = "no-store"
    return TokenPublic(
        access_token=pair.access_token, expires_in=pair.expires_in, user=UserPublic.model_validate(pair.user)
    )


@router.post("/login", openapi_extra=LOGIN_BODY)
def login(
    credentials: LoginBody,
    auth: AuthServiceDep,
    meta: RequestMetaDep,
    settings: SettingsDep,
    response: Response,
) -> TokenPublic:
    """Log in: an access token in the body, a refresh token in an HttpOnly cookie."""
    pair = auth.login(credentials.username, credentials.password, meta)
    return token_response(response, pair, settings)


@router.post("/refresh")
def refresh(
    auth: AuthServiceDep,
    meta: RequestMetaDep,
    settings: SettingsDep,
    response: Response,
    cookie: RefreshCookie = None,
) -> TokenPublic:
    """Trade the refresh cookie for a new access token and a new refresh cookie (rotation)."""
    if not cookie:
        raise InvalidRefreshTokenError("No refresh cookie: log in again")
    return token_response(response, auth.refresh(cookie, meta), settings)


@router.post("/logout")
def logout(
    auth: AuthServiceDep,
    meta: RequestMetaDep,
    token: BearerTokenDep,
    response: Response,
    cookie: RefreshCookie = None,
) -> LogoutPublic:
    """Log out everywhere and clean up everything the user left (works with a just-expired token)."""
    user_id = auth.identify_for_logout(token, cookie)
    report = auth.logout(user_id, meta)
    response.delete_cookie(REFRESH_COOKIE, path=REFRESH_COOKIE_PATH, httponly=True, samesite="lax")
    return LogoutPublic(
        refresh_tokens_revoked=report.refresh_tokens_revoked,
        login_sessions_ended=report.login_sessions_ended,
        workspace_sessions_cleaned=report.workspace_sessions_cleaned,
        cache_entries_cleared=report.cache_entries_cleared,
        failed_steps=report.failed_steps,
    )


@router.get("/me")
def me(user: CurrentUser, users: UserServiceDep) -> UserPublic:
    """The logged-in user."""
    return UserPublic.model_validate(users.get_user(user.user_id))


@router.post("/password")
def change_password(
    body: PasswordChange, user: CurrentUser, auth: AuthServiceDep, meta: RequestMetaDep
) -> PasswordChangePublic:
    """Change the password (needs the current one); every other login session ends."""
    ended = auth.change_password(user, body.current_password, body.new_password, meta)
    return PasswordChangePublic(other_sessions_ended=ended)
