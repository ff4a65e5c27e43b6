"""The routes ``bench_conversion.py`` times, each converting the same upload set.

- ``floor``: a bare ``lxml.etree.iterparse`` pass over every XML document (no output): the parse
  speed nothing built on lxml can beat.
- ``diy``: the common do-it-yourself route: ``xmltodict.parse`` each document, gather the children of
  ``body`` per record type (with ``head`` beside them), ``pandas.json_normalize`` them, ``to_csv``.
  Everything is held in memory until the end, as such scripts do; repeated elements stay lists.
- ``ours``: ``convert_session`` on a workspace session holding the upload set (set up before the
  clock, as uploads exist before a job starts), end to end: it extracts the ZIPs to disk (the peers
  read them in memory), flattens and writes one CSV per type.

The peers read ZIP members (nested ones too) straight from memory, so every route sees the same XML.
"""

from __future__ import annotations

import importlib
import io
import os
import time
import zipfile
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def documents(upload_dir: Path) -> Iterator[tuple[str, bytes]]:
    """Every XML document of the upload set as (source path, bytes), ZIPs opened recursively."""
    for path in sorted(upload_dir.iterdir()):
        if path.suffix == ".xml":
            yield path.name, path.read_bytes()
        elif path.suffix == ".zip":
            yield from _members(path.name, path.read_bytes())


def _members(chain: str, data: bytes) -> Iterator[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            name = f"{chain}!/{info.filename}"
            if info.filename.endswith(".xml"):
                yield name, archive.read(info)
            elif info.filename.endswith(".zip"):
                yield from _members(name, archive.read(info))


def floor(upload_dir: Path, out_dir: Path) -> None:
    from lxml import etree

    for _, data in documents(upload_dir):
        for _event, _element in etree.iterparse(io.BytesIO(data)):
            pass


def diy(upload_dir: Path, out_dir: Path) -> None:
    import pandas as pd
    import xmltodict

    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for source, data in documents(upload_dir):
        document = xmltodict.parse(data)
        root = next(iter(document.values()))
        head, body = root.get("head") or {}, root.get("body") or {}
        for record_type, records in body.items():
            for record in records if isinstance(records, list) else [records]:
                fields = record if isinstance(record, dict) else {"#text": record}
                by_type[record_type].append({"source_file": source, "head": head, **fields})
    for record_type, rows in by_type.items():
        pd.json_normalize(rows).to_csv(out_dir / f"{record_type}.csv", index=False)


def workspace(upload_dir: Path, out_dir: Path) -> tuple[Any, str]:
    """A storage service and a session whose ``input/`` holds the upload set (hard links): where a
    conversion job starts. Not timed: uploading is not converting (linking 762 files takes ~50 ms)."""
    from api.core.memory_cache import MemoryCache
    from api.services.storage_service import StorageLimits, StorageService

    storage = StorageService(
        MemoryCache(), out_dir / "runtime", 3600, StorageLimits(1 << 40, 1 << 40, 10, 300)
    )
    session = storage.create_session(1)
    for path in upload_dir.iterdir():
        os.link(path, storage.path(session.id, "input") / path.name)
    return storage, session.id


def ours(storage: Any, session_id: str, processes: int) -> dict[str, Any]:
    from api.services.archive_scan import ScanLimits
    from api.services.conversion_service import ConversionConfig, ConversionOptions, convert_session

    limits = ScanLimits(
        max_depth=5, max_files=100_000, max_total_bytes=8 << 30, max_file_bytes=2 << 30, max_ratio=200
    )
    config = ConversionConfig(limits, processes, pool_min_bytes=0)
    result = convert_session(storage, session_id, ConversionOptions(), lambda percent, message: None, config)
    manifest = (storage.path(session_id, "output") / "manifest.json").read_text(encoding="utf-8")
    return {"summary": result["summary"], "manifest": manifest}


IMPORTS = {  # what each route imports before its clock starts (imports are not conversion)
    "floor": ("lxml.etree",),
    "diy": ("pandas", "xmltodict"),
    "one": ("api.services.conversion_service", "api.core.memory_cache"),
    "pool": ("api.services.conversion_service", "api.core.memory_cache"),
}


def _as_in_a_job_child(pool: bool) -> None:
    """Set this process up like a worker's job child that has run a conversion before: the
    application's objects frozen (``api.workers.child.freeze_startup_heap``) and, for the pool,
    ``__main__`` forgotten (``forget_main``) and the fork server running (it starts with the first
    pooled job and serves every later one; a first job pays ~0.1 s more)."""
    import multiprocessing

    from api.services.conversion_runner import WORKER_MODULES
    from api.workers.child import forget_main, freeze_startup_heap

    if pool:
        forget_main()
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(WORKER_MODULES)
        process = context.Process(target=os.getpid)  # returns once the fork server has forked it
        process.start()
        process.join()
    freeze_startup_heap()


def run(route: str, upload_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Run one route once (in a fresh process: the caller measures its peak memory); return the
    wall time and what the route reports."""
    for module in IMPORTS[route]:
        importlib.import_module(module)
    if route in ("one", "pool"):
        _as_in_a_job_child(pool=route == "pool")
    out_dir.mkdir(parents=True, exist_ok=True)
    prepared = workspace(upload_dir, out_dir) if route in ("one", "pool") else None
    started, cpu_started = time.perf_counter(), time.process_time()
    facts: dict[str, Any] = {}
    if route == "floor":
        floor(upload_dir, out_dir)
    elif route == "diy":
        diy(upload_dir, out_dir)
    else:
        assert prepared is not None
        facts = ours(*prepared, processes=2 if route == "pool" else 1)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    # out_dir stays until the whole benchmark ends (see bench_conversion.py on deleting files).
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, **facts}
