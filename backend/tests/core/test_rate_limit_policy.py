from __future__ import annotations

import pytest

from api.core.rate_limit_policy import (
    Policy,
    ceil_seconds,
    is_exempt,
    normalize_exempt_path,
    normalize_networks,
    parse_policies,
    parse_policy,
    parse_rule_route,
    parse_rules,
    split_networks,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100/minute", Policy("default", 100, 60)),
        ("5/15 minutes", Policy("default", 5, 900)),
        ("300/minute burst 60", Policy("default", 300, 60, burst=60)),
        ("10 per second", Policy("default", 10, 1)),
        ("  2/h ", Policy("default", 2, 3600)),
        ("daily=10000/day", Policy("daily", 10000, 86400)),
        ("7/1.5 Seconds BURST 3", Policy("default", 7, 1.5, burst=3)),
    ],
)
def test_policy_strings_parse(text: str, expected: Policy) -> None:
    assert parse_policy(text) == expected


@pytest.mark.parametrize(
    "text", ["", "100", "100/fortnight", "0/minute", "-1/minute", "5/0 minutes", "x/minute"]
)
def test_malformed_policy_strings_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="policy"):
        parse_policy(text)


def test_several_policies_get_numbered_names() -> None:
    policies = parse_policies("300/minute burst 60, 10000/day", "default")
    assert [policy.name for policy in policies] == ["default", "default-2"]
    assert parse_policies("") == ()


def test_duplicate_policy_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        parse_policies("a=1/second, a=2/second")


@pytest.mark.parametrize("name", ["", 'quo"te', "back\\slash", "tab\tname", "é", "x" * 129])
def test_names_must_be_safe_header_strings(name: str) -> None:
    with pytest.raises(ValueError, match="name"):
        Policy(name, 1, 1)


def test_gcra_parameters_are_integer_nanoseconds() -> None:
    policy = Policy("p", 100, 60, burst=20)
    assert policy.capacity == 120
    assert policy.interval_ns == 600_000_000
    assert policy.tolerance_ns == 120 * 600_000_000
    assert policy.increment_ns(3) == 1_800_000_000


def test_an_interval_below_one_nanosecond_is_refused() -> None:
    with pytest.raises(ValueError, match="nanosecond"):
        Policy("p", 2_000_000_000, 1)


def test_rule_routes_take_an_optional_method() -> None:
    assert parse_rule_route("POST /api/auth/login") == ("POST", "/api/auth/login")
    assert parse_rule_route("/api/sessions/{id}/files") == (None, "/api/sessions/{id}/files")
    with pytest.raises(ValueError, match="route"):
        parse_rule_route("api/no-slash")


def test_rules_name_policies_after_their_route() -> None:
    rules = parse_rules({"POST /api/auth/login": "5/minute, 20/hour", "/api/x/{id}": ""})
    assert [policy.name for policy in rules["POST", "/api/auth/login"]] == [
        "POST /api/auth/login",
        "POST /api/auth/login-2",
    ]
    assert rules[None, "/api/x/{id}"] == ()


@pytest.mark.parametrize(
    ("path", "exempt"),
    [
        ("/docs", True),
        ("/docs/oauth2-redirect", True),
        ("/docsx", False),
        ("/api/health", True),
        ("/api/healthz", False),
        ("/api/ready/", True),
        ("/openapi.json", True),
        ("/api/auth/login", False),
    ],
)
def test_exempt_prefixes_match_only_at_a_slash(path: str, exempt: bool) -> None:
    prefixes = [normalize_exempt_path(p) for p in ("/api/health", "/api/ready", "/docs/", "/openapi.json")]
    assert is_exempt(path, prefixes) is exempt


def test_exempt_root_covers_every_path() -> None:
    assert is_exempt("/api/anything", ["/"])
    assert not is_exempt("/api/anything", [])


def test_exempt_paths_must_be_absolute() -> None:
    with pytest.raises(ValueError, match="start with"):
        normalize_exempt_path("docs")


def test_trusted_proxies_are_canonical_networks() -> None:
    assert split_networks("10.0.0.0/8, 192.168.1.7") == ["10.0.0.0/8", "192.168.1.7"]
    assert split_networks('["::1"]') == ["::1"]
    assert normalize_networks(["10.1.2.3/8", "192.168.1.7", "::1"]) == [
        "10.0.0.0/8",
        "192.168.1.7/32",
        "::1/128",
    ]


@pytest.mark.parametrize("value", ["*", "proxy.example", "10.0.0.0/33"])
def test_wildcards_and_garbage_are_not_trusted(value: str) -> None:
    with pytest.raises(ValueError, match=r"\*|not an IP"):
        normalize_networks([value])


def test_seconds_round_up() -> None:
    assert ceil_seconds(0) == 0
    assert ceil_seconds(1) == 1
    assert ceil_seconds(2_000_000_000) == 2
    assert ceil_seconds(2_000_000_001) == 3
