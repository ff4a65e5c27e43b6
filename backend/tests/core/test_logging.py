from __future__ import annotations

import logging

import orjson

from api.core.logging import JsonFormatter, RequestIdFilter, request_id_var


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord({"name": "t", "levelname": "INFO", "msg": message, **extra})
    RequestIdFilter().filter(record)
    return record


def test_json_lines_carry_request_id_and_extras() -> None:
    token = request_id_var.set("rid-1")
    try:
        line = JsonFormatter().format(_record("hello %s", args=("world",), status=200))
    finally:
        request_id_var.reset(token)
    payload = orjson.loads(line)
    assert payload["message"] == "hello world"
    assert payload["request_id"] == "rid-1"
    assert payload["status"] == 200
    assert payload["time"].endswith("Z")


def test_request_id_outside_a_request_is_a_dash() -> None:
    assert _record("x").request_id == "-"  # type: ignore[attr-defined]
