"""The header writer follows draft-ietf-httpapi-ratelimit-headers-10."""

from __future__ import annotations

import math

from api.core.rate_limit_policy import Policy
from api.services import rate_limit_headers
from api.services.rate_limit_headers import header_fields, ratelimit_headers, rejection_headers
from api.services.rate_limiter import Decision, PolicyState

DEFAULT = Policy("default", 300, 60)


def state(policy: Policy, remaining: int, refill_after: float, retry_after: float = 0.0) -> PolicyState:
    return PolicyState(policy, retry_after > 0, remaining, refill_after, refill_after, retry_after)


def test_the_writer_names_the_draft_it_follows() -> None:
    assert rate_limit_headers.DRAFT == "draft-ietf-httpapi-ratelimit-headers-10"


def test_fields_of_an_admitted_request_match_the_draft_examples() -> None:
    decision = Decision(True, 0.0, (state(DEFAULT, 120, 11.2),))
    assert ratelimit_headers(decision) == {
        "RateLimit-Policy": '"default";q=300;w=60',
        "RateLimit": '"default";r=120;t=12',
    }


def test_a_full_bucket_has_no_reset_parameter() -> None:
    decision = Decision(True, 0.0, (state(DEFAULT, 300, 0.0),))
    assert ratelimit_headers(decision)["RateLimit"] == '"default";r=300'


def test_burst_is_a_vendor_parameter_and_policies_form_a_list() -> None:
    login = Policy("POST /api/auth/login", 5, 900, burst=2)
    decision = Decision(True, 0.0, (state(DEFAULT, 1, 0.2), state(login, 6, 180)))
    headers = ratelimit_headers(decision)
    assert headers["RateLimit-Policy"] == '"default";q=300;w=60, "POST /api/auth/login";q=5;w=900;ret-burst=2'
    assert headers["RateLimit"] == '"default";r=1;t=1, "POST /api/auth/login";r=6;t=180'


def test_windows_are_whole_seconds_of_at_least_one() -> None:
    decision = Decision(True, 0.0, (state(Policy("fast", 5, 0.25), 5, 0.0),))
    assert ratelimit_headers(decision)["RateLimit-Policy"] == '"fast";q=5;w=1'


def test_refusal_adds_retry_after_rounded_up_and_never_before_t() -> None:
    decision = Decision(False, 2.01, (state(DEFAULT, 0, 2.01, retry_after=2.01),))
    headers = rejection_headers(decision)
    assert headers["Retry-After"] == "3"
    assert headers["RateLimit"] == '"default";r=0;t=3'


def test_refusal_that_can_never_pass_has_no_retry_after() -> None:
    decision = Decision(False, math.inf, (state(DEFAULT, 300, 0.0, retry_after=math.inf),))
    assert "Retry-After" not in rejection_headers(decision)


def test_no_fields_when_the_store_failed() -> None:
    assert ratelimit_headers(Decision(True, 0.0, (), store_error=True)) == {}


def test_raw_fields_for_the_middleware_say_the_same_in_lower_case_bytes() -> None:
    login = Policy("POST /api/auth/login", 5, 900, burst=2)
    for states in ((state(DEFAULT, 120, 11.2),), (state(DEFAULT, 1, 0.2), state(login, 6, 180))):
        decision = Decision(True, 0.0, states)
        fields = ratelimit_headers(decision).items()
        expected = [(name.lower().encode(), value.encode()) for name, value in fields]
        assert header_fields(decision) == expected
