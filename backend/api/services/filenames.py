"""Turning a client-supplied file name into a safe, readable name (strings only, no paths).

The result is a single path component: no directory parts of either slash style, no ``.``/``..``,
no control or format characters, no Windows reserved device names, at most ``MAX_NAME_BYTES``
UTF-8 bytes, and stable under Unicode NFKC (so look-alikes such as fullwidth dots and slashes are
folded *before* the checks, not after).
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import PurePosixPath

MAX_NAME_BYTES = 200
FALLBACK_NAME = "file"
# Characters kept as they are; anything else (shell and filesystem metacharacters) becomes "_".
UNSAFE = re.compile(r"[^\w .()\[\]@+,=-]", re.UNICODE)
WINDOWS_RESERVED = frozenset(
    {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}
)


class UnsafeFilenameError(ValueError):
    """A name that cannot be made safe (empty, only dots, ...)."""


def safe_filename(raw: str) -> str:
    """A safe single-component version of ``raw`` that keeps it readable.

    Raises:
        UnsafeFilenameError: nothing usable is left (``""``, ``".."``, only separators, ...).
    """
    name = unicodedata.normalize("NFKC", raw)
    name = name.replace("\\", "/").rsplit("/", 1)[-1]  # basename in either convention
    name = "".join(char for char in name if unicodedata.category(char)[0] != "C")
    name = UNSAFE.sub("_", name).strip(" .")
    if not name or set(name) <= {".", "_", " "}:
        raise UnsafeFilenameError(f"file name {raw[:80]!r} has no usable characters")
    stem = name.split(".", 1)[0].lower()
    if stem in WINDOWS_RESERVED:
        name = "_" + name
    return _truncate(name)


def _truncate(name: str) -> str:
    if len(name.encode("utf-8")) <= MAX_NAME_BYTES:
        return name
    suffix = PurePosixPath(name).suffix
    suffix = suffix if len(suffix.encode("utf-8")) <= 16 else ""
    stem = name[: len(name) - len(suffix)]
    while len((stem + suffix).encode("utf-8")) > MAX_NAME_BYTES:
        stem = stem[:-1]
    return stem.rstrip(" .") + suffix


def deduplicated(name: str, taken: set[str]) -> str:
    """``name``, or ``name (2).ext``, ``name (3).ext``, ... — the first not in ``taken``
    (compared case-insensitively, since some filesystems are)."""
    folded = {existing.casefold() for existing in taken}
    if name.casefold() not in folded:
        return name
    path = PurePosixPath(name)
    stem, suffix = (path.stem, path.suffix) if path.suffix else (name, "")
    counter = 2
    while True:
        candidate = _truncate(f"{stem} ({counter}){suffix}")
        if candidate.casefold() not in folded:
            return candidate
        counter += 1


def content_disposition(name: str) -> str:
    """A ``Content-Disposition: attachment`` value safe for any name (RFC 6266 + RFC 5987)."""
    from urllib.parse import quote

    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"
