"""A storage service and a session for conversion tests, and the run helper."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from api.core.memory_cache import MemoryCache
from api.services.archive_scan import ScanLimits
from api.services.conversion_service import ConversionConfig, ConversionOptions, convert_session
from api.services.storage_service import StorageLimits, StorageService

LIMITS = ScanLimits(
    max_depth=5, max_files=20_000, max_total_bytes=2 << 30, max_file_bytes=512 << 20, max_ratio=200
)


class Workspace:
    """One session in a fresh storage service."""

    def __init__(self, root: Path) -> None:
        limits = StorageLimits(1 << 30, 1 << 34, 10, 300)
        self.storage = StorageService(MemoryCache(), root / "runtime", 3600, limits)
        self.session_id = self.storage.create_session(1).id
        self.messages: list[tuple[int, str]] = []

    def area(self, name: str) -> Path:
        return self.storage.path(self.session_id, name)  # type: ignore[arg-type]

    def upload(self, name: str, data: bytes) -> None:
        (self.area("input") / name).write_bytes(data)

    def convert(
        self,
        options: ConversionOptions | None = None,
        *,
        limits: ScanLimits = LIMITS,
        processes: int = 1,
        report: Callable[[int, str], None] | None = None,
        whole_document_bytes: int | None = None,
    ) -> dict[str, Any]:
        config = ConversionConfig(limits, processes, pool_min_bytes=0)
        if whole_document_bytes is not None:  # larger documents are streamed (and split on a pool)
            config = ConversionConfig(limits, processes, 0, whole_document_bytes)
        sink = report or (lambda percent, message: self.messages.append((percent, message)))
        return convert_session(self.storage, self.session_id, options or ConversionOptions(), sink, config)

    def outputs(self) -> dict[str, bytes]:
        return {path.name: path.read_bytes() for path in self.area("output").iterdir() if path.is_file()}
