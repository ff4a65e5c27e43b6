from __future__ import annotations

import pytest

from api.middleware.client_identity import address_identity, bearer_token, client_identity


def scope_with(headers: list[tuple[bytes, bytes]], client: tuple[str, int] | None = ("192.0.2.1", 1)) -> dict:  # type: ignore[type-arg]
    return {"type": "http", "headers": headers, "client": client}


@pytest.mark.parametrize(
    ("host", "identity"),
    [
        ("192.0.2.1", "ip:192.0.2.1"),
        ("2001:db8:1:2:3:4:5:6", "ip:2001:db8:1:2::/64"),
        ("2001:DB8:1:2::ffff", "ip:2001:db8:1:2::/64"),
        ("::ffff:192.0.2.1", "ip:192.0.2.1"),
        ("fe80::1%eth0", "ip:fe80::/64"),
        ("testclient", "host:testclient"),
    ],
)
def test_addresses_become_identities(host: str, identity: str) -> None:
    assert address_identity(host) == identity


def test_bearer_token_is_read_from_the_authorization_header() -> None:
    assert bearer_token(scope_with([(b"authorization", b"Bearer abc.def")])) == "abc.def"
    assert bearer_token(scope_with([(b"authorization", b"bearer   xyz ")])) == "xyz"
    assert bearer_token(scope_with([(b"authorization", b"Basic dXNlcjpwdw==")])) is None
    assert bearer_token(scope_with([(b"authorization", b"Bearer ")])) is None
    assert bearer_token(scope_with([])) is None


def test_a_verified_token_names_the_user_else_the_address_counts() -> None:
    scope = scope_with([(b"authorization", b"Bearer good")])
    assert client_identity(scope, lambda token: "42" if token == "good" else None) == "user:42"
    assert client_identity(scope, lambda token: None) == "ip:192.0.2.1"
    assert client_identity(scope, None) == "ip:192.0.2.1"


def test_a_verifier_returning_junk_is_a_refusal() -> None:
    scope = scope_with([(b"authorization", b"Bearer good")])
    assert client_identity(scope, lambda token: "") == "ip:192.0.2.1"
    assert client_identity(scope, lambda token: 42) == "ip:192.0.2.1"  # type: ignore[arg-type,return-value]


def test_forwarded_headers_are_never_read() -> None:
    headers = [
        (b"x-forwarded-for", b"203.0.113.5"),
        (b"forwarded", b"for=203.0.113.5"),
        (b"x-real-ip", b"1.1.1.1"),
    ]
    assert client_identity(scope_with(headers), None) == "ip:192.0.2.1"


def test_no_address_and_no_user_means_no_identity() -> None:
    assert client_identity(scope_with([], client=None), None) is None
    assert client_identity(scope_with([], client=("", 0)), None) is None
