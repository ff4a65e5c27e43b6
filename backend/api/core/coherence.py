"""Cross-process invalidation of in-process caches through a shared-memory generation table.

Why not ``PRAGMA data_version``: it costs about as much as the point read an L1 hit is meant to
avoid. Instead every process maps the same small file of 64-bit slots. A key hashes (stably, with
CRC-32) to one slot; slot 0 is a global epoch for whole-store changes. The protocol:

- a writer stores a fresh random value in the key's slot *after* its commit (random, not a counter
  two writers could bump to the same value);
- a reader records the slot (and epoch) *before* reading SQLite and trusts its cached copy only while
  both still hold the recorded values.

So a write that returned is seen by the next read in every process. A crash between a commit and
its slot update can leave another process's cached copy stale until it expires or is evicted; writes
made outside the cache (a ``sqlite3`` shell, a restored backup) are not seen until ``clear_local()``
or a restart.
"""

from __future__ import annotations

import mmap
import os
import random
import zlib
from pathlib import Path

DEFAULT_SLOTS = 1 << 16
SLOT_BYTES = 8
EPOCH_SLOT = 0


class GenerationTable:
    """A file-backed array of 64-bit generation slots shared by every process that maps it."""

    def __init__(self, path: Path, slots: int = DEFAULT_SLOTS) -> None:
        if slots < 2:
            raise ValueError("a generation table needs at least 2 slots")
        self.path = path
        self.size = slots
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < slots * SLOT_BYTES:
                os.ftruncate(fd, slots * SLOT_BYTES)
            self._map = mmap.mmap(fd, slots * SLOT_BYTES, mmap.MAP_SHARED)
        finally:
            os.close(fd)
        # An aligned 8-byte store through a 'Q' memoryview is a single machine write: readers see
        # the old or the new generation, never a torn mix.
        self._slots = memoryview(self._map).cast("Q")

    def slot_of(self, key: str) -> int:
        """The slot of ``key``: stable across processes (never Python's salted ``hash``)."""
        return 1 + zlib.crc32(key.encode("utf-8", "surrogatepass")) % (self.size - 1)

    def read(self, slot: int) -> int:
        return self._slots[slot]

    def epoch(self) -> int:
        return self._slots[EPOCH_SLOT]

    def bump(self, slot: int) -> None:
        """Mark every cached copy of the keys in ``slot`` stale, in every process."""
        self._slots[slot] = random.getrandbits(64)

    def bump_epoch(self) -> None:
        """Mark every cached copy of every key stale, in every process."""
        self._slots[EPOCH_SLOT] = random.getrandbits(64)

    def close(self) -> None:
        self._slots.release()
        self._map.close()
