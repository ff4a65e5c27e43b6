"""Cutting files into parts as the scan feeds them, and running parts here or on a pool."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path

import pytest

from api.services.conversion_parts import PartFile, PartResult, PartTask
from api.services.conversion_runner import PART_BYTES, PartCutter, Runner, balanced, scan_workers
from api.services.table_merge import FragmentTask, plan_tables
from api.services.table_spool import SpooledTable
from api.services.xml_window import ByteRange


def _files(tmp_path: Path, count: int) -> list[PartFile]:
    files = []
    for n in range(count):
        path = tmp_path / f"{n}.xml"
        path.write_bytes(f"<r><book><t>{n}</t></book></r>".encode())
        files.append(PartFile(n, path.name, path, path.stat().st_size, None))
    return files


@pytest.fixture
def spools(tmp_path: Path) -> Path:
    (tmp_path / "spools").mkdir()
    return tmp_path / "spools"


class Recorder:
    def __init__(self) -> None:
        self.files = 0
        self.parts: list[int] = []

    def file_done(self) -> None:
        self.files += 1

    def part_done(self, result: PartResult) -> None:
        self.parts.append(result.part)


def test_one_process_makes_one_part(tmp_path: Path, spools: Path) -> None:
    runner = Runner(1, 0, lambda: None, lambda result: None)
    cutter = PartCutter(runner, None, spools, 1 << 20)
    for part_file in _files(tmp_path, 5):
        cutter.add(part_file)
    cutter.flush()
    assert [len(part) for part in cutter.parts] == [5]


def test_one_process_makes_one_part_however_large_the_job(tmp_path: Path, spools: Path) -> None:
    runner = Runner(1, 0, lambda: None, lambda result: None)
    cutter = PartCutter(runner, None, spools, 64 << 20)
    for n in range(200):
        cutter.add(PartFile(n, f"{n}.xml", Path(f"{n}.xml"), 256 * 1024, None))
    cutter.flush()
    assert [len(part) for part in cutter.parts] == [200]


def test_several_processes_get_contiguous_parts_in_order(tmp_path: Path, spools: Path) -> None:
    runner = Runner(2, 1 << 40, lambda: None, lambda result: None)  # never starts a pool
    cutter = PartCutter(runner, None, spools, 1 << 20)
    files = [PartFile(n, f"{n}.xml", Path(f"{n}.xml"), PART_BYTES // 3 + 1, None) for n in range(16)]
    for part_file in files:
        cutter.add(part_file)
    cutter.flush()
    # 512 KiB, then 1 MiB parts (each passes its size with its last file), then the rest.
    assert [len(part) for part in cutter.parts] == [2, 3, 3, 3, 3, 2]
    assert [part_file for part in cutter.parts for part_file in part] == files


def test_the_first_parts_are_small_so_every_worker_starts_early(tmp_path: Path, spools: Path) -> None:
    runner = Runner(2, 1 << 40, lambda: None, lambda result: None)  # never starts a pool
    cutter = PartCutter(runner, None, spools, 1 << 20)
    kib = 1024
    for n in range(60):
        cutter.add(PartFile(n, f"{n}.xml", Path(f"{n}.xml"), 128 * kib, None))
    cutter.flush()
    sizes = [sum(part_file.size for part_file in part) // kib for part in cutter.parts]
    assert sizes == [512, *[1024] * 7]  # KiB: doubling up to PART_BYTES


class RecordingRunner(Runner):
    """Keeps what is submitted instead of converting it."""

    def __init__(self, processes: int, pool_min_bytes: int) -> None:
        super().__init__(processes, pool_min_bytes, lambda: None, lambda result: None)
        self.tasks: list[PartTask] = []

    def submit(self, task: PartTask) -> None:
        self.tasks.append(task)


def test_a_large_document_becomes_one_range_part_per_process(tmp_path: Path, spools: Path) -> None:
    runner = RecordingRunner(3, 4 << 20)
    cutter = PartCutter(runner, None, spools, 1 << 20)
    small, large = (
        PartFile(n, f"{n}.xml", Path(f"{n}.xml"), size, None) for n, size in enumerate((10, 5 << 20))
    )
    cutter.add(small)
    cutter.add(large)
    cutter.flush()
    assert cutter.parts == [[small], [large], [large], [large]]
    assert [task.part for task in runner.tasks] == [0, 1, 2, 3]
    ranges = [task.byte_range for task in runner.tasks]
    assert ranges[0] is None
    assert [(r.index, r.count) for r in ranges[1:] if r is not None] == [(0, 3), (1, 3), (2, 3)]


def _large(number: int, mib: int) -> PartFile:
    return PartFile(number, f"{number}.xml", Path(f"{number}.xml"), mib << 20, None)


def _layout(runner: RecordingRunner) -> list[tuple[int, int | None]]:
    """(file number, range index or None for the whole file) of each part, as submitted."""
    return [
        (task.files[0].number, None if task.byte_range is None else task.byte_range.index)
        for task in runner.tasks
    ]


def test_as_many_comparable_large_documents_as_processes_go_whole(tmp_path: Path, spools: Path) -> None:
    runner = RecordingRunner(2, 4 << 20)
    cutter = PartCutter(runner, None, spools, 1 << 20)
    for number, mib in enumerate((6, 5, 6)):
        cutter.add(_large(number, mib))
    assert _layout(runner) == [(0, None), (1, None)]  # one for each process, as soon as both are here
    cutter.flush()
    assert _layout(runner) == [(0, None), (1, None), (2, 0), (2, 1)]  # the last one has no partner
    assert [task.part for task in runner.tasks] == [0, 1, 2, 3]


def test_large_documents_of_unequal_size_are_split(tmp_path: Path, spools: Path) -> None:
    runner = RecordingRunner(2, 4 << 20)
    cutter = PartCutter(runner, None, spools, 1 << 20)
    cutter.add(_large(0, 20))  # alone, it would keep one process busy long after the other
    cutter.add(_large(1, 5))
    assert _layout(runner) == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_a_held_document_goes_when_an_archive_starts(tmp_path: Path, spools: Path) -> None:
    runner = RecordingRunner(2, 4 << 20)
    cutter = PartCutter(runner, None, spools, 1 << 20)
    cutter.add(_large(0, 6))
    assert runner.tasks == []  # waiting for a partner
    cutter.archive_starts()  # extracting may take long: its worker should not wait for that
    assert _layout(runner) == [(0, 0), (0, 1)]
    cutter.add(_large(1, 6))  # it has no partner left to wait for either
    cutter.flush()
    assert _layout(runner) == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_files_after_a_held_document_come_after_it(tmp_path: Path, spools: Path) -> None:
    runner = PoolRunner(2)
    cutter = PartCutter(runner, None, spools, 1 << 20)
    small = [PartFile(n, f"{n}.xml", Path(f"{n}.xml"), 64 * 1024, None) for n in range(1, 13)]
    cutter.add(_large(0, 5))
    for part_file in small[:7]:
        cutter.add(part_file)
    assert runner.tasks == []  # 448 KiB of small files wait behind the held document
    cutter.add(small[7])  # 512 KiB: a part is due, so the document goes first, split
    assert _layout(runner) == [(0, 0), (0, 1), (1, None)]
    assert runner.tasks[2].files == small[:8]
    for part_file in small[8:]:
        cutter.add(part_file)
    cutter.flush()
    assert [part_file for task in runner.tasks[3:] for part_file in task.files] == small[8:]
    assert [task.part for task in runner.tasks] == list(range(len(runner.tasks)))


def test_one_process_never_splits_a_document(tmp_path: Path, spools: Path) -> None:
    runner = RecordingRunner(1, 0)
    cutter = PartCutter(runner, None, spools, 1 << 20)
    cutter.add(PartFile(0, "0.xml", Path("0.xml"), 50 << 20, None))
    cutter.flush()
    assert len(cutter.parts) == 1


def test_a_document_is_split_only_when_it_alone_would_start_the_pool(tmp_path: Path, spools: Path) -> None:
    runner = RecordingRunner(2, 64 << 20)
    cutter = PartCutter(runner, None, spools, 1 << 20)
    cutter.add(PartFile(0, "0.xml", Path("0.xml"), 32 << 20, None))  # streamed, but below pool_min_bytes
    cutter.flush()
    assert len(cutter.parts) == 1


def test_a_small_job_runs_here_and_reports_each_file(tmp_path: Path, spools: Path) -> None:
    recorder = Recorder()
    with Runner(2, 1 << 40, recorder.file_done, recorder.part_done) as runner:
        for n, part_file in enumerate(_files(tmp_path, 3)):
            runner.submit(PartTask(n, [part_file], None, spools))
        results = runner.results()
        assert not runner.parallel
    assert [result.part for result in results] == [0, 1, 2]
    assert (recorder.files, recorder.parts) == (3, [])


def test_a_large_job_runs_on_the_pool_and_reports_each_part(tmp_path: Path, spools: Path) -> None:
    recorder = Recorder()
    with Runner(2, 0, recorder.file_done, recorder.part_done) as runner:
        for n, part_file in enumerate(_files(tmp_path, 4)):
            runner.submit(PartTask(n, [part_file], None, spools))
        results = runner.results()
        assert runner.parallel
    assert [result.part for result in results] == [0, 1, 2, 3]
    assert (recorder.files, sorted(recorder.parts)) == (0, [0, 1, 2, 3])
    assert [result.tables[0].path.read_bytes() for result in results] == [
        f"{n}\t1\t{n}\n".encode() for n in range(4)
    ]


def test_fragments_written_on_the_pool_come_back_in_task_order(tmp_path: Path, spools: Path) -> None:
    with Runner(2, 0, lambda: None, lambda result: None) as runner:
        for n, part_file in enumerate(_files(tmp_path, 5)):
            runner.submit(PartTask(n, [part_file], None, spools))
        results = runner.results()
        (plan,) = plan_tables(result.tables for result in results)
        tasks = [
            FragmentTask(spooled, "book", plan.columns, {n: f"{n}.xml"}, False, tmp_path / f"f{n}.csv")
            for n, spooled in enumerate(plan.parts)
        ]
        fragments = runner.fragments(tasks)
        assert runner.parallel
    assert [fragment.path for fragment in fragments] == [task.destination for task in tasks]
    assert [fragment.path.read_bytes() for fragment in fragments] == [
        f"{n}.xml,1,book,{n}\r\n".encode() for n in range(5)
    ]


def test_balanced_batches_share_the_bytes_evenly_and_keep_their_order() -> None:
    assert balanced([5, 1, 1, 1, 1, 1], 2) == [[0], [1, 2, 3, 4, 5]]
    assert balanced([3, 3, 2, 2, 2], 2) == [[0, 2, 4], [1, 3]]
    assert balanced([7], 4) == [[0]]  # never an empty batch
    assert balanced([], 2) == []
    batches = balanced(list(range(100)), 3)
    assert sorted(index for batch in batches for index in batch) == list(range(100))
    totals = [sum(batch) for batch in batches]
    assert max(totals) - min(totals) <= 99  # largest first, each to the lightest: within one item


class PoolRunner(RecordingRunner):
    """Records parts as a runner whose pool has started; ``idle`` says whether a worker has run dry."""

    def __init__(self, processes: int, idle: bool = False) -> None:
        super().__init__(processes, 0)
        self.idle = idle

    def starving(self) -> bool:
        return self.idle

    def runs_here(self, more_bytes: int) -> bool:
        return False


def _sizes_kib(cutter: PartCutter) -> list[int]:
    return [sum(part_file.size for part_file in part) // 1024 for part in cutter.parts]


def test_the_end_of_the_scan_is_cut_into_shrinking_parts(tmp_path: Path, spools: Path) -> None:
    runner = PoolRunner(2)
    cutter = PartCutter(runner, None, spools, 1 << 20)
    files = [PartFile(n, f"{n}.xml", Path(f"{n}.xml"), 64 * 1024, None) for n in range(38)]  # 2,432 KiB
    for part_file in files:
        cutter.add(part_file)
    assert _sizes_kib(cutter) == [512, 1024]  # full parts go as soon as they are full
    cutter.flush()
    # 896 KiB left: a quarter (224 KiB) is below the smallest part, so 256 KiB parts, then the rest.
    assert _sizes_kib(cutter) == [512, 1024, 256, 256, 256, 128]
    assert [part_file for part in cutter.parts for part_file in part] == files  # in order, once
    assert [task.part for task in runner.tasks] == list(range(6))


def test_a_large_rest_shrinks_from_a_full_part_down(tmp_path: Path, spools: Path) -> None:
    runner = PoolRunner(2)
    cutter = PartCutter(runner, None, spools, 1 << 20)
    files = [PartFile(n, f"{n}.xml", Path(f"{n}.xml"), 64 * 1024, None) for n in range(2000)]
    cutter._pending.extend(files)  # as if the scan handed over 125 MiB at its very end
    cutter._pending_bytes = sum(part_file.size for part_file in files)
    cutter.flush()
    sizes = _sizes_kib(cutter)
    assert sizes[0] == 512  # the first part of a job is always small
    assert sizes[1:] == sorted(sizes[1:], reverse=True)
    assert max(sizes) <= PART_BYTES // 1024
    assert min(sizes[:-1]) >= 256
    assert [part_file for part in cutter.parts for part_file in part] == files


def test_a_worker_that_runs_dry_gets_what_has_been_extracted(tmp_path: Path, spools: Path) -> None:
    runner = PoolRunner(2, idle=True)
    cutter = PartCutter(runner, None, spools, 1 << 20)
    for n in range(6):
        cutter.add(PartFile(n, f"{n}.xml", Path(f"{n}.xml"), 100 * 1024, None))
    assert _sizes_kib(cutter) == [300, 300]  # from 256 KiB on, not 512 KiB and 1 MiB


def test_a_job_that_stays_here_keeps_its_last_files_in_one_part(tmp_path: Path, spools: Path) -> None:
    runner = Runner(2, 1 << 40, lambda: None, lambda result: None)  # never starts a pool
    cutter = PartCutter(runner, None, spools, 1 << 20)
    for n in range(15):
        cutter.add(PartFile(n, f"{n}.xml", Path(f"{n}.xml"), 100 * 1024, None))
    cutter.flush()
    assert [len(part) for part in cutter.parts] == [6, 9]  # 600 KiB passed 512 KiB; the rest stays


def test_one_process_keeps_thousands_of_files_in_one_part(tmp_path: Path, spools: Path) -> None:
    runner = Runner(1, 0, lambda: None, lambda result: None)
    cutter = PartCutter(runner, None, spools, 1 << 20)
    for n in range(2500):
        cutter.add(PartFile(n, f"{n}.xml", Path(f"{n}.xml"), 100, None))
    cutter.flush()
    assert [len(part) for part in cutter.parts] == [2500]


class FakePool:
    """Records the parts submitted; the test finishes their futures. ``submitted`` is set once
    ``expected`` parts have been submitted."""

    def __init__(self, expected: int = 0) -> None:
        self.futures: list[Future[PartResult]] = []
        self.parts: list[int] = []
        self.tasks: list[PartTask] = []
        self.expected = expected
        self.submitted = threading.Event()
        self.broken = False

    def submit(self, function: object, task: PartTask) -> Future[PartResult]:
        if self.broken:
            raise BrokenProcessPool("a worker died")
        self.futures.append(Future())
        self.parts.append(task.part)
        self.tasks.append(task)
        if len(self.parts) == self.expected:
            self.submitted.set()
        return self.futures[-1]


@contextmanager
def _on_fake_pool(cpus: int = 2, expected: int = 0) -> Iterator[tuple[Runner, FakePool]]:
    """A runner of two processes whose pool is a ``FakePool`` (taken away again at the end)."""
    runner = Runner(2, 0, lambda: None, lambda result: None, cpus=cpus)
    pool = FakePool(expected)
    runner._pool = pool  # type: ignore[assignment]
    try:
        yield runner, pool
    finally:
        runner._pool = None


def test_a_worker_is_starving_while_fewer_parts_than_processes_are_unfinished(spools: Path) -> None:
    with _on_fake_pool(cpus=4) as (runner, pool):  # the scan has a core of its own
        assert runner.starving()
        runner.submit(PartTask(0, [], None, spools))
        assert runner.starving()
        runner.submit(PartTask(1, [], None, spools))
        assert not runner.starving()  # both workers have a part
        pool.futures[0].set_result(PartResult(0))
        assert runner.starving()


def test_while_the_scan_runs_the_workers_use_only_the_cores_it_leaves(spools: Path) -> None:
    with _on_fake_pool(expected=4) as (runner, pool):
        for part in range(4):
            runner.submit(PartTask(part, [], None, spools))
        assert pool.parts == [0]  # one core scans, one converts: the other parts wait here
        assert not runner.starving()  # the worker that may convert has a part
        pool.futures[0].set_result(PartResult(0))
        assert pool.parts == [0, 1]  # as a part finishes, the next one starts
        with ThreadPoolExecutor(1) as thread:
            waiting = thread.submit(runner.results)  # the scan is over: every held part starts
            assert pool.submitted.wait(timeout=10)
            assert pool.parts == [0, 1, 2, 3]
            for part in (3, 1, 2):
                pool.futures[part].set_result(PartResult(part))
            assert [result.part for result in waiting.result(timeout=10)] == [0, 1, 2, 3]


def test_a_failed_part_starts_no_held_part(spools: Path) -> None:
    with _on_fake_pool() as (runner, pool):
        for part in range(3):
            runner.submit(PartTask(part, [], None, spools))
        pool.futures[0].set_exception(OSError("disk full"))
        assert pool.parts == [0]  # the job fails at results(): nothing more is worth converting
        with pytest.raises(OSError, match="disk full"):
            runner.results()


def test_a_pool_that_broke_is_reported_by_results_not_by_the_result_thread(
    spools: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with _on_fake_pool() as (runner, pool):
        for part in range(2):
            runner.submit(PartTask(part, [], None, spools))
        pool.broken = True  # another worker died meanwhile
        pool.futures[0].set_result(PartResult(0))  # the result thread would start part 1 now
        assert not [record for record in caplog.records if record.name == "concurrent.futures"]
        with pytest.raises(BrokenProcessPool, match="a worker died"):
            runner.results()  # part 1 is still held, and starting it tells the job


@pytest.mark.parametrize(
    ("processes", "cpus", "workers"), [(2, 2, 1), (2, 4, 2), (4, 4, 3), (8, 4, 3), (1, 1, 1), (3, 1, 1)]
)
def test_the_scan_keeps_a_core_when_the_workers_would_fill_them_all(
    processes: int, cpus: int, workers: int
) -> None:
    assert scan_workers(processes, cpus) == workers


def _table(part: int, columns: list[str]) -> SpooledTable:
    return SpooledTable("book", Path(f"{part}.tsv"), part, 1, columns, [])


def test_each_part_starts_with_the_columns_of_the_parts_finished_before_it(spools: Path) -> None:
    with _on_fake_pool() as (runner, pool):
        for part in range(3):
            runner.submit(PartTask(part, [], None, spools))
        pool.futures[0].set_result(PartResult(0, tables=[_table(0, ["b", "a"])]))
        pool.futures[1].set_result(PartResult(1, tables=[_table(1, ["c", "a"])]))
        assert [task.seed for task in pool.tasks] == [
            {},
            {"book": (["b", "a"], [])},
            {"book": (["b", "a", "c"], [])},
        ]
        pool.futures[2].set_result(PartResult(2))
        runner.results()


def test_ranges_of_a_split_document_pass_no_columns_on(spools: Path) -> None:
    with _on_fake_pool() as (runner, pool):
        runner.submit(PartTask(0, [], None, spools, byte_range=ByteRange(0, 2, 0, 100)))
        runner.submit(PartTask(1, [], None, spools))
        pool.futures[0].set_result(PartResult(0, tables=[_table(0, ["a"])]))
        assert pool.tasks[1].seed == {}  # the range's rows may yet be dropped
        pool.futures[1].set_result(PartResult(1))
        runner.results()


def test_parts_converted_here_are_seeded_too(tmp_path: Path, spools: Path) -> None:
    files = []
    for n, body in enumerate(["<b>1</b><a>2</a>", "<a>3</a><c>4</c>", "<c>5</c><b>6</b>"]):
        path = tmp_path / f"{n}.xml"
        path.write_bytes(f"<r><book>{body}</book></r>".encode())
        files.append(PartFile(n, path.name, path, path.stat().st_size, None))
    with Runner(2, 1 << 40, lambda: None, lambda result: None) as runner:
        for n, part_file in enumerate(files):
            runner.submit(PartTask(n, [part_file], None, spools))
        results = runner.results()
    assert [result.tables[0].columns for result in results] == [["b", "a"], ["b", "a", "c"], ["b", "a", "c"]]
    (plan,) = plan_tables(result.tables for result in results)
    assert all(
        result.tables[0].columns == plan.columns[: len(result.tables[0].columns)] for result in results
    )
