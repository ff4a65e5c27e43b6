"""Rate-limit policies as data, and the GCRA arithmetic every store and the limiter share.

A ``Policy`` admits ``limit`` units per ``period_seconds`` at a steady rate, and up to ``limit + burst``
units at once from an idle bucket (its *capacity*). It is parsed from strings such as ``"100/minute"``,
``"5/15 minutes"``, ``"300 per minute burst 60"`` or ``"daily=10000/day"``.

GCRA (the generic cell rate algorithm) keeps one value per bucket: the *theoretical arrival time*
``tat``, the instant at which the bucket is idle (full) again. Each unit moves it ``interval`` =
``period / limit`` later; a hit is admitted when the bucket's backlog (``tat - now``, at least 0)
plus the hit's increment fits in the ``tolerance`` = ``capacity × interval``. Times are integer
nanoseconds, so every comparison is exact and every store decides exactly alike.

The module also parses and validates the rate-limit settings (``RATE_LIMIT_*``,
``RET_TRUSTED_PROXIES``) for ``api.core.config``.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

NANOSECONDS: Final = 1_000_000_000
MAX_NAME_LENGTH: Final = 128
PERIOD_UNITS: Final = {
    "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
}  # fmt: skip
POLICY_PATTERN: Final = re.compile(
    r"\s*(?:(?P<name>[^=]+?)\s*=\s*)?(?P<limit>\d+)\s*(?:/|\s+per\s+)\s*(?P<count>\d+(?:\.\d+)?)?\s*"
    r"(?P<unit>[a-z]+)(?:\s+burst\s+(?P<burst>\d+))?\s*",
    re.IGNORECASE,
)
# Policy names appear as Structured Field strings in response headers: printable ASCII, no quote
# or backslash, so they never need escaping.
VALID_NAME: Final = re.compile(r"[\x20-\x21\x23-\x5b\x5d-\x7e]+")


@dataclass(frozen=True, slots=True)
class Policy:
    """``limit`` units per ``period_seconds``, plus ``burst`` extra units at once from an idle bucket.

    ``capacity``, ``interval_ns`` and ``tolerance_ns`` are derived once, here, because every
    decision uses them.

    Raises:
        ValueError: the name is empty, too long or not printable ASCII (``"`` and ``\\`` excluded),
            ``limit`` < 1, ``burst`` < 0, ``period_seconds`` is not finite and > 0, or one unit
            would last less than a nanosecond.
    """

    name: str
    limit: int
    period_seconds: float
    burst: int = 0
    capacity: int = field(init=False, repr=False, compare=False)  # limit + burst: at once when idle
    interval_ns: int = field(init=False, repr=False, compare=False)  # period / limit, rounded down
    tolerance_ns: int = field(
        init=False, repr=False, compare=False
    )  # the largest backlog: capacity × interval

    def __post_init__(self) -> None:
        if len(self.name) > MAX_NAME_LENGTH or not VALID_NAME.fullmatch(self.name):
            raise ValueError(f"invalid policy name {self.name!r}: 1-128 printable ASCII, no quotes")
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise ValueError(f"policy {self.name!r}: limit must be an integer >= 1")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 0:
            raise ValueError(f"policy {self.name!r}: burst must be an integer >= 0")
        if not math.isfinite(self.period_seconds) or self.period_seconds <= 0:
            raise ValueError(f"policy {self.name!r}: period must be a finite number of seconds > 0")
        interval = round(self.period_seconds * NANOSECONDS) // self.limit
        if interval < 1:
            raise ValueError(f"policy {self.name!r}: more than one unit per nanosecond")
        object.__setattr__(self, "capacity", self.limit + self.burst)
        object.__setattr__(self, "interval_ns", interval)
        object.__setattr__(self, "tolerance_ns", self.capacity * interval)

    def increment_ns(self, cost: int) -> int:
        """How far a hit of ``cost`` units moves the bucket's ``tat``."""
        return cost * self.interval_ns


def parse_policy(text: str, default_name: str = "default") -> Policy:
    """Parse ``"[name=]LIMIT/[N ]UNIT[ burst B]"`` (``per`` may replace ``/``).

    Units: s/sec/second(s), m/min/minute(s), h/hour(s), d/day(s). ``default_name`` names a policy
    written without ``name=``.

    Raises:
        ValueError: the text does not follow the syntax or describes an invalid policy.
    """
    match = POLICY_PATTERN.fullmatch(text)
    unit = PERIOD_UNITS.get(match["unit"].lower()) if match else None
    if match is None or unit is None:
        raise ValueError(f"invalid rate-limit policy {text!r}: expected e.g. '100/minute' or '5/15 minutes'")
    count = float(match["count"]) if match["count"] else 1.0
    burst = int(match["burst"]) if match["burst"] else 0
    return Policy(match["name"] or default_name, int(match["limit"]), count * unit, burst)


def parse_policies(texts: str | Iterable[str], base_name: str = "default") -> tuple[Policy, ...]:
    """Parse a comma-separated string (or several strings) of policies.

    Unnamed policies are named ``base_name``, then ``base_name-2``, ``base_name-3``, ...

    Raises:
        ValueError: a policy is invalid, or two policies share a name.
    """
    items = texts.split(",") if isinstance(texts, str) else list(texts)
    items = [item for item in items if item.strip()]
    policies = tuple(
        parse_policy(item, base_name if index == 0 else f"{base_name}-{index + 1}")
        for index, item in enumerate(items)
    )
    check_unique_names(policies)
    return policies


def check_unique_names(policies: Sequence[Policy]) -> None:
    """Raise ``ValueError`` if two policies share a name (they would share one bucket)."""
    names = [policy.name for policy in policies]
    if len(set(names)) != len(names):
        raise ValueError(f"policy names must be unique, got {names}")


def ceil_seconds(nanoseconds: int) -> int:
    """Whole seconds, rounded up (``Retry-After`` and the ``t`` parameter never round down)."""
    return -(-nanoseconds // NANOSECONDS)


RULE_ROUTE: Final = re.compile(r"(?:(?P<method>[A-Z]+)\s+)?(?P<template>/\S*)")


def parse_rule_route(text: str) -> tuple[str | None, str]:
    """Split a ``RATE_LIMIT_RULES`` key, ``"[METHOD ]/route/{template}"``, into method and template.

    Raises:
        ValueError: the key is not an optional upper-case method followed by a path template.
    """
    match = RULE_ROUTE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"invalid rate-limit rule route {text!r}: expected e.g. 'POST /api/auth/login'")
    return match["method"], match["template"]


def parse_rules(rules: dict[str, str]) -> dict[tuple[str | None, str], tuple[Policy, ...]]:
    """Parse ``RATE_LIMIT_RULES``: route → policies; an empty string means "not limited".

    A rule's policies are named after its route (``"POST /api/auth/login"``, then ``…-2``), so each
    route has buckets of its own.

    Raises:
        ValueError: a route or a policy is invalid.
    """
    return {parse_rule_route(route): parse_policies(text, route.strip()) for route, text in rules.items()}


def normalize_exempt_path(path: str) -> str:
    """An exempt path prefix without its trailing ``/``. Raises ``ValueError`` unless it starts with ``/``."""
    if not path.startswith("/"):
        raise ValueError(f"exempt path {path!r} must start with '/'")
    return path.rstrip("/") or "/"


class ExemptPaths:
    """Exempt path prefixes, compiled: ``path in exempt`` when ``path`` equals a prefix or continues it
    after a ``/`` (``/docs`` never ``/docsx``). Every request asks, so the test is a set lookup and
    one ``str.startswith`` over a tuple, both in C."""

    def __init__(self, prefixes: Iterable[str]) -> None:
        normalized = [normalize_exempt_path(prefix) for prefix in prefixes]
        self.everything = "/" in normalized
        self.exact = frozenset(normalized)
        self.under = tuple(prefix + "/" for prefix in normalized)

    def __contains__(self, path: str) -> bool:
        return self.everything or path in self.exact or path.startswith(self.under)


def is_exempt(path: str, prefixes: Iterable[str]) -> bool:
    """True when ``path`` equals one of ``prefixes`` or continues it after a ``/``."""
    return path in ExemptPaths(prefixes)


DEFAULT_EXEMPT_PATHS: Final = ("/api/health", "/api/ready", "/docs", "/openapi.json")


# -- settings validation (used by api.core.config) -------------------------------------------------


def check_policies(value: str) -> str:
    """Validate a comma-separated policy list (``RATE_LIMIT_DEFAULT``); return it unchanged."""
    parse_policies(value)
    return value


def check_rules(value: dict[str, str]) -> dict[str, str]:
    """Validate ``RATE_LIMIT_RULES``; return it unchanged."""
    parse_rules(value)
    return value


def check_exempt_paths(value: list[str]) -> list[str]:
    """Validate ``RATE_LIMIT_EXEMPT_PATHS`` (each starts with ``/``); return them normalized."""
    return [normalize_exempt_path(path) for path in value]


def split_networks(value: object) -> object:
    """Read ``RET_TRUSTED_PROXIES`` from the environment: a JSON list or comma-separated CIDRs."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]
    return value


def normalize_networks(value: list[str]) -> list[str]:
    """Each entry as a canonical CIDR (a bare address becomes /32 or /128).

    Raises:
        ValueError: an entry is ``*`` (trusting every peer is never allowed) or not an address/CIDR.
    """
    networks = []
    for item in value:
        if item.strip() == "*":
            raise ValueError("'*' would let any client choose its address; list your proxies' CIDRs")
        try:
            networks.append(str(ipaddress.ip_network(item.strip(), strict=False)))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
    return networks
