"""Liveness and readiness: each store the app depends on is checked by a named probe."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from api.errors import AppError

logger = logging.getLogger(__name__)

ReadinessProbe = Callable[[], None]
"""A probe returns when its part is usable and raises (any exception) naming the problem otherwise."""


class NotReadyError(AppError):
    status_code = 503
    code = "not_ready"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    name: str
    ok: bool
    detail: str


def run_probes(probes: Mapping[str, ReadinessProbe]) -> list[ProbeResult]:
    """Run every probe (a failing one never stops the others) and report each outcome."""
    results = []
    for name, probe in probes.items():
        try:
            probe()
        except Exception as exc:
            logger.warning("readiness probe %s failed: %s", name, exc)
            results.append(ProbeResult(name, False, f"{type(exc).__name__}: {exc}"))
        else:
            results.append(ProbeResult(name, True, "ok"))
    return results


def check_readiness(probes: Mapping[str, ReadinessProbe]) -> dict[str, str]:
    """The outcome of every probe by name.

    Raises:
        NotReadyError: at least one probe failed; the message names each failing part.
    """
    results = run_probes(probes)
    checks = {result.name: result.detail for result in results}
    failing = [result for result in results if not result.ok]
    if failing:
        named = "; ".join(f"{result.name}: {result.detail}" for result in failing)
        raise NotReadyError(f"not ready: {named}", extra={"checks": checks})
    return checks


def check_directory_writable(path: Path) -> None:
    """Create, write, fsync and remove a scratch file in ``path``; raise ``OSError`` if any step fails."""
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is not a directory")
    probe = path / f".ready-{uuid.uuid4().hex}"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, b"ok")
        os.fsync(fd)
    finally:
        os.close(fd)
        probe.unlink(missing_ok=True)
