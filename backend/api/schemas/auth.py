"""Request and response models of the auth and admin routes (no secret ever in a Public model)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["admin", "user"]


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)


class UserPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    role: Role
    is_active: bool
    created_at: datetime


class TokenPublic(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int
    user: UserPublic


class LogoutPublic(BaseModel):
    refresh_tokens_revoked: int
    login_sessions_ended: int
    workspace_sessions_cleaned: int
    cache_entries_cleared: int
    failed_steps: list[str]


class PasswordChange(BaseModel):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


class PasswordChangePublic(BaseModel):
    other_sessions_ended: int


class UserCreate(BaseModel):
    username: str = Field(min_length=3, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    role: Role = "user"


class UserUpdate(BaseModel):
    role: Role | None = None
    is_active: bool | None = None


class AuditEntryPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    user_id: int | None
    action: str
    detail: str
    ip: str | None
    request_id: str | None
