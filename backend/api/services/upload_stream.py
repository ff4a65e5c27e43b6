"""Streaming a multipart/form-data body straight into files, chunk by chunk.

The body is never held in memory or spooled to a temporary directory: each chunk from the client
goes through python-multipart's push parser into the sink that the storage service gives us, so
per-file limits apply the moment they are crossed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

import anyio.to_thread
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from api.errors import AppError

MAX_PART_HEADER_BYTES = 16 * 1024


class MalformedUploadError(AppError):
    status_code = 400
    code = "malformed_upload"


class UnsupportedUploadTypeError(AppError):
    status_code = 415
    code = "unsupported_media_type"


class FileSink(Protocol):
    """Receives the file parts of one upload, in order."""

    def begin(self, filename: str) -> None:
        """A file part starts; raise to refuse it (e.g. a type that is not accepted)."""

    def write(self, data: bytes) -> None:
        """Bytes of the current part; raise to stop the upload (e.g. a size limit)."""

    def end(self) -> None:
        """The current part is complete."""


class _Parts:
    """python-multipart callbacks → FileSink calls (non-file fields are skipped)."""

    def __init__(self, sink: FileSink) -> None:
        self.sink = sink
        self.header_field = b""
        self.headers: dict[bytes, bytes] = {}
        self.in_file = False
        self.header_bytes = 0

    def on_part_begin(self) -> None:
        self.headers, self.header_field, self.header_bytes = {}, b"", 0

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]
        self._count(end - start)

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        key = self.header_field.lower()
        self.headers[key] = self.headers.get(key, b"") + data[start:end]
        self._count(end - start)

    def on_header_end(self) -> None:
        self.header_field = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        filename = options.get(b"filename*") or options.get(b"filename")
        self.in_file = filename is not None
        if filename is not None:
            self.sink.begin(filename.decode("utf-8", "replace"))

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.in_file:
            self.sink.write(data[start:end])

    def on_part_end(self) -> None:
        if self.in_file:
            self.sink.end()
        self.in_file = False

    def _count(self, size: int) -> None:
        self.header_bytes += size
        if self.header_bytes > MAX_PART_HEADER_BYTES:
            raise MalformedUploadError("multipart part headers are too large")


def boundary_of(content_type: str) -> bytes:
    """The multipart boundary of a Content-Type header.

    Raises:
        UnsupportedUploadTypeError: not multipart/form-data. MalformedUploadError: no boundary.
    """
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        raise UnsupportedUploadTypeError("uploads must be multipart/form-data")
    boundary = options.get(b"boundary")
    if not boundary:
        raise MalformedUploadError("multipart/form-data without a boundary")
    return boundary


async def receive_files(chunks: AsyncIterator[bytes], content_type: str, sink: FileSink) -> None:
    """Feed the request body to the multipart parser; sink callbacks run in a worker thread."""
    parts = _Parts(sink)
    callbacks = {name: getattr(parts, name) for name in dir(parts) if name.startswith("on_")}
    parser = MultipartParser(boundary_of(content_type), callbacks)  # type: ignore[arg-type]
    try:
        async for chunk in chunks:
            if chunk:
                await anyio.to_thread.run_sync(parser.write, chunk)
        await anyio.to_thread.run_sync(parser.finalize)
    except MultipartParseError as exc:
        raise MalformedUploadError(f"malformed multipart body: {exc}") from None
    if parts.in_file:
        raise MalformedUploadError("the upload ended in the middle of a file")
