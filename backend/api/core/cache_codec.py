"""Validation and encoding of session-cache keys, values and TTLs (shared by every backend).

Values are stored as a (kind, payload) pair: ints, strs and bytes natively (so SQLite can add to an
int in place), everything else as orjson-encoded JSON. Never pickle: a stored value can only ever
decode to plain data.
"""

from __future__ import annotations

import math
from typing import Any, Final

import orjson

from api.core.cache_contract import MAX_KEY_BYTES

KIND_JSON: Final = 0
KIND_BYTES: Final = 1
KIND_INT: Final = 2
KIND_STR: Final = 3

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
# orjson refuses deeper documents; checking first gives a clear error instead of a RecursionError.
MAX_DEPTH: Final = 254

Payload = bytes | int | str


def validate_key(key: object) -> str:
    """Return ``key`` if it is a usable key; raise ``TypeError``/``ValueError`` naming the problem."""
    if type(key) is not str:
        raise TypeError(f"cache keys must be str, not {type(key).__name__}")
    if not key:
        raise ValueError("cache keys must not be empty")
    # Only long or non-ASCII keys need encoding (``isascii`` is a flag check): a lone surrogate has
    # no UTF-8 form, so SQLite would refuse such a key where the memory backend would keep it.
    if len(key) * 4 > MAX_KEY_BYTES or not key.isascii():
        try:
            size = len(key.encode("utf-8"))
        except UnicodeEncodeError:
            raise ValueError(f"cache key is not valid Unicode (lone surrogate): {key[:40]!r}") from None
        if size > MAX_KEY_BYTES:
            raise ValueError(f"cache key is longer than {MAX_KEY_BYTES} UTF-8 bytes: {key[:40]!r}...")
    return key


def validate_prefix(prefix: object) -> str:
    """A prefix for ``keys``/``clear_pattern``: any str (``""`` allowed here)."""
    if type(prefix) is not str:
        raise TypeError(f"key prefixes must be str, not {type(prefix).__name__}")
    return prefix


def expiry_time(now: float, ttl_seconds: float | None, default_ttl: float) -> float:
    """Absolute expiry for a TTL (``None`` means the default); reject ≤ 0, NaN and infinity."""
    if ttl_seconds is None:
        return now + default_ttl
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int | float):
        raise TypeError(f"ttl_seconds must be a number, not {type(ttl_seconds).__name__}")
    if not math.isfinite(ttl_seconds) or ttl_seconds <= 0:
        raise ValueError(f"ttl_seconds must be a finite number > 0, got {ttl_seconds!r}")
    return now + ttl_seconds


def validate_default_ttl(ttl_seconds: float) -> float:
    expiry_time(0.0, ttl_seconds, 0.0)
    return float(ttl_seconds)


def validate_amount(amount: object) -> int:
    if type(amount) is not int:
        raise TypeError(f"incr amount must be an int, not {type(amount).__name__}")
    if not INT64_MIN <= amount <= INT64_MAX:
        raise ValueError("incr amount is outside the signed 64-bit range")
    return amount


def encode(value: Any, max_bytes: int) -> tuple[int, Payload]:
    """Validate ``value`` and return its (kind, payload); nothing is stored on error.

    Raises:
        TypeError: not a JSON type (or bytes at the top level).
        ValueError: a non-finite float, an int outside 64 bits, or an encoding over ``max_bytes``.
    """
    kind = type(value)
    if kind is int:
        if INT64_MIN <= value <= INT64_MAX:
            return KIND_INT, value
        raise ValueError("int values must fit in a signed 64-bit integer")
    if kind is str:
        if len(value) * 4 > max_bytes:
            _check_size(len(value.encode("utf-8")), max_bytes)
        return KIND_STR, value
    if kind is bytes:
        _check_size(len(value), max_bytes)
        return KIND_BYTES, value
    _check_json(value, 0)
    try:
        payload = orjson.dumps(value)
    except orjson.JSONEncodeError as exc:  # e.g. a str with lone surrogates
        raise TypeError(f"value cannot be stored as JSON: {exc}") from None
    _check_size(len(payload), max_bytes)
    return KIND_JSON, payload


def decode(kind: int, payload: Payload) -> Any:
    """The value for a stored (kind, payload); JSON decodes to a fresh object every time."""
    if kind == KIND_JSON:
        return orjson.loads(payload)  # type: ignore[arg-type]  # JSON payloads are always bytes
    if kind == KIND_BYTES:
        return bytes(payload)  # type: ignore[arg-type]
    return payload


def _check_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise ValueError(f"encoded value is {size} bytes, above the {max_bytes}-byte limit")


def _check_json(value: Any, depth: int) -> None:
    # A walk with exact type checks: orjson alone would also accept (and silently change) tuples of
    # UUIDs, datetimes, enums and dataclasses, and would turn NaN into null.
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return
    if kind is int:
        if not INT64_MIN <= value <= INT64_MAX:
            raise ValueError("int values must fit in a signed 64-bit integer")
        return
    if kind is float:
        if not math.isfinite(value):
            raise ValueError(f"cannot store a non-finite float ({value!r})")
        return
    if depth >= MAX_DEPTH:
        raise ValueError(f"value is nested deeper than {MAX_DEPTH} levels")
    if kind is dict:
        for item_key, item in value.items():
            if type(item_key) is not str:
                raise TypeError(f"dict keys must be str, not {type(item_key).__name__}")
            _check_json(item, depth + 1)
        return
    if kind is list or kind is tuple:
        for item in value:
            _check_json(item, depth + 1)
        return
    where = "nested" if depth else "top-level"
    raise TypeError(f"cannot store a {where} {kind.__name__}: values must be JSON types or top-level bytes")
