"""Admin-only user management and audit log."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.conftest import PASSWORD, UserFactory

ADMIN_ROUTES = [
    ("GET", "/api/admin/users", None),
    ("POST", "/api/admin/users", {"username": "newbie", "password": PASSWORD}),
    ("PATCH", "/api/admin/users/1", {"role": "admin"}),
    ("GET", "/api/admin/audit", None),
]


@pytest.fixture
def admin_headers(users: UserFactory) -> dict[str, str]:
    users.create("root", role="admin")
    return users.login("root")


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
def test_non_admins_get_403_on_admin_routes(
    client: TestClient, auth_headers: dict[str, str], method: str, path: str, body: object
) -> None:
    response = client.request(method, path, json=body, headers=auth_headers)
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
def test_anonymous_callers_get_401_on_admin_routes(
    client: TestClient, method: str, path: str, body: object
) -> None:
    assert client.request(method, path, json=body).status_code == 401


def test_admin_creates_and_lists_users(client: TestClient, admin_headers: dict[str, str]) -> None:
    created = client.post(
        "/api/admin/users",
        json={"username": "bob", "password": PASSWORD, "role": "user"},
        headers=admin_headers,
    )
    assert created.status_code == 201
    assert created.json()["username"] == "bob"
    listed = client.get("/api/admin/users", headers=admin_headers).json()
    assert [user["username"] for user in listed] == ["root", "bob"]
    assert all("password_hash" not in user for user in listed)


def test_duplicate_username_in_other_case_is_409(client: TestClient, admin_headers: dict[str, str]) -> None:
    response = client.post(
        "/api/admin/users", json={"username": "ROOT", "password": PASSWORD}, headers=admin_headers
    )
    assert response.status_code == 409
    assert response.json()["code"] == "conflict"


@pytest.mark.parametrize(
    ("username", "password", "code"),
    [
        ("bob", "short", "weak_password"),
        ("bob", "bob-bob-bob-bob", "weak_password"),
        ("bad name!", PASSWORD, "invalid_username"),
    ],
)
def test_create_user_enforces_rules(
    client: TestClient, admin_headers: dict[str, str], username: str, password: str, code: str
) -> None:
    response = client.post(
        "/api/admin/users", json={"username": username, "password": password}, headers=admin_headers
    )
    assert response.status_code == 422
    assert response.json()["code"] == code


def test_disabling_a_user_ends_their_sessions_at_once(
    client: TestClient, users: UserFactory, admin_headers: dict[str, str]
) -> None:
    bob = users.create("bob")
    bob_headers = users.login("bob")
    assert client.get("/api/auth/me", headers=bob_headers).status_code == 200
    response = client.patch(f"/api/admin/users/{bob}", json={"is_active": False}, headers=admin_headers)
    assert response.status_code == 200
    assert response.json()["is_active"] is False
    assert client.get("/api/auth/me", headers=bob_headers).status_code == 401
    refused = client.post("/api/auth/login", json={"username": "bob", "password": PASSWORD})
    assert refused.json()["code"] == "invalid_credentials"


def test_role_change_applies_to_the_next_request(
    client: TestClient, users: UserFactory, admin_headers: dict[str, str]
) -> None:
    bob = users.create("bob")
    bob_headers = users.login("bob")
    client.patch(f"/api/admin/users/{bob}", json={"role": "admin"}, headers=admin_headers)
    assert client.get("/api/admin/users", headers=bob_headers).status_code == 200


def test_patch_unknown_user_is_404(client: TestClient, admin_headers: dict[str, str]) -> None:
    response = client.patch("/api/admin/users/999", json={"is_active": False}, headers=admin_headers)
    assert response.status_code == 404


def test_audit_log_records_logins_and_failures(
    client: TestClient, users: UserFactory, admin_headers: dict[str, str]
) -> None:
    client.post("/api/auth/login", json={"username": "root", "password": "wrong-password!"})
    entries = client.get("/api/admin/audit", headers=admin_headers).json()
    actions = [entry["action"] for entry in entries]
    assert actions[:2] == ["login_failed", "login"]
    assert entries[0]["request_id"]
