"""Measuring how much a block of code grows this process's peak resident memory (Linux)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

STATUS = Path("/proc/self/status")


@dataclass
class Growth:
    bytes: int = 0


def _field(name: str) -> int:
    match = re.search(rf"^{name}:\s+(\d+) kB", STATUS.read_text(), re.MULTILINE)
    assert match is not None
    return int(match.group(1)) * 1024


@contextmanager
def peak_rss_growth() -> Iterator[Growth]:
    """Reset the peak (VmHWM) to the current size, run the block, report how far the peak rose."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pytest.skip("resetting the peak resident size needs Linux /proc/self/clear_refs")
    baseline = _field("VmRSS")
    growth = Growth()
    yield growth
    growth.bytes = _field("VmHWM") - baseline
