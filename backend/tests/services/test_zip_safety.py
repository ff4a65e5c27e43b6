"""Member paths, links, entry counting and bounded copying: the hostile-ZIP defences."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest

from api.services import filenames
from api.services.zip_safety import (
    CopyLimits,
    LimitExceededError,
    MemberPaths,
    UnsafeMemberError,
    copy_member,
    count_entries,
    is_link,
)
from tests.support.archives import many_entries, symlink, zip_bytes


@pytest.fixture
def paths(tmp_path: Path) -> MemberPaths:
    directory = tmp_path / "archive"
    directory.mkdir()
    return MemberPaths(directory)


@pytest.mark.parametrize(
    "name", ["/etc/passwd", "//server/share/x.xml", "\\\\server\\share\\x.xml", "\\x.xml"]
)
def test_absolute_names_are_refused(paths: MemberPaths, name: str) -> None:
    with pytest.raises(UnsafeMemberError, match="absolute"):
        paths.path(name)


@pytest.mark.parametrize("name", ["C:\\windows\\x.xml", "c:x.xml", "D:/x.xml"])
def test_drive_letters_are_refused(paths: MemberPaths, name: str) -> None:
    with pytest.raises(UnsafeMemberError, match="absolute"):
        paths.path(name)


@pytest.mark.parametrize(
    "name", ["../x.xml", "a/../../x.xml", "..\\..\\x.xml", "a\\..\\..\\x.xml", "./../x.xml"]
)
def test_parent_references_are_refused(paths: MemberPaths, name: str) -> None:
    with pytest.raises(UnsafeMemberError, match="climbs"):
        paths.path(name)


def test_backslashes_separate_directories(paths: MemberPaths) -> None:
    assert paths.path("2024\\batch\\a.xml") == paths.directory / "2024" / "batch" / "a.xml"


def test_components_are_made_safe_file_names(paths: MemberPaths) -> None:
    assert paths.path("./a//b\x07c/con.xml") == paths.directory / "a" / "bc" / "_con.xml"


def test_a_directory_resolving_outside_is_refused(paths: MemberPaths, tmp_path: Path) -> None:
    os.symlink(tmp_path, paths.directory / "escape")
    with pytest.raises(UnsafeMemberError, match="outside"):
        paths.path("escape/x.xml")


def test_create_never_replaces_an_existing_file(paths: MemberPaths) -> None:
    target = paths.path("a.xml")
    for content in (b"first", b"second"):
        _, handle = paths.create(target)
        with handle:
            handle.write(content)
    assert target.read_bytes() == b"first"
    assert (paths.directory / "a (2).xml").read_bytes() == b"second"


def test_links_are_recognised() -> None:
    info, _ = symlink("link.xml", "/etc/passwd")
    assert isinstance(info, zipfile.ZipInfo)
    assert is_link(info)
    assert not is_link(zipfile.ZipInfo("plain.xml"))


def test_entries_are_counted_from_the_central_directory() -> None:
    data = zip_bytes([(f"{n}.xml", b"<r/>") for n in range(7)])
    assert count_entries(io.BytesIO(data), 100) == 7


def test_counting_stops_past_the_limit() -> None:
    assert count_entries(io.BytesIO(many_entries(1000)), 10) == 11


def test_counting_allows_data_before_the_archive() -> None:
    data = b"#!/bin/sh\nexit 0\n" + zip_bytes([("a.xml", b"<r/>")])
    assert count_entries(io.BytesIO(data), 10) == 1


@pytest.mark.parametrize("data", [b"", b"not a zip at all", zip_bytes([("a.xml", b"<r/>")])[:-30]])
def test_counting_rejects_damaged_archives(data: bytes) -> None:
    with pytest.raises(zipfile.BadZipFile):
        count_entries(io.BytesIO(data), 10)


def _copy(
    data: bytes, compressed: int, limits: CopyLimits, charged: list[int] | None = None
) -> tuple[int, str]:
    sink: list[int] = [] if charged is None else charged
    return copy_member(io.BytesIO(data), io.BytesIO(), compressed, limits, sink.append)


def test_copying_reports_size_and_sha256() -> None:
    assert _copy(b"abc", 3, CopyLimits(10, 2)) == (
        3,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    )


def test_copying_stops_past_the_per_file_limit() -> None:
    with pytest.raises(LimitExceededError) as caught:
        _copy(b"x" * 5000, 5000, CopyLimits(4096, 1000))
    assert caught.value.setting == "MAX_PER_FILE_BYTES"


def test_copying_stops_past_the_compression_ratio() -> None:
    with pytest.raises(LimitExceededError) as caught:
        _copy(b"\0" * (3 << 20), 1000, CopyLimits(1 << 30, 200))
    assert caught.value.setting == "MAX_COMPRESSION_RATIO"


def test_small_files_may_compress_well() -> None:
    assert _copy(b" " * 100_000, 100, CopyLimits(1 << 30, 200))[0] == 100_000


def test_every_chunk_is_charged_before_it_is_written() -> None:
    charged: list[int] = []
    _copy(b"x" * 600_000, 600_000, CopyLimits(1 << 30, 200), charged)
    assert sum(charged) == 600_000
    assert len(charged) > 1


@pytest.mark.parametrize("name", ["a.xml", "Book_1.XML", "x-y.z", "aux.xml", "con", "trailing.", "a" * 250])
def test_plain_names_are_kept_exactly_as_safe_filename_would(paths: MemberPaths, name: str) -> None:
    assert paths.path(name).name == filenames.safe_filename(name)
