"""The rate-limit middleware in a real app: responses, headers, rules, identity, failure modes."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from api.core.config import Settings
from api.core.rate_limit_policy import Policy
from api.core.rate_limit_store import Hit, SQLiteRateLimitStore
from api.deps import RateLimiterDep
from api.main import create_app
from api.middleware.rate_limit import RateLimitMiddleware
from api.resources import AppResources
from api.services.rate_limiter import Decision, RateLimiter
from tests.conftest import make_settings
from tests.services.test_rate_limiter import BrokenStore
from tests.support.clock import FakeClock

PEER = "198.51.100.7"


class SignedTokens:
    """A small real verifier: ``user.expiry.hmac``; forged or expired tokens verify to None."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.key = b"test-signing-key"

    def _sign(self, payload: str) -> str:
        return hmac.new(self.key, payload.encode(), hashlib.sha256).hexdigest()

    def issue(self, user: str, ttl: float = 300) -> str:
        payload = f"{user}.{self.clock() + ttl:.0f}"
        return f"{payload}.{self._sign(payload)}"

    def verify(self, token: str) -> str | None:
        user, _, rest = token.partition(".")
        expiry, _, signature = rest.partition(".")
        if not hmac.compare_digest(signature, self._sign(f"{user}.{expiry}")):
            return None
        return user if float(expiry) > self.clock() else None


def limited_app(tmp_path: Path, **overrides: object) -> FastAPI:
    values: dict[str, object] = {"rate_limit_default": "3/minute"}
    values.update(overrides)
    app = create_app(make_settings(tmp_path, **values))

    @app.get("/api/things/{thing_id}")
    async def read_thing(thing_id: int) -> dict[str, int]:
        return {"id": thing_id}

    @app.post("/api/things/{thing_id}")
    async def write_thing(thing_id: int) -> dict[str, int]:
        return {"id": thing_id}

    @app.post("/api/login-attempt")
    def login_attempt(limiter: RateLimiterDep) -> dict[str, bool]:
        limiter.enforce("login:alice", [Policy("login", 1, 900)])
        return {"ok": True}

    return app


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def tokens(clock: FakeClock) -> SignedTokens:
    return SignedTokens(clock)


@contextmanager
def start(app: FastAPI, clock: FakeClock, tokens: SignedTokens) -> Iterator[TestClient]:
    """Run ``app`` with its limiter on ``clock`` and ``tokens`` as the access-token verifier."""
    with TestClient(app, raise_server_exceptions=False, client=(PEER, 40000)) as client:
        resources: AppResources = client.app.state.resources  # type: ignore[attr-defined]
        resources.rate_limiter.close()
        store = SQLiteRateLimitStore(resources.settings.ret_session_db, clock=clock)
        resources.rate_limiter = RateLimiter(
            store, on_store_error=resources.settings.rate_limit_on_store_error
        )
        resources.verify_access_token = tokens.verify
        yield client


@pytest.fixture
def client(tmp_path: Path, clock: FakeClock, tokens: SignedTokens) -> Iterator[TestClient]:
    with start(limited_app(tmp_path), clock, tokens) as started:
        yield started


def from_address(client: TestClient, host: str) -> TestClient:
    """Another client of the same running app (its lifespan is the fixture's), from ``host``."""
    return TestClient(client.app, raise_server_exceptions=False, client=(host, 40000))


def resources_of(client: TestClient) -> AppResources:
    resources: AppResources = client.app.state.resources  # type: ignore[attr-defined]
    return resources


def statuses(client: TestClient, path: str, count: int, **kwargs: object) -> list[int]:
    return [client.get(path, **kwargs).status_code for _ in range(count)]  # type: ignore[arg-type]


# -- responses -------------------------------------------------------------------------------------


def test_request_over_the_limit_gets_a_429_naming_the_policy(client: TestClient) -> None:
    assert statuses(client, "/api/things/1", 3) == [200, 200, 200]
    response = client.get("/api/things/1")
    assert response.status_code == 429
    body = response.json()
    assert body["code"] == "rate_limited"
    assert body["policy"] == "default"
    assert "retry in 20 s" in body["detail"]
    assert response.headers["Retry-After"] == "20"


async def asgi_status(app: object, path: str) -> int:
    """Send one GET straight into the ASGI app (no client between) and return its status."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"testserver")], "client": (PEER, 40000), "server": ("testserver", 80),
    }  # fmt: skip
    statuses: list[int] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(int(message["status"]))  # type: ignore[call-overload]

    await app(scope, receive, send)  # type: ignore[operator]
    return statuses[0]


def test_requests_arriving_together_are_decided_in_one_store_transaction(client: TestClient) -> None:
    limiter = resources_of(client).rate_limiter
    batches: list[int] = []
    decide_batch = limiter.hit_batch

    def counting(hits: list[Hit]) -> list[Decision]:
        batches.append(len(hits))
        return decide_batch(hits)

    limiter.hit_batch = counting  # type: ignore[method-assign]

    async def together() -> list[int]:
        return list(await asyncio.gather(*(asgi_status(client.app, "/api/things/1") for _ in range(5))))

    assert client.portal is not None
    assert client.portal.call(together) == [200, 200, 200, 429, 429]  # 3/minute, in arrival order
    assert batches == [5]


def test_every_limited_response_carries_the_ratelimit_fields(client: TestClient) -> None:
    first = client.get("/api/things/1")
    assert first.headers["RateLimit-Policy"] == '"default";q=3;w=60'
    assert first.headers["RateLimit"] == '"default";r=2;t=20'
    assert client.get("/api/nowhere").headers["RateLimit"] == '"default";r=1;t=20'
    refused = [client.get("/api/things/1") for _ in range(2)][-1]
    assert refused.headers["RateLimit"] == '"default";r=0;t=20'
    assert int(refused.headers["Retry-After"]) >= 20


def test_waiting_retry_after_admits_the_next_request(client: TestClient, clock: FakeClock) -> None:
    statuses(client, "/api/things/1", 3)
    retry_after = int(client.get("/api/things/1").headers["Retry-After"])
    clock.advance(retry_after - 1)
    assert client.get("/api/things/1").status_code == 429
    clock.advance(1)
    assert client.get("/api/things/1").status_code == 200


def test_refused_requests_consume_nothing(client: TestClient, clock: FakeClock) -> None:
    statuses(client, "/api/things/1", 10)
    clock.advance(20)
    assert statuses(client, "/api/things/1", 2) == [200, 429]


@pytest.mark.parametrize("path", ["/api/health", "/api/ready", "/docs", "/openapi.json"])
def test_exempt_paths_are_never_limited_or_annotated(client: TestClient, path: str) -> None:
    responses = [client.get(path) for _ in range(5)]
    assert [response.status_code for response in responses] == [200] * 5
    assert "RateLimit" not in responses[-1].headers


def test_an_exempt_prefix_matches_only_at_a_slash(client: TestClient) -> None:
    assert statuses(client, "/api/healthz", 4) == [404, 404, 404, 429]


def test_service_limits_render_as_429_with_their_policy(client: TestClient) -> None:
    assert client.post("/api/login-attempt").status_code == 200
    response = client.post("/api/login-attempt")
    assert response.status_code == 429
    assert response.json()["policy"] == "login"
    assert response.headers["Retry-After"] == "900"


# -- route rules -----------------------------------------------------------------------------------


def test_route_rules_match_the_template_not_the_raw_path(
    tmp_path: Path, clock: FakeClock, tokens: SignedTokens
) -> None:
    app = limited_app(tmp_path, rate_limit_rules={"/api/things/{thing_id}": "2/minute"})
    with start(app, clock, tokens) as client:
        assert [client.get(f"/api/things/{n}").status_code for n in range(3)] == [200, 200, 429]
        assert client.get("/api/things/9").headers["RateLimit-Policy"] == '"/api/things/{thing_id}";q=2;w=60'
        # Other routes keep the default policy and its own bucket.
        assert client.get("/api/nowhere").headers["RateLimit"] == '"default";r=2;t=20'


def test_method_rules_win_over_path_rules(tmp_path: Path, clock: FakeClock, tokens: SignedTokens) -> None:
    rules = {"POST /api/things/{thing_id}": "1/minute", "/api/things/{thing_id}": "5/minute"}
    with start(limited_app(tmp_path, rate_limit_rules=rules), clock, tokens) as client:
        assert [client.post("/api/things/1").status_code for _ in range(2)] == [200, 429]
        assert statuses(client, "/api/things/1", 5) == [200] * 5


def test_head_requests_follow_the_get_rules(tmp_path: Path, clock: FakeClock, tokens: SignedTokens) -> None:
    with start(
        limited_app(tmp_path, rate_limit_rules={"GET /api/things/{thing_id}": "1/minute"}), clock, tokens
    ) as client:
        assert client.get("/api/things/1").status_code == 200
        assert client.head("/api/things/1").status_code == 429


def test_an_empty_rule_means_unlimited(tmp_path: Path, clock: FakeClock, tokens: SignedTokens) -> None:
    app = limited_app(tmp_path, rate_limit_rules={"/api/things/{thing_id}": ""})
    with start(app, clock, tokens) as client:
        response = client.get("/api/things/1")
        assert "RateLimit" not in response.headers
        assert statuses(client, "/api/things/1", 10) == [200] * 10


def test_dry_run_reports_but_never_refuses(
    tmp_path: Path, clock: FakeClock, tokens: SignedTokens, caplog: pytest.LogCaptureFixture
) -> None:
    with start(limited_app(tmp_path, rate_limit_dry_run=True), clock, tokens) as client:
        with caplog.at_level(logging.INFO, "api.middleware.rate_limit"):
            responses = [client.get("/api/things/1") for _ in range(5)]
        assert [response.status_code for response in responses] == [200] * 5
        assert responses[-1].headers["RateLimit"] == '"default";r=0;t=20'
        assert "dry run" in caplog.text
        assert resources_of(client).rate_limiter.stats()["denied"] == 2


def test_disabled_limiting_adds_no_middleware(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, rate_limit_enabled=False))
    assert RateLimitMiddleware not in [middleware.cls for middleware in app.user_middleware]


def test_middleware_sits_between_cors_and_the_routers(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, cors_origins=["http://ui.example"]))
    names = [middleware.cls.__name__ for middleware in app.user_middleware]  # type: ignore[attr-defined]
    assert names == [
        "RequestContextMiddleware",
        "MetricsMiddleware",
        "SecurityHeadersMiddleware",
        "CORSMiddleware",
        "RateLimitMiddleware",
    ]


def test_a_429_still_gets_request_id_security_and_cors_headers(
    tmp_path: Path, clock: FakeClock, tokens: SignedTokens
) -> None:
    app = limited_app(tmp_path, cors_origins=["http://ui.example"])
    with start(app, clock, tokens) as client:
        origin = {"Origin": "http://ui.example"}
        response = [client.get("/api/things/1", headers=origin) for _ in range(4)][-1]
        assert response.status_code == 429
        assert response.headers["X-Request-ID"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Access-Control-Allow-Origin"] == "http://ui.example"
        assert "Retry-After" in response.headers["Access-Control-Expose-Headers"]


def test_the_app_purges_idle_buckets_periodically(client: TestClient) -> None:
    assert "rate-limit bucket purge" in [task.name for task in resources_of(client).periodic_tasks]


# -- store failures --------------------------------------------------------------------------------


def test_store_failure_open_admits_and_counts(client: TestClient, clock: FakeClock) -> None:
    resources_of(client).rate_limiter = RateLimiter(BrokenStore(clock=clock), on_store_error="open")
    responses = [client.get("/api/things/1") for _ in range(5)]
    assert [response.status_code for response in responses] == [200] * 5
    assert "RateLimit" not in responses[0].headers
    assert resources_of(client).rate_limiter.stats()["store_errors"] == 5


def test_store_failure_closed_answers_503_never_500(client: TestClient, clock: FakeClock) -> None:
    resources_of(client).rate_limiter = RateLimiter(BrokenStore(clock=clock), on_store_error="closed")
    response = client.get("/api/things/1")
    assert response.status_code == 503
    assert response.json()["code"] == "rate_limit_unavailable"
    assert response.headers["Retry-After"] == "1"


class ExplodingLimiter:
    def hit(self, *args: object) -> None:
        raise KeyError("bug")

    def hit_batch(self, *args: object) -> None:
        raise KeyError("bug")


@pytest.mark.parametrize(("mode", "status"), [("open", 200), ("closed", 503)])
def test_any_limiter_failure_follows_the_store_error_mode(
    tmp_path: Path, clock: FakeClock, tokens: SignedTokens, mode: str, status: int
) -> None:
    with start(limited_app(tmp_path, rate_limit_on_store_error=mode), clock, tokens) as client:
        resources_of(client).rate_limiter = ExplodingLimiter()  # type: ignore[assignment]
        assert client.get("/api/things/1").status_code == status


# -- identity --------------------------------------------------------------------------------------


def test_forwarded_headers_from_an_untrusted_peer_share_its_bucket(client: TestClient) -> None:
    rng = random.Random(4)
    codes = []
    for _ in range(6):
        fake = f"{rng.randrange(1, 255)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}"
        spoof = {"X-Forwarded-For": fake, "Forwarded": f"for={fake}", "X-Real-IP": fake}
        codes.append(client.get("/api/things/1", headers=spoof).status_code)
    assert codes == [200, 200, 200, 429, 429, 429]


def test_each_client_address_has_its_own_bucket(client: TestClient) -> None:
    statuses(client, "/api/things/1", 3)
    assert client.get("/api/things/1").status_code == 429
    assert from_address(client, "198.51.100.8").get("/api/things/1").status_code == 200


def test_ipv6_clients_are_grouped_by_64(client: TestClient) -> None:
    same_64 = [from_address(client, f"2001:db8:1:2::{n}") for n in range(1, 5)]
    assert [c.get("/api/things/1").status_code for c in same_64] == [200, 200, 200, 429]
    assert from_address(client, "2001:db8:1:3::1").get("/api/things/1").status_code == 200


def test_a_verified_token_counts_against_its_user(client: TestClient, tokens: SignedTokens) -> None:
    alice = {"Authorization": f"Bearer {tokens.issue('alice')}"}
    hosts = ["203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4"]
    codes = [from_address(client, host).get("/api/things/1", headers=alice).status_code for host in hosts]
    assert codes == [200, 200, 200, 429]
    # The peer's own address bucket was never touched, and another user has their own.
    assert client.get("/api/things/1").status_code == 200
    bob = {"Authorization": f"Bearer {tokens.issue('bob')}"}
    assert client.get("/api/things/1", headers=bob).status_code == 200


def test_forged_tokens_fall_back_to_the_address(client: TestClient, tokens: SignedTokens) -> None:
    statuses(client, "/api/things/1", 3)
    valid = tokens.issue("mallory")
    forged = [valid[:-4] + "0000", "mallory.99999999999.deadbeef", "not-a-token", "x" * 9000]
    for token in forged:
        response = client.get("/api/things/1", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 429


def test_expired_tokens_fall_back_to_the_address(
    client: TestClient, tokens: SignedTokens, clock: FakeClock
) -> None:
    token = tokens.issue("alice", ttl=10)
    clock.advance(11)
    statuses(client, "/api/things/1", 3)
    assert client.get("/api/things/1", headers={"Authorization": f"Bearer {token}"}).status_code == 429


def test_a_failing_verifier_falls_back_to_the_address(client: TestClient) -> None:
    def broken(token: str) -> str | None:
        raise RuntimeError("verifier bug")

    resources_of(client).verify_access_token = broken
    codes = statuses(client, "/api/things/1", 4, headers={"Authorization": "Bearer x"})
    assert codes == [200, 200, 200, 429]


def test_without_a_verifier_tokens_are_ignored(client: TestClient, tokens: SignedTokens) -> None:
    resources_of(client).verify_access_token = None
    alice = {"Authorization": f"Bearer {tokens.issue('alice')}"}
    assert statuses(client, "/api/things/1", 4, headers=alice) == [200, 200, 200, 429]


def test_requests_without_a_client_address_are_not_limited(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    anonymous = from_address(client, "")
    with caplog.at_level(logging.WARNING, "api.middleware.rate_limit"):
        assert statuses(anonymous, "/api/things/1", 5) == [200] * 5
    assert "without a client address" in caplog.text


def test_behind_a_trusted_proxy_the_rightmost_untrusted_hop_is_the_identity(
    tmp_path: Path, clock: FakeClock, tokens: SignedTokens
) -> None:
    settings = make_settings(tmp_path, rate_limit_default="3/minute", ret_trusted_proxies="10.0.0.0/8")
    app = limited_app(tmp_path, **{"ret_trusted_proxies": settings.ret_trusted_proxies})
    # What `ret serve` installs in front of the app: uvicorn's proxy headers with RET_TRUSTED_PROXIES.
    proxied = ProxyHeadersMiddleware(app, trusted_hosts=settings.ret_trusted_proxies)  # type: ignore[arg-type]
    with start(app, clock, tokens) as client:
        via_proxy = TestClient(proxied, raise_server_exceptions=False, client=("10.1.2.3", 40000))  # type: ignore[arg-type]

        def through(chain: str, via_proxy: TestClient = via_proxy) -> int:
            return via_proxy.get("/api/things/1", headers={"X-Forwarded-For": chain}).status_code

        # The client prepends anything it likes; the proxies (10.x) append the address they saw.
        assert [through(f"{n}.{n}.{n}.{n}, 203.0.113.9, 10.9.9.9") for n in range(1, 5)] == [
            200,
            200,
            200,
            429,
        ]
        assert through("203.0.113.10") == 200
        # A peer that is not a trusted proxy is its own identity, whatever it forwards.
        direct = from_address(client, "192.0.2.1")
        codes = [
            direct.get("/api/things/1", headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code
            for n in range(4)
        ]
        assert codes == [200, 200, 200, 429]


def test_settings_fix_the_policies_at_start_up(settings: Settings) -> None:
    middleware = RateLimitMiddleware(create_app(settings), settings)
    assert middleware.default == (Policy("default", 300, 60, burst=60),)
    assert middleware.exempt.exact == {"/api/health", "/api/ready", "/docs", "/openapi.json"}
