"""Login, refresh, logout, /me and password change over HTTP."""

from __future__ import annotations

import logging
import time

import jwt
import pytest
from fastapi.testclient import TestClient

from api.core.config import Settings
from api.core.database import Database
from api.main import create_app
from tests.conftest import PASSWORD, TEST_SECRET, UserFactory, make_settings


def migrate(settings: Settings) -> None:
    settings.ret_runtime_root.mkdir(parents=True, exist_ok=True)
    database = Database(settings.database_url)
    database.upgrade()
    database.dispose()


def _cookie_header(response: object) -> str:
    return response.headers["set-cookie"]  # type: ignore[attr-defined, no-any-return]


def _claims(headers: dict[str, str]) -> dict[str, object]:
    token = headers["Authorization"].removeprefix("Bearer ")
    return jwt.decode(token, options={"verify_signature": False})  # type: ignore[no-any-return]


def _forge(claims: dict[str, object], key: str = TEST_SECRET, algorithm: str = "HS256") -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt.encode(claims, key, algorithm=algorithm)}"}


def test_login_returns_token_and_refresh_cookie(client: TestClient, users: UserFactory) -> None:
    users.create("alice")
    response = client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    body = response.json()
    assert response.status_code == 200
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    assert body["user"]["username"] == "alice"
    assert "password_hash" not in body["user"]
    cookie = _cookie_header(response)
    assert cookie.startswith("ret_refresh=")
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Path=/api/auth" in cookie
    assert "Secure" not in cookie
    assert response.headers["Cache-Control"] == "no-store"


def test_refresh_cookie_is_secure_in_production(tmp_path: object) -> None:
    settings = make_settings(tmp_path, env="production")  # type: ignore[arg-type]
    migrate(settings)
    with TestClient(create_app(settings)) as client:
        client.app.state.resources.users.create_user("alice", PASSWORD, "user")  # type: ignore[attr-defined]
        response = client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    assert "Secure" in _cookie_header(response)


def test_access_token_claims(auth_headers: dict[str, str]) -> None:
    claims = _claims(auth_headers)
    assert set(claims) == {"sub", "sid", "jti", "iat", "exp", "iss", "aud"}
    assert claims["iss"] == "ret-api"
    assert claims["aud"] == "ret-clients"


def test_oauth2_password_form_is_accepted(client: TestClient, users: UserFactory) -> None:
    users.create("alice")
    form = {"username": "alice", "password": PASSWORD, "grant_type": "password"}
    response = client.post("/api/auth/login", data=form)
    assert response.status_code == 200
    assert response.json()["access_token"]


def test_wrong_password_and_unknown_user_get_the_same_answer(client: TestClient, users: UserFactory) -> None:
    users.create("alice")
    wrong = client.post("/api/auth/login", json={"username": "alice", "password": "nope-nope-nope"})
    unknown = client.post("/api/auth/login", json={"username": "mallory", "password": "nope-nope-nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert (
        wrong.json()
        == unknown.json()
        == {"detail": "Incorrect username or password", "code": "invalid_credentials"}
    )
    assert wrong.headers["WWW-Authenticate"] == "Bearer"


def test_login_body_must_be_json_or_form(client: TestClient) -> None:
    response = client.post("/api/auth/login", content=b"alice:pw", headers={"content-type": "text/plain"})
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"


def test_login_with_missing_field_is_422(client: TestClient) -> None:
    response = client.post("/api/auth/login", json={"username": "alice"})
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


def test_usernames_differing_only_in_case_are_one_user(client: TestClient, users: UserFactory) -> None:
    users.create("Alice")
    assert users.login("ALICE")
    duplicate = client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    assert duplicate.json()["user"]["username"] == "Alice"
    with pytest.raises(Exception, match="taken"):
        users.create("aLiCe")


def test_me_returns_the_caller(client: TestClient, auth_headers: dict[str, str]) -> None:
    response = client.get("/api/auth/me", headers=auth_headers)
    assert response.status_code == 200
    assert response.json()["username"] == "alice"


def test_me_without_token_is_401(client: TestClient) -> None:
    response = client.get("/api/auth/me")
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"


@pytest.mark.parametrize(
    "mutation",
    ["alg_none", "wrong_key", "wrong_issuer", "wrong_audience", "expired", "garbage", "missing_sid"],
)
def test_bad_access_tokens_are_401_with_code(
    client: TestClient, auth_headers: dict[str, str], mutation: str
) -> None:
    claims = _claims(auth_headers)
    now = int(time.time())
    if mutation == "alg_none":
        headers = _forge(claims, key="", algorithm="none")
    elif mutation == "wrong_key":
        headers = _forge(claims, key="another-secret-that-is-long-enough-000000")
    elif mutation == "wrong_issuer":
        headers = _forge({**claims, "iss": "someone-else"})
    elif mutation == "wrong_audience":
        headers = _forge({**claims, "aud": "someone-else"})
    elif mutation == "expired":
        headers = _forge({**claims, "iat": now - 3600, "exp": now - 600})
    elif mutation == "missing_sid":
        headers = _forge({key: value for key, value in claims.items() if key != "sid"})
    else:
        headers = {"Authorization": "Bearer not.a.jwt"}
    response = client.get("/api/auth/me", headers=headers)
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"


def test_token_for_a_deleted_user_is_401(client: TestClient, users: UserFactory, settings: Settings) -> None:
    user_id = users.create("alice")
    headers = users.login("alice")
    database = client.app.state.resources.database  # type: ignore[attr-defined]
    with database.session(write=True) as session:
        from api.models import User

        session.delete(session.get(User, user_id))
    response = client.get("/api/auth/me", headers=headers)
    assert response.status_code == 401
    assert response.json()["code"] == "user_inactive"


def test_token_whose_login_session_ended_is_401(client: TestClient, auth_headers: dict[str, str]) -> None:
    claims = _claims(auth_headers)
    cache = client.app.state.resources.session_cache  # type: ignore[attr-defined]
    assert cache.delete(f"user:{claims['sub']}:login:{claims['sid']}")
    response = client.get("/api/auth/me", headers=auth_headers)
    assert response.status_code == 401
    assert response.json()["code"] == "session_ended"


def test_each_request_slides_the_login_session_expiry(
    client: TestClient, auth_headers: dict[str, str]
) -> None:
    claims = _claims(auth_headers)
    cache = client.app.state.resources.session_cache  # type: ignore[attr-defined]
    key = f"user:{claims['sub']}:login:{claims['sid']}"
    cache.touch(key, 5)
    client.get("/api/auth/me", headers=auth_headers)
    assert cache.ttl(key) > 3000


def test_refresh_rotates_the_cookie_and_issues_a_new_token(client: TestClient, users: UserFactory) -> None:
    users.create("alice")
    first = client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    old_cookie = client.cookies.get("ret_refresh")
    response = client.post("/api/auth/refresh")
    assert response.status_code == 200
    assert client.cookies.get("ret_refresh") != old_cookie
    assert response.json()["access_token"] != first.json()["access_token"]
    new_headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
    assert client.get("/api/auth/me", headers=new_headers).status_code == 200


def test_reusing_a_rotated_refresh_token_revokes_the_family(client: TestClient, users: UserFactory) -> None:
    users.create("alice")
    client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    stolen = client.cookies.get("ret_refresh")
    rotated = client.post("/api/auth/refresh")
    assert rotated.status_code == 200
    current = client.cookies.get("ret_refresh")
    headers = {"Authorization": f"Bearer {rotated.json()['access_token']}"}

    client.cookies.clear()
    reuse = client.post("/api/auth/refresh", headers={"Cookie": f"ret_refresh={stolen}"})
    assert reuse.status_code == 401
    assert reuse.json()["code"] == "refresh_token_reused"

    client.cookies.clear()
    retry = client.post("/api/auth/refresh", headers={"Cookie": f"ret_refresh={current}"})
    assert retry.json()["code"] == "invalid_refresh_token"
    assert client.get("/api/auth/me", headers=headers).json()["code"] == "session_ended"


def test_refresh_without_cookie_is_401(client: TestClient) -> None:
    response = client.post("/api/auth/refresh")
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_refresh_token"


def test_logout_rejects_the_token_and_reports_cleanup(client: TestClient, users: UserFactory) -> None:
    user_id = users.create("alice")
    headers = users.login("alice")
    cache = client.app.state.resources.session_cache  # type: ignore[attr-defined]
    cache.set(f"user:{user_id}:preferences", {"theme": "dark"})
    response = client.post("/api/auth/logout", headers=headers)
    report = response.json()
    assert response.status_code == 200
    assert report["login_sessions_ended"] == 1
    assert report["refresh_tokens_revoked"] == 1
    assert report["cache_entries_cleared"] == 1
    assert report["failed_steps"] == []
    assert cache.keys(f"user:{user_id}:") == []
    assert 'ret_refresh=""' in _cookie_header(response)
    assert client.get("/api/auth/me", headers=headers).status_code == 401
    assert client.post("/api/auth/refresh").status_code == 401


def test_logout_works_with_an_expired_token_and_a_valid_cookie(
    client: TestClient, users: UserFactory
) -> None:
    users.create("alice")
    headers = users.login("alice")
    claims = _claims(headers)
    now = int(time.time())
    expired = _forge({**claims, "iat": now - 3600, "exp": now - 600})
    response = client.post("/api/auth/logout", headers=expired)
    assert response.status_code == 200
    client.cookies.clear()
    response = client.post("/api/auth/logout")
    assert response.status_code == 401


def test_logout_step_failure_does_not_stop_the_others(
    client: TestClient, users: UserFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_id = users.create("alice")
    headers = users.login("alice")
    auth = client.app.state.resources.auth  # type: ignore[attr-defined]

    def broken_cleanup(uid: int) -> int:
        raise OSError("disk on fire")

    auth.user_cleanups.append(broken_cleanup)
    response = client.post("/api/auth/logout", headers=headers)
    assert response.status_code == 200
    assert response.json()["failed_steps"] == ["clean workspace sessions"]
    assert response.json()["login_sessions_ended"] == 1
    assert client.app.state.resources.session_cache.keys(f"user:{user_id}:") == []  # type: ignore[attr-defined]


def test_password_change_ends_other_login_sessions(client: TestClient, users: UserFactory) -> None:
    users.create("alice")
    laptop = users.login("alice")
    phone = users.login("alice")
    body = {"current_password": PASSWORD, "new_password": "a-brand-new-passphrase"}
    response = client.post("/api/auth/password", json=body, headers=laptop)
    assert response.status_code == 200
    assert response.json() == {"other_sessions_ended": 1}
    assert client.get("/api/auth/me", headers=laptop).status_code == 200
    assert client.get("/api/auth/me", headers=phone).json()["code"] == "session_ended"
    assert users.login("alice", "a-brand-new-passphrase")


def test_password_change_needs_the_current_password(client: TestClient, auth_headers: dict[str, str]) -> None:
    body = {"current_password": "not-my-password", "new_password": "a-brand-new-passphrase"}
    response = client.post("/api/auth/password", json=body, headers=auth_headers)
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_credentials"


@pytest.mark.parametrize("weak", ["short", "xx-alice-xx-long-enough"])
def test_weak_new_password_is_refused(client: TestClient, auth_headers: dict[str, str], weak: str) -> None:
    body = {"current_password": PASSWORD, "new_password": weak}
    response = client.post("/api/auth/password", json=body, headers=auth_headers)
    assert response.status_code == 422
    assert response.json()["code"] == "weak_password"


def test_no_token_or_hash_reaches_the_logs(
    client: TestClient, users: UserFactory, caplog: pytest.LogCaptureFixture
) -> None:
    users.create("alice")
    with caplog.at_level(logging.DEBUG):
        login = client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
        refresh_cookie = client.cookies.get("ret_refresh")
        refreshed = client.post("/api/auth/refresh")
        headers = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
        client.get("/api/auth/me", headers=headers)
        client.post("/api/auth/logout", headers=headers)
    database = client.app.state.resources.database  # type: ignore[attr-defined]
    with database.session() as session:
        from sqlalchemy import select

        from api.models import RefreshToken, User

        secrets = [PASSWORD, login.json()["access_token"], refresh_cookie, refreshed.json()["access_token"]]
        secrets += list(session.scalars(select(RefreshToken.token_hash)))
        secrets += list(session.scalars(select(User.password_hash)))
    logged = "\n".join(record.getMessage() + str(record.__dict__) for record in caplog.records)
    for secret in secrets:
        assert secret
        assert secret not in logged


def _attempt(app: object, ip: str, username: str, password: str) -> int:
    # No `with`: the lifespan already ran for the main client; this one only changes the address.
    other = TestClient(app, client=(ip, 50000))  # type: ignore[arg-type]
    return other.post("/api/auth/login", json={"username": username, "password": password}).status_code


def test_sixth_bad_password_from_one_address_is_429(client: TestClient, users: UserFactory) -> None:
    users.create("alice")
    statuses = [
        client.post("/api/auth/login", json={"username": "alice", "password": f"wrong-{n}-guess"}).status_code
        for n in range(6)
    ]
    assert statuses == [401] * 5 + [429]
    last = client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    assert last.status_code == 429
    assert int(last.headers["Retry-After"]) > 0
    assert last.json()["code"] == "rate_limited"


def test_successful_logins_do_not_count_as_attempts(client: TestClient, users: UserFactory) -> None:
    users.create("alice")
    for _ in range(8):
        users.login("alice")


def test_another_address_keeps_its_own_counter(client: TestClient, users: UserFactory) -> None:
    users.create("alice")
    app = client.app
    assert [_attempt(app, "10.0.0.1", "alice", "bad-password-x") for _ in range(5)] == [401] * 5
    assert _attempt(app, "10.0.0.2", "alice", PASSWORD) == 200
    assert _attempt(app, "10.0.0.1", "alice", "bad-password-x") == 429
    assert _attempt(app, "10.0.0.2", "alice", "bad-password-x") == 401
