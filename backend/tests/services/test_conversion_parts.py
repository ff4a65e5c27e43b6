"""Converting one part: every file listed with its outcome; a failing file leaves no rows."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
from pathlib import Path
from typing import Any

import pytest

from api.services.conversion_parts import FileOutcome, PartFile, PartTask, convert_part

GOOD = b"<r><book><t>one</t></book><book><t>two</t></book></r>"


def _file(tmp_path: Path, number: int, data: bytes, sha256: str | None = None) -> PartFile:
    path = tmp_path / f"{number}.xml"
    path.write_bytes(data)
    return PartFile(number, path.name, path, len(data), sha256)


def _task(tmp_path: Path, files: list[PartFile], whole_document_bytes: int = 1 << 20) -> PartTask:
    spools = tmp_path / "spools"
    spools.mkdir(exist_ok=True)
    return PartTask(0, files, None, spools, whole_document_bytes)


def test_records_are_counted_and_hashes_computed(tmp_path: Path) -> None:
    result = convert_part(_task(tmp_path, [_file(tmp_path, 0, GOOD)]))
    (outcome,) = result.outcomes
    assert (outcome.status, outcome.records, outcome.sha256) == (
        "converted",
        2,
        hashlib.sha256(GOOD).hexdigest(),
    )
    assert result.tables[0].rows == 2


def test_a_document_parsed_whole_is_read_once_for_its_hash_and_its_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[Path] = []
    real_open, real_os_open = Path.open, os.open

    def counting_open(path: Path, *args: Any, **kwargs: Any) -> Any:
        opened.append(path)
        return real_open(path, *args, **kwargs)

    def counting_os_open(path: Path, *args: Any, **kwargs: Any) -> Any:
        opened.append(Path(path))
        return real_os_open(path, *args, **kwargs)

    part_file = _file(tmp_path, 0, GOOD)
    monkeypatch.setattr(Path, "open", counting_open)
    monkeypatch.setattr(os, "open", counting_os_open)  # either way of opening it counts
    result = convert_part(_task(tmp_path, [part_file]))
    assert result.outcomes[0].sha256 == hashlib.sha256(GOOD).hexdigest()
    assert opened.count(part_file.path) == 1


def test_a_document_parsed_incrementally_is_hashed_too(tmp_path: Path) -> None:
    result = convert_part(_task(tmp_path, [_file(tmp_path, 0, GOOD)], whole_document_bytes=10))
    (outcome,) = result.outcomes
    assert (outcome.status, outcome.records, outcome.sha256) == (
        "converted",
        2,
        hashlib.sha256(GOOD).hexdigest(),
    )


def test_a_known_hash_is_neither_recomputed_nor_sent_back(tmp_path: Path) -> None:
    result = convert_part(_task(tmp_path, [_file(tmp_path, 0, GOOD, sha256="given")]))
    assert result.outcomes[0].sha256 is None  # the parent has it already


def test_a_file_failing_half_way_leaves_no_rows(tmp_path: Path) -> None:
    broken = b"<r>" + b"<book><t>ok</t></book>" * 200 + b"<book><t>cut"
    files = [_file(tmp_path, 0, GOOD), _file(tmp_path, 1, broken), _file(tmp_path, 2, GOOD)]
    result = convert_part(_task(tmp_path, files, whole_document_bytes=0))  # incremental: rows came first
    assert [outcome.status for outcome in result.outcomes] == ["converted", "failed", "converted"]
    assert result.outcomes[1].reason.startswith("malformed XML")  # type: ignore[union-attr]
    assert (result.tables[0].rows, result.tables[0].path.read_bytes().count(b"\n")) == (4, 4)


def test_a_refused_document_is_reported_and_the_part_goes_on(tmp_path: Path) -> None:
    files = [_file(tmp_path, 0, b"<!DOCTYPE r [<!ENTITY a 'b'>]><r>&a;</r>"), _file(tmp_path, 1, GOOD)]
    result = convert_part(_task(tmp_path, files))
    assert [outcome.status for outcome in result.outcomes] == ["failed", "converted"]
    assert "DOCTYPE" in result.outcomes[0].reason  # type: ignore[operator]


def test_each_finished_file_is_reported(tmp_path: Path) -> None:
    done: list[int] = []
    convert_part(_task(tmp_path, [_file(tmp_path, n, GOOD) for n in range(3)]), lambda: done.append(1))
    assert len(done) == 3


def test_the_peak_memory_of_the_worker_is_reported(tmp_path: Path) -> None:
    assert convert_part(_task(tmp_path, [_file(tmp_path, 0, GOOD)])).peak_rss_bytes > 0


@pytest.mark.parametrize(
    "outcome",
    [
        FileOutcome(3, "converted", 12, None),
        FileOutcome(4, "failed", 0, "ab" * 32, "malformed XML: line 1", partial=True),
    ],
)
def test_an_outcome_comes_back_from_a_worker_unchanged(outcome: FileOutcome) -> None:
    assert pickle.loads(pickle.dumps(outcome)) == outcome
    assert len(outcome.__reduce__()[1]) == len(dataclasses.fields(FileOutcome))  # no field left out
