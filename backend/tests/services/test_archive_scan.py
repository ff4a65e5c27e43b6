"""The scan: nested extraction, archive-chain source paths, refusals, damaged archives, limits."""

from __future__ import annotations

import time
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.services.archive_scan import ScanLimits, SourceFile, _suffix, scan
from api.services.zip_safety import LimitExceededError
from tests.support.archives import (
    lying_sizes,
    many_entries,
    marked_encrypted,
    nested,
    symlink,
    write_zip,
    zip_bytes,
)

XML = b"<r><book><t>x</t></book></r>"
LIMITS = ScanLimits(
    max_depth=5, max_files=1000, max_total_bytes=1 << 30, max_file_bytes=1 << 28, max_ratio=200
)


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "input").mkdir()
    (tmp_path / "extracted").mkdir()
    return tmp_path / "input", tmp_path / "extracted"


def _scan(dirs: tuple[Path, Path], limits: ScanLimits = LIMITS) -> dict[str, SourceFile]:
    return {source.source: source for source in scan(dirs[0], dirs[1], limits, lambda message: None)}


def test_nested_archives_are_listed_as_archive_chains(dirs: tuple[Path, Path]) -> None:
    inner = zip_bytes([("book_1.xml", XML)])
    write_zip(dirs[0] / "deposits.zip", [("2024/batch.zip", inner), ("top.xml", XML)])
    assert list(_scan(dirs)) == [
        "deposits.zip",
        "deposits.zip!/2024/batch.zip",
        "deposits.zip!/2024/batch.zip!/book_1.xml",
        "deposits.zip!/top.xml",
    ]


def test_each_archive_gets_its_own_directory(dirs: tuple[Path, Path]) -> None:
    inner_a, inner_b = zip_bytes([("x.xml", b"<r>a</r>")]), zip_bytes([("x.xml", b"<r>b</r>")])
    write_zip(dirs[0] / "d.zip", [("a/data.zip", inner_a), ("b/data.zip", inner_b)])
    found = _scan(dirs)
    first, second = found["d.zip!/a/data.zip!/x.xml"], found["d.zip!/b/data.zip!/x.xml"]
    assert first.path is not None
    assert second.path is not None
    assert first.path.parent != second.path.parent
    assert (first.path.read_bytes(), second.path.read_bytes()) == (b"<r>a</r>", b"<r>b</r>")


def test_extracted_files_carry_size_and_sha256(dirs: tuple[Path, Path]) -> None:
    write_zip(dirs[0] / "d.zip", [("a.xml", b"abc")])
    source = _scan(dirs)["d.zip!/a.xml"]
    assert (source.size, source.sha256) == (
        3,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    )


def test_non_xml_entries_are_skipped_with_the_reason(dirs: tuple[Path, Path]) -> None:
    write_zip(dirs[0] / "d.zip", [("readme.pdf", b"%PDF"), ("a.xml", XML)])
    source = _scan(dirs)["d.zip!/readme.pdf"]
    assert (source.status, source.reason, source.path) == ("skipped", "not an XML or ZIP file (.pdf)", None)


@pytest.mark.parametrize("name", ["../../evil.xml", "/etc/evil.xml", "C:\\evil.xml", "..\\evil.xml"])
def test_escaping_entries_are_refused_and_reported(dirs: tuple[Path, Path], name: str) -> None:
    write_zip(dirs[0] / "d.zip", [(name, XML), ("ok.xml", XML)])
    found = _scan(dirs)
    assert found[f"d.zip!/{name}"].status == "failed"
    assert found[f"d.zip!/{name}"].reason.startswith("refused")  # type: ignore[union-attr]
    assert found["d.zip!/ok.xml"].path is not None
    assert [path.name for path in dirs[0].parent.rglob("evil.xml")] == []


def test_links_are_refused_and_reported(dirs: tuple[Path, Path]) -> None:
    write_zip(dirs[0] / "d.zip", [symlink("link.xml", "/etc/passwd")])
    assert _scan(dirs)["d.zip!/link.xml"].reason == "refused: a symbolic link"


def test_a_truncated_archive_is_reported_and_nothing_of_it_kept(dirs: tuple[Path, Path]) -> None:
    data = zip_bytes([("a.xml", XML * 100), ("b.xml", XML)])
    (dirs[0] / "cut.zip").write_bytes(data[: len(data) // 2])
    write_zip(dirs[0] / "good.zip", [("c.xml", XML)])
    found = _scan(dirs)
    assert found["cut.zip"].status == "failed"
    assert found["cut.zip"].reason.startswith("damaged archive")  # type: ignore[union-attr]
    assert "good.zip!/c.xml" in found
    assert len(list(dirs[1].iterdir())) == 1


def test_a_member_whose_data_contradicts_its_header_fails_the_archive(dirs: tuple[Path, Path]) -> None:
    bomb = zip_bytes([("bomb.xml", b"\0" * (8 << 20))])
    (dirs[0] / "liar.zip").write_bytes(lying_sizes(bomb, 1000))
    found = _scan(dirs)
    assert found["liar.zip"].status == "failed"
    assert list(dirs[1].iterdir()) == []


def test_hidden_and_partial_uploads_are_ignored(dirs: tuple[Path, Path]) -> None:
    (dirs[0] / ".upload-1234.part").write_bytes(XML)
    (dirs[0] / "a.xml").write_bytes(XML)
    assert list(_scan(dirs)) == ["a.xml"]


def test_encrypted_entries_are_refused(dirs: tuple[Path, Path]) -> None:
    (dirs[0] / "d.zip").write_bytes(marked_encrypted(zip_bytes([("secret.xml", XML)])))
    assert _scan(dirs)["d.zip!/secret.xml"].reason == "skipped: the entry is encrypted"


def test_nesting_deeper_than_the_limit_stops_the_scan(dirs: tuple[Path, Path]) -> None:
    (dirs[0] / "deep.zip").write_bytes(nested(4))
    assert "deep.zip!/level4.zip!/level3.zip!/level2.zip!/leaf.xml" in _scan(dirs, LIMITS)
    with pytest.raises(LimitExceededError, match="nested too deeply") as caught:
        _scan(dirs, ScanLimits(3, 1000, 1 << 30, 1 << 28, 200))
    assert caught.value.setting == "MAX_NESTED_ZIP_DEPTH"


def test_too_many_entries_stop_the_scan_before_extracting(dirs: tuple[Path, Path]) -> None:
    (dirs[0] / "many.zip").write_bytes(many_entries(100_000))
    started = time.monotonic()
    with pytest.raises(LimitExceededError) as caught:
        _scan(dirs, ScanLimits(5, 20_000, 1 << 30, 1 << 28, 200))
    assert caught.value.setting == "MAX_TOTAL_FILES"
    assert time.monotonic() - started < 5
    assert not any(dirs[1].rglob("*.xml"))


def test_total_bytes_are_counted_on_what_is_written(dirs: tuple[Path, Path]) -> None:
    write_zip(dirs[0] / "d.zip", [(f"{n}.xml", bytes(range(256)) * 400) for n in range(5)])
    with pytest.raises(LimitExceededError) as caught:
        _scan(dirs, ScanLimits(5, 1000, 300_000, 1 << 28, 200))
    assert caught.value.setting == "MAX_TOTAL_BYTES"


def test_a_file_larger_than_the_per_file_limit_stops_the_scan(dirs: tuple[Path, Path]) -> None:
    write_zip(dirs[0] / "d.zip", [("big.xml", bytes(range(256)) * 4096)])
    with pytest.raises(LimitExceededError) as caught:
        _scan(dirs, ScanLimits(5, 1000, 1 << 30, 1 << 19, 200))
    assert caught.value.setting == "MAX_PER_FILE_BYTES"


def test_a_high_compression_ratio_stops_the_scan(dirs: tuple[Path, Path]) -> None:
    write_zip(dirs[0] / "bomb.zip", [("bomb.xml", b"\0" * (64 << 20))])
    started = time.monotonic()
    with pytest.raises(LimitExceededError) as caught:
        _scan(dirs)
    assert caught.value.setting == "MAX_COMPRESSION_RATIO"
    assert time.monotonic() - started < 5


@given(st.text(alphabet="a.X/\\é", max_size=12))
def test_the_suffix_is_the_one_pathlib_gives(name: str) -> None:
    assert _suffix(name) == PurePosixPath(name.replace("\\", "/")).suffix.lower()
