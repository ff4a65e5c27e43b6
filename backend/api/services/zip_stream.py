"""A ZIP archive written as a stream of chunks (for downloading many files without a temp file).

``zipfile`` can write to an unseekable stream (it then uses data descriptors); we give it a sink
that hands each written chunk to the generator, so memory stays at one chunk per file read.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

READ_CHUNK = 256 * 1024


class _Sink(io.RawIOBase):
    """An unseekable, write-only stream that collects what is written until drained."""

    def __init__(self) -> None:
        self.pending: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.pending.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        data, self.pending = b"".join(self.pending), []
        return data


def stream_zip(files: Iterable[tuple[Path, str]]) -> Iterator[bytes]:
    """Yield a ZIP of ``(path on disk, name in archive)`` pairs, chunk by chunk."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path, name in files:
            info = zipfile.ZipInfo.from_file(path, name)
            info.compress_type = zipfile.ZIP_DEFLATED
            with path.open("rb") as source, archive.open(info, "w", force_zip64=True) as target:
                while chunk := source.read(READ_CHUNK):
                    target.write(chunk)
                    if data := sink.drain():
                        yield data
            if data := sink.drain():
                yield data
    if data := sink.drain():
        yield data
