"""Runs a document's ``bash runnable`` blocks the way a reader would: in order, in one shell.

The blocks of one document become one ``bash -e -o pipefail`` script, so a later block sees the
variables of an earlier one. Before each block the script prints a marker naming the block's line,
which is how a failure is traced to its block and how the output is cut per block.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.docs.markdown import Block
from tests.support.server import server_environment

MARKER = "@@docs-block-at-line"
DOCUMENT_TIMEOUT_SECONDS = 120


@dataclass(frozen=True, slots=True)
class DocumentRun:
    """The outcome of one document: exit status, the line of the last block started, its output."""

    document: str
    returncode: int
    last_block_line: int | None
    output_by_block: dict[int, str]

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def report(self) -> str:
        """What a failure shows: the document, the block's line, and that block's output."""
        line = self.last_block_line
        output = self.output_by_block.get(line, "") if line is not None else ""
        return (
            f"{self.document}: the `bash runnable` block at line {line} failed "
            f"(exit status {self.returncode}); its output:\n{output}"
        )


def docs_environment(root: Path) -> dict[str, str]:
    """A fresh deployment under ``root`` (as the test servers get) with ``ret`` on PATH."""
    env = server_environment(root)
    scratch = root / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["TMPDIR"] = str(scratch)
    return env


def script_of(blocks: Sequence[Block]) -> str:
    """One shell script: each block's text, preceded by its marker."""
    return "".join(f"printf '%s\\n' '{MARKER} {block.line}'\n{block.text}" for block in blocks)


class RunningDocument:
    """A document's script started in its own process group; ``finish`` waits for it and reports."""

    def __init__(
        self, document: str, blocks: Sequence[Block], env: Mapping[str, str], cwd: Path, scratch: Path
    ) -> None:
        self.document = document
        script = scratch / "document.sh"
        script.write_text(script_of(blocks), encoding="utf-8")
        self.log = scratch / "document.log"
        with self.log.open("wb") as output:
            # Output goes to a file, not a pipe: a server a block left running must not keep us waiting.
            self.process = subprocess.Popen(
                ["bash", "-e", "-o", "pipefail", str(script)],
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def finish(self, timeout: float = DOCUMENT_TIMEOUT_SECONDS) -> DocumentRun:
        """Wait for the script, stop anything it left running, and cut its output per block."""
        try:
            returncode = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            returncode = -signal.SIGKILL
        finally:
            _kill_group(self.process.pid)
            self.process.wait()
        return parse_output(self.document, returncode, self.log.read_text(encoding="utf-8", errors="replace"))


def run_document(
    document: str, blocks: Sequence[Block], env: Mapping[str, str], cwd: Path, scratch: Path
) -> DocumentRun:
    """Run ``blocks`` in one shell in ``cwd`` and wait for the outcome."""
    return RunningDocument(document, blocks, env, cwd, scratch).finish()


def _kill_group(group: int) -> None:
    # ProcessLookupError: the shell and everything it started have already exited.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)


def parse_output(document: str, returncode: int, output: str) -> DocumentRun:
    """Cut the combined output at the markers, keyed by the line of the block that printed it."""
    by_block: dict[int, str] = {}
    current: int | None = None
    for line in output.splitlines(keepends=True):
        before, marker, after = line.partition(MARKER + " ")
        if current is not None:
            by_block[current] += before if marker else line
        if marker:
            # A block whose output does not end with a newline leaves the next marker mid-line.
            current = int(after)
            by_block[current] = ""
    return DocumentRun(document, returncode, current, by_block)
