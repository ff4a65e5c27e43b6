"""The one rule for job arguments and results: plain JSON that survives a round trip unchanged."""

from __future__ import annotations

from typing import Any

import orjson


def json_problem(value: Any) -> str | None:
    """Why ``value`` is not plain JSON, or None when it is.

    orjson rejects what JSON cannot hold (sets, bytes, objects, non-string keys, integers beyond
    64 bits); comparing the round trip catches what it would silently change (NaN and infinity
    become null, tuples become lists).
    """
    try:
        encoded = orjson.dumps(value)
    except TypeError as exc:
        return str(exc)
    if orjson.loads(encoded) != value:
        return "it changes in a JSON round trip (NaN, infinity, tuples or other non-JSON values)"
    return None
