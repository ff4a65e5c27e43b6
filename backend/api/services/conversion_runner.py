"""Running a conversion's parts and fragments: in this process, or on a pool of processes.

A *part* is a contiguous run of the XML files in source order, cut while the scan goes on
(``PartCutter``), or one range of the records of a large document (``api.services.xml_window``),
so that a few large files keep every process busy too. Parts wait in this process until their XML
passes ``pool_min_bytes``; then (with more than one process allowed) a pool starts and converts
them, and every later part, while the scan carries on extracting the next upload. The scan keeps a
core busy, so while it runs no more workers convert at once than there are other cores
(``scan_workers``): a third process on two cores would only take turns with the other two, and
every switch cost CPU time (the scan took 25% more of it, the parts up to 30% more). Each worker
spools its own tables (``convert_part``) and later re-orders its own fragments
(``write_fragment``), so the only serial steps left are the scan itself and copying fragments end
to end. A job that stays small never starts a process.
"""

from __future__ import annotations

import heapq
import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from multiprocessing import forkserver
from pathlib import Path
from types import TracebackType
from typing import Final

from api.services.conversion_parts import PartFile, PartResult, PartTask, convert_part
from api.services.table_merge import ColumnSeeds, Fragment, FragmentTask, write_fragments
from api.services.xml_window import ByteRange, range_share, split

POOL_MIN_BYTES: Final = 16 * 1024 * 1024  # below this, starting processes costs more than it saves
PART_BYTES: Final = 1024 * 1024  # small enough to balance two workers, large enough to be cheap
PART_FILES: Final = 1000
FIRST_PART_BYTES: Final = 512 * 1024
LAST_PART_BYTES: Final = 256 * 1024  # the smallest part cut at the end of the scan
WORKER_MODULES: Final = ["api.services.conversion_parts", "api.services.table_merge"]


class Runner:
    """Converts submitted parts here or on a pool; ``results()`` gives them back in part order.
    Progress: ``file_done()`` after each file converted here, ``part_done(result)`` after each part
    a worker converted."""

    def __init__(
        self,
        processes: int,
        pool_min_bytes: int,
        file_done: Callable[[], None],
        part_done: Callable[[PartResult], None],
        cpus: int | None = None,
    ) -> None:
        self.processes = processes
        self.pool_min_bytes = pool_min_bytes
        self._file_done = file_done
        self._part_done = part_done
        self._waiting: list[PartTask] = []
        self._waiting_bytes = 0
        self._futures: list[Future[PartResult]] = []
        # Parts converting on the pool at most (scan_workers while the scan runs, then all), and the
        # parts held back meanwhile. The pool's result thread starts a held part when one finishes,
        # so these are shared with it, under the lock (re-entrant: a future that is done already
        # runs its callback in the thread that adds it).
        self._limit = scan_workers(processes, usable_cpus() if cpus is None else cpus)
        self._held: deque[PartTask] = deque()
        self._running = 0
        self._lock = threading.RLock()
        # The columns of the parts finished so far, that each part starts with (``_seeded``), and
        # the parts that are ranges of a split document: their rows are dropped if another range
        # of the file fails, so they pass no columns on.
        self._seeds = ColumnSeeds()
        self._ranges: set[int] = set()
        self._pool: ProcessPoolExecutor | None = None
        self.pool_cpu_seconds = 0.0  # CPU time the pool's workers spent converting parts
        if processes > 1:
            # Start the fork server now, beside the scan, so a pool that is needed later starts in
            # milliseconds (the server itself imports the worker modules, ~0.3 s; it lives on and
            # serves every later job of this process).
            _context().set_forkserver_preload(WORKER_MODULES)
            threading.Thread(target=forkserver.ensure_running, name="forkserver-start", daemon=True).start()

    def __enter__(self) -> Runner:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._pool is not None:
            with self._lock:
                self._held.clear()  # nothing more starts, not even from the result thread
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    @property
    def parallel(self) -> bool:
        return self._pool is not None

    def starving(self) -> bool:
        """Whether a worker that may convert now has nothing to convert, not even a part waiting."""
        with self._lock:
            return self._pool is not None and not self._held and self._running < self._limit

    def runs_here(self, more_bytes: int) -> bool:
        """Whether the parts submitted so far plus ``more_bytes`` would be converted in this process."""
        return self._pool is None and (
            self.processes == 1 or self._waiting_bytes + more_bytes < self.pool_min_bytes
        )

    def submit(self, task: PartTask) -> None:
        if self._pool is not None:
            self._submit_to_pool(task)
            return
        self._waiting.append(task)
        self._waiting_bytes += sum(part_file.size for part_file in task.files)
        if self.processes > 1 and self._waiting_bytes >= self.pool_min_bytes:
            self._pool = _start_pool(self.processes)
            for waiting in self._waiting:
                self._submit_to_pool(waiting)
            self._waiting = []

    def _submit_to_pool(self, task: PartTask) -> None:
        with self._lock:
            if self._running < self._limit:
                self._start(task)
            else:
                self._held.append(task)

    def _start(self, task: PartTask) -> None:
        # Under the lock: results() must not miss a future that the result thread is adding.
        assert self._pool is not None
        future = self._pool.submit(convert_part, self._seeded(task))  # raises if the pool broke
        self._running += 1
        self._futures.append(future)
        future.add_done_callback(self._part_finished)

    def _seeded(self, task: PartTask) -> PartTask:
        """``task`` seeded with the columns of the parts before it that have finished (under the
        lock). When that is every part before it (as while the scan runs, one part at a time),
        its rows need no re-ordering at the merge unless it brings new columns."""
        if task.byte_range is not None:
            self._ranges.add(task.part)
        seed = self._seeds.seed()
        return replace(task, seed=seed) if seed else task

    def _finished(self, result: PartResult) -> None:
        with self._lock:
            self._seeds.finished(result.part, None if result.part in self._ranges else result.tables)

    def _part_finished(self, future: Future[PartResult]) -> None:
        # Runs in the pool's result thread (or here, when the future was done already).
        with self._lock:
            self._running -= 1
            # A part that failed fails the job: starting more would only waste the wait for it.
            failed = future.cancelled() or future.exception() is not None
            if not failed:
                self._finished(future.result())
            if self._held and self._running < self._limit and not failed:
                try:
                    self._start(self._held[0])
                except (BrokenProcessPool, RuntimeError):
                    # The pool broke (or is closing): the part stays held, and results() raises
                    # the error when it starts the held parts, in the job's thread, not here.
                    return
                self._held.popleft()

    def _release(self) -> None:
        """The scan is over: every worker may convert, and every held part starts."""
        with self._lock:
            self._limit = self.processes
            while self._held:
                self._start(self._held.popleft())

    def results(self) -> list[PartResult]:
        """Every part's result (waiting for the pool, or converting here), in part order. Called
        once the scan is over."""
        if self._pool is not None:
            self._release()
        results = []
        for task in self._waiting:
            with self._lock:
                task = self._seeded(task)
            results.append(convert_part(task, self._file_done))  # reports each file
            self._finished(results[-1])
        pending = set(self._futures)
        while pending:
            finished, pending = wait(pending, return_when="FIRST_COMPLETED")
            for future in finished:
                results.append(future.result())
                self.pool_cpu_seconds += results[-1].cpu_seconds
                self._part_done(results[-1])
        return sorted(results, key=lambda result: result.part)

    def fragments(self, tasks: Sequence[FragmentTask]) -> list[Fragment]:
        """Write every fragment (here, or on the pool in one call per process), in task order."""
        if self._pool is None:
            return write_fragments(tasks)
        # One call per process, each with an even share of the spooled bytes: one call per fragment
        # (a job has parts × tables of them) cost a round trip through the pool's queues each, and
        # the fragments of a 3,000-file job took longer on two processes than here.
        batches = balanced([task.spooled.size for task in tasks], self.processes)
        written = self._pool.map(write_fragments, [[tasks[index] for index in batch] for batch in batches])
        by_index: dict[int, Fragment] = {}
        for batch, batch_fragments in zip(batches, written, strict=True):
            by_index.update(zip(batch, batch_fragments, strict=True))
        return [by_index[index] for index in range(len(tasks))]


class PartCutter:
    """Cuts the XML files, fed in source order, into parts and submits them to a runner.

    While the scan goes on, parts of ``PART_BYTES`` are submitted as soon as they are full (the
    first one smaller, so that the second worker starts early), and a worker that has run dry gets
    what has been extracted so far (from ``LAST_PART_BYTES`` on). When the scan ends (``flush``),
    the rest is cut into parts that shrink towards the end (what is left divided by twice the
    number of processes, down to ``LAST_PART_BYTES``), so that the workers finish together. Work
    that runs in this process (one process, or a job too small for the pool) stays one part. Large
    documents are held until they can go whole, one to each process, or must be split
    (``_submit_large``: when a part of other files is due, an archive starts, or the scan ends);
    nothing after them is submitted before them.
    """

    def __init__(
        self, runner: Runner, record_path: tuple[str, ...] | None, spools: Path, whole_bytes: int
    ) -> None:
        self.runner = runner
        self.record_path = record_path
        self.spools = spools
        self.whole_bytes = whole_bytes
        self.parts: list[list[PartFile]] = []
        self.files = 0
        self._pending: deque[PartFile] = deque()  # not yet in a part, in source order
        self._pending_bytes = 0
        self._large: list[PartFile] = []  # large documents held, in order, before every pending file
        # Documents parsed incrementally are split between the processes when they alone are
        # enough to start the pool (splitting costs extra parsing, paid back only in parallel).
        self._split_bytes = max(whole_bytes, runner.pool_min_bytes) if runner.processes > 1 else float("inf")

    def add(self, part_file: PartFile) -> None:
        self.files += 1
        if part_file.size > self._split_bytes:
            # A large document: held (after every file before it: parts are numbered in source
            # order) until as many follow it as there are processes, or anything else does.
            self._submit_pending(self._part_bytes)
            self._large.append(part_file)
            if len(self._large) == self.runner.processes:
                self._submit_large()
            return
        self._pending.append(part_file)
        self._pending_bytes += part_file.size
        if self.runner.processes == 1:
            return  # one process: one part, cut by flush (there is no pool to keep busy)
        while self._pending_bytes >= self._part_bytes() or len(self._pending) >= PART_FILES:
            self._submit_files(self._take(self._part_bytes()))
        if self._pending_bytes >= LAST_PART_BYTES and self.runner.starving():
            self._submit_files(self._take(self._pending_bytes))  # a smaller part beats an idle worker

    def archive_starts(self) -> None:
        """The scan is about to extract an archive, which may take a while: a large document held
        waiting for partners goes now (split), rather than leave its worker idle meanwhile."""
        self._submit_large()

    def flush(self) -> None:
        """The scan is over: submit everything that waits."""
        self._submit_large()
        if self.runner.runs_here(self._pending_bytes):
            # No pool to balance: the rest is one part, however many files (fewer spools to merge).
            self._submit_pending(lambda: float("inf"), max_files=None)
        else:
            self._submit_pending(self._tail_part_bytes)

    def _part_bytes(self) -> float:
        # The first part is half the size, so the second worker has work sooner; then PART_BYTES
        # (the doubling from FIRST_PART_BYTES stops there).
        return min(PART_BYTES, FIRST_PART_BYTES << len(self.parts))

    def _tail_part_bytes(self) -> float:
        share = self._pending_bytes // (2 * self.runner.processes)
        return max(LAST_PART_BYTES, min(self._part_bytes(), share))

    def _submit_pending(self, part_bytes: Callable[[], float], max_files: int | None = PART_FILES) -> None:
        while self._pending:
            self._submit_files(self._take(part_bytes(), max_files))

    def _submit_files(self, files: list[PartFile]) -> None:
        """Submit a part of small files, after the large documents held before them."""
        self._submit_large()
        self._submit(files)

    def _submit_large(self) -> None:
        """Submit the large documents held: one whole to each process when there is one for each
        and that beats splitting them (none much larger than the rest), otherwise each split into
        one range of its records per process. A range re-parses what comes before it, so a
        document split in two costs 1.2 times its conversion: three files on two processes
        convert as two whole ones and one split, not as three split."""
        held, self._large = self._large, []
        processes = self.runner.processes
        sizes = [part_file.size for part_file in held]
        whole = len(held) == processes and max(sizes) <= range_share(processes) * sum(sizes)
        for part_file in held:
            if whole:
                self._submit([part_file])
            else:
                for byte_range in split(part_file.size, processes):
                    self._submit([part_file], byte_range)

    def _take(self, part_bytes: float, max_files: int | None = PART_FILES) -> list[PartFile]:
        """The next waiting files, up to the first that brings them to ``part_bytes`` (and at most
        ``max_files``, None for no limit)."""
        files: list[PartFile] = []
        size = 0
        limit = len(self._pending) if max_files is None else max_files
        while self._pending and size < part_bytes and len(files) < limit:
            part_file = self._pending.popleft()
            files.append(part_file)
            size += part_file.size
        self._pending_bytes -= size
        return files

    def _submit(self, files: list[PartFile], byte_range: ByteRange | None = None) -> None:
        number = len(self.parts)
        self.parts.append(files)
        self.runner.submit(
            PartTask(number, files, self.record_path, self.spools, self.whole_bytes, byte_range)
        )


def balanced(sizes: Sequence[int], count: int) -> list[list[int]]:
    """The indices of ``sizes`` in at most ``count`` non-empty batches of near-equal total size,
    each in ascending order (largest first, each to the lightest batch so far)."""
    heap = [(0, batch) for batch in range(count)]
    batches: list[list[int]] = [[] for _ in range(count)]
    for index in sorted(range(len(sizes)), key=lambda index: -sizes[index]):
        total, batch = heapq.heappop(heap)
        batches[batch].append(index)
        heapq.heappush(heap, (total + sizes[index], batch))
    return [sorted(batch) for batch in batches if batch]


def scan_workers(processes: int, cpus: int) -> int:
    """How many of ``processes`` workers convert at once while the scan runs: one core is the
    scan's, so no more than the other cores (and at least one)."""
    return max(1, min(processes, cpus - 1))


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, which a container may narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not every platform has affinity masks
        return os.cpu_count() or 1


def _start_pool(processes: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(processes, mp_context=_context())


def _context() -> multiprocessing.context.ForkServerContext:
    # forkserver: children fork from a clean server process, never from this one (which may run
    # threads), and the worker modules are imported once there, not once per child.
    return multiprocessing.get_context("forkserver")
