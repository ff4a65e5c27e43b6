"""Hostile uploads (issue 8's list): each fails cleanly, within seconds and bounded memory, and the
rest of the job goes on wherever the issue says it should."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from api.services.conversion_service import ConversionLimitError
from tests.support.archives import lying_sizes, many_entries, nested, zip_bytes
from tests.support.hostile_xml import BILLION_LAUGHS, recording_server
from tests.support.memory import peak_rss_growth
from tests.support.workspace import Workspace

GOOD = b"<r><book><t>fine</t></book></r>"
SECONDS = 10
MEMORY = 150 * 1024 * 1024


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    space = Workspace(tmp_path)
    space.upload("good.xml", GOOD)
    return space


@contextmanager
def cleanly() -> Iterator[None]:
    """Within ``SECONDS`` and with the peak resident size growing less than ``MEMORY``."""
    started = time.monotonic()
    with peak_rss_growth() as growth:
        yield
    assert time.monotonic() - started < SECONDS
    assert growth.bytes < MEMORY


def _files(workspace: Workspace) -> dict[str, dict[str, Any]]:
    manifest = json.loads(workspace.outputs()["manifest.json"])
    return {entry["source"]: entry for entry in manifest["files"]}


def _still_converted(workspace: Workspace) -> None:
    assert _files(workspace)["good.xml"]["status"] == "converted"
    assert b"fine" in workspace.outputs()["book.csv"]


def test_zip_slip_entries_are_refused_and_reported(workspace: Workspace, tmp_path: Path) -> None:
    workspace.upload("slip.zip", zip_bytes([("../../../../evil.xml", GOOD), ("/tmp/evil2.xml", GOOD)]))
    with cleanly():
        workspace.convert()
    files = _files(workspace)
    assert files["slip.zip!/../../../../evil.xml"]["reason"].startswith("refused")
    assert files["slip.zip!//tmp/evil2.xml"]["reason"].startswith("refused")
    assert not list(tmp_path.rglob("evil*.xml"))
    _still_converted(workspace)


def test_a_zip_bomb_with_a_high_ratio_fails_the_job(workspace: Workspace) -> None:
    workspace.upload("bomb.zip", zip_bytes([("bomb.xml", b"\0" * (256 << 20))]))
    with cleanly(), pytest.raises(ConversionLimitError) as caught:
        workspace.convert()
    assert caught.value.extra["limit"] == "MAX_COMPRESSION_RATIO"
    assert list(workspace.area("extracted").iterdir()) == []


def test_a_zip_bomb_with_a_lying_header_is_reported_damaged(workspace: Workspace) -> None:
    workspace.upload("liar.zip", lying_sizes(zip_bytes([("bomb.xml", b"\0" * (64 << 20))]), 100))
    with cleanly():
        workspace.convert()
    assert _files(workspace)["liar.zip"]["reason"].startswith("damaged archive")
    _still_converted(workspace)


def test_a_hundred_thousand_tiny_entries_fail_the_job(workspace: Workspace) -> None:
    workspace.upload("many.zip", many_entries(100_000))
    with cleanly(), pytest.raises(ConversionLimitError) as caught:
        workspace.convert()
    assert caught.value.extra["limit"] == "MAX_TOTAL_FILES"


def test_nesting_deeper_than_the_limit_fails_the_job(workspace: Workspace) -> None:
    workspace.upload("deep.zip", nested(7))
    with cleanly(), pytest.raises(ConversionLimitError) as caught:
        workspace.convert()
    assert caught.value.extra["limit"] == "MAX_NESTED_ZIP_DEPTH"


def test_billion_laughs_is_refused_and_the_job_goes_on(workspace: Workspace) -> None:
    workspace.upload("lol.xml", BILLION_LAUGHS.encode())
    with cleanly():
        workspace.convert()
    assert "DOCTYPE" in _files(workspace)["lol.xml"]["reason"]
    _still_converted(workspace)


def test_external_entities_read_and_fetch_nothing(workspace: Workspace, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET", encoding="utf-8")
    workspace.upload(
        "file.xml", f'<!DOCTYPE r [<!ENTITY s SYSTEM "file://{secret}">]><r><b>&s;</b></r>'.encode()
    )
    with recording_server() as server:
        workspace.upload(
            "http.xml", f'<!DOCTYPE r [<!ENTITY s SYSTEM "{server.url}/x">]><r><b>&s;</b></r>'.encode()
        )
        with cleanly():
            workspace.convert()
    files = _files(workspace)
    assert files["file.xml"]["status"] == files["http.xml"]["status"] == "failed"
    assert all(b"TOP-SECRET" not in data for data in workspace.outputs().values())
    assert server.requests == []
    _still_converted(workspace)


def test_a_truncated_zip_is_reported_and_the_job_goes_on(workspace: Workspace) -> None:
    data = zip_bytes([(f"{n}.xml", GOOD * 50) for n in range(20)])
    workspace.upload("cut.zip", data[: len(data) * 2 // 3])
    with cleanly():
        workspace.convert()
    assert _files(workspace)["cut.zip"]["status"] == "failed"
    _still_converted(workspace)


def test_malformed_xml_is_reported_and_the_job_goes_on(workspace: Workspace) -> None:
    workspace.upload("bad.xml", b"<r><book><t>oops</book>")
    with cleanly():
        workspace.convert()
    assert _files(workspace)["bad.xml"]["reason"].startswith("malformed XML")
    _still_converted(workspace)


@pytest.mark.parametrize(
    ("encoding", "text"), [("iso-8859-1", "Zürich"), ("utf-16", "東京 Zürich"), ("shift_jis", "東京")]
)
def test_declared_non_utf8_encodings_convert(workspace: Workspace, encoding: str, text: str) -> None:
    workspace.upload(
        "enc.xml",
        f'<?xml version="1.0" encoding="{encoding}"?><r><book><t>{text}</t></book></r>'.encode(encoding),
    )
    workspace.convert()
    assert _files(workspace)["enc.xml"]["status"] == "converted"
    assert workspace.outputs()["book.csv"].decode("utf-8").splitlines()[1] == f"enc.xml,1,book,{text}"
