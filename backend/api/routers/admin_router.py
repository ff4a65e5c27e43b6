"""User administration and the audit log (admin role only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from api.deps import AdminUser, RequestMetaDep, UserServiceDep
from api.schemas.auth import AuditEntryPublic, UserCreate, UserPublic, UserUpdate
from api.services.user_service import UserChanges

router = APIRouter(prefix="/admin", tags=["admin"])

Offset = Annotated[int, Query(ge=0)]
Limit = Annotated[int, Query(ge=1, le=500)]


@router.get("/users")
def list_users(
    admin: AdminUser, users: UserServiceDep, offset: Offset = 0, limit: Limit = 100
) -> list[UserPublic]:
    """Every user, by id."""
    return [UserPublic.model_validate(user) for user in users.list_users(offset, limit)]


@router.post("/users", status_code=status.HTTP_201_CREATED)
def create_user(
    body: UserCreate, admin: AdminUser, users: UserServiceDep, meta: RequestMetaDep
) -> UserPublic:
    """Create a user."""
    return UserPublic.model_validate(users.create_user(body.username, body.password, body.role, meta))


@router.patch("/users/{user_id}")
def update_user(
    user_id: int, body: UserUpdate, admin: AdminUser, users: UserServiceDep, meta: RequestMetaDep
) -> UserPublic:
    """Change a user's role or active flag; disabling ends their login sessions at once."""
    changes = UserChanges(role=body.role, is_active=body.is_active)
    return UserPublic.model_validate(users.update_user(user_id, changes, meta))


@router.get("/audit")
def list_audit(
    admin: AdminUser,
    users: UserServiceDep,
    offset: Offset = 0,
    limit: Limit = 100,
    user_id: int | None = None,
) -> list[AuditEntryPublic]:
    """Audit entries, newest first."""
    return [AuditEntryPublic.model_validate(entry) for entry in users.list_audit(offset, limit, user_id)]
