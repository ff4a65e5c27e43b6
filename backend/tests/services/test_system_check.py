"""The deployment checks behind ``ret validate``, one behaviour each, in-process on ``tmp_path``."""

from __future__ import annotations

import errno
import sqlite3
import subprocess
from pathlib import Path
from typing import NamedTuple

import pytest
from alembic import command

from api.core.config import Settings, SettingsError
from api.core.database import Database
from api.services.system_checks import (
    CHECKS,
    Check,
    CheckFailed,
    CheckResult,
    render_json,
    render_text,
    run_checks,
)
from api.services.system_checks.filesystem import (
    GIB,
    check_disk_space,
    check_local_filesystem,
    check_runtime_root,
)
from api.services.system_checks.mounts import mount_of, parse_mounts
from api.services.system_checks.record_store import check_record_store
from api.services.system_checks.round_trips import check_job_round_trip, check_rate_limiter
from api.services.system_checks.runner import run_checks as run_these
from api.services.system_checks.session_store import check_session_store, check_sqlite_pragmas
from tests.conftest import make_settings


def _migrated(settings: Settings, revision: str = "head") -> Settings:
    database = Database(settings.database_url)
    try:
        command.upgrade(database.alembic_config(), revision)
    finally:
        database.dispose()
    return settings


def _revision(settings: Settings) -> str | None:
    database = Database(settings.database_url)
    try:
        return database.current_revision()
    finally:
        database.dispose()


def _rows(path: Path, table: str) -> int:
    with sqlite3.connect(path) as connection:
        count: int = connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    connection.close()
    return count


# -- the runner and the report -----------------------------------------------------------------


def _boom(settings: Settings) -> str:
    raise RuntimeError("exploded\nacross lines")


def _refuse(settings: Settings) -> str:
    raise CheckFailed("broken: do this")


def _fine(settings: Settings) -> str:
    return "fine"


def test_a_failing_check_never_stops_the_others(tmp_path: Path) -> None:
    checks = [Check("boom", _boom), Check("refuse", _refuse), Check("fine", _fine)]
    results = run_these(checks, lambda: make_settings(tmp_path))
    assert [(result.name, result.ok) for result in results[2:]] == [
        ("boom", False),
        ("refuse", False),
        ("fine", True),
    ]
    assert results[2].detail == "RuntimeError: exploded across lines"
    assert results[3].detail == "broken: do this"


def test_a_check_whose_prerequisite_failed_is_reported_as_not_run(tmp_path: Path) -> None:
    ran: list[str] = []

    def dependent(settings: Settings) -> str:
        ran.append("dependent")
        return "ran"

    checks = [Check("refuse", _refuse), Check("dependent", dependent, needs=("refuse",))]
    result = run_these(checks, lambda: make_settings(tmp_path))[-1]
    assert result == CheckResult("dependent", False, "not run: needs refuse to pass first")
    assert ran == []


def test_configuration_that_does_not_load_fails_every_check_naming_the_setting() -> None:
    def broken() -> Settings:
        raise SettingsError("invalid configuration: SESSION_CACHE_MAX_SIZE: not an integer")

    results = run_checks(broken)
    assert results[1].name == "configuration loads"
    assert not results[1].ok
    assert "SESSION_CACHE_MAX_SIZE" in results[1].detail
    assert [result.name for result in results[2:]] == [check.name for check in CHECKS]
    assert not any(result.ok for result in results[1:])


def test_text_report_has_one_line_per_check_and_a_summary() -> None:
    results = [CheckResult("a", True, "ok"), CheckResult("b", False, "do this")]
    assert render_text(results).splitlines() == ["✅ a: ok", "❌ b: do this", "1 passed, 1 failed"]


def test_json_report_lists_checks_and_summary() -> None:
    results = [CheckResult("a", True, "ok"), CheckResult("b", False, "do this")]
    assert render_json(results) == {
        "ok": False,
        "summary": {"passed": 1, "failed": 1},
        "checks": [
            {"name": "a", "ok": True, "detail": "ok"},
            {"name": "b", "ok": False, "detail": "do this"},
        ],
    }


# -- runtime root ------------------------------------------------------------------------------


def test_runtime_root_is_created_and_written(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    assert "created and writable" in check_runtime_root(settings)
    assert settings.ret_runtime_root.is_dir()
    assert list(settings.ret_runtime_root.iterdir()) == []  # the scratch file is gone


def test_runtime_root_on_a_read_only_filesystem_fails_saying_so(tmp_path: Path) -> None:
    def read_only(path: Path) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(path / ".ready-x"))

    with pytest.raises(CheckFailed, match="is on a read-only filesystem: remount it read-write"):
        check_runtime_root(make_settings(tmp_path), probe=read_only)


def test_runtime_root_refusing_writes_asks_for_write_access(tmp_path: Path) -> None:
    def refused(path: Path) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    with pytest.raises(CheckFailed, match=r"refused a write .*give the service user write access"):
        check_runtime_root(make_settings(tmp_path), probe=refused)


def test_runtime_root_blocked_by_a_file_fails(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file", encoding="utf-8")
    settings = make_settings(tmp_path, ret_runtime_root=tmp_path / "blocker" / "runtime")
    with pytest.raises(CheckFailed, match=r"\(RET_RUNTIME_ROOT\) is not a directory"):
        check_runtime_root(settings)


# -- disk space --------------------------------------------------------------------------------


class _Usage(NamedTuple):
    free: int


def test_disk_space_below_one_conversion_at_its_limit_fails(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_total_bytes=4 * GIB)
    with pytest.raises(CheckFailed, match=r"3\.0 GiB free .* less than 4\.0 GiB .*MAX_TOTAL_BYTES"):
        check_disk_space(settings, usage=lambda path: _Usage(3 * GIB))


def test_disk_space_needs_at_least_the_floor_even_with_small_conversions(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_total_bytes=1024)
    with pytest.raises(CheckFailed, match=r"less than 1\.0 GiB"):
        check_disk_space(settings, usage=lambda path: _Usage(GIB - 1))
    assert "at least 1.0 GiB needed" in check_disk_space(settings, usage=lambda path: _Usage(GIB))


def test_disk_space_is_measured_where_the_runtime_root_will_be(tmp_path: Path) -> None:
    seen: list[Path] = []

    def usage(path: Path) -> _Usage:
        seen.append(path)
        return _Usage(10 * GIB)

    check_disk_space(make_settings(tmp_path), usage=usage)  # runtime/ does not exist yet
    assert seen == [tmp_path]


# -- network filesystems -----------------------------------------------------------------------


def test_mount_table_escapes_are_decoded() -> None:
    (mount,) = parse_mounts(r"srv:/x /mnt/with\040space nfs4 rw 0 0")
    assert (mount.source, mount.point, mount.fs_type) == ("srv:/x", Path("/mnt/with space"), "nfs4")


def test_the_longest_mount_point_holding_a_path_wins() -> None:
    mounts = parse_mounts("/dev/a / ext4 rw 0 0\nsrv:/d /data nfs rw 0 0\n/dev/b /data/local xfs rw 0 0\n")
    assert mount_of(Path("/data/local/runtime"), mounts).fs_type == "xfs"  # type: ignore[union-attr]
    assert mount_of(Path("/data/runtime"), mounts).fs_type == "nfs"  # type: ignore[union-attr]
    assert mount_of(Path("/database"), mounts).fs_type == "ext4"  # type: ignore[union-attr]


def _mounts_file(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "mounts"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("fs_type", ["nfs4", "cifs", "fuse.sshfs", "9p"])
def test_runtime_root_on_a_network_filesystem_fails_naming_it(tmp_path: Path, fs_type: str) -> None:
    settings = make_settings(tmp_path)
    mounts = _mounts_file(tmp_path, "/dev/vda / ext4 rw 0 0", f"server:/export {tmp_path} {fs_type} rw 0 0")
    with pytest.raises(CheckFailed, match=f"RET_RUNTIME_ROOT is on {fs_type} .*needs a local disk"):
        check_local_filesystem(settings, mounts_file=mounts)


def test_only_the_session_database_on_a_network_filesystem_is_named(tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir()  # a mount point exists
    settings = make_settings(tmp_path, ret_session_db=tmp_path / "shared" / "ret_session.db")
    mounts = _mounts_file(tmp_path, "/dev/vda / ext4 rw 0 0", f"nas:/s {tmp_path / 'shared'} nfs rw 0 0")
    with pytest.raises(CheckFailed) as failure:
        check_local_filesystem(settings, mounts_file=mounts)
    assert str(failure.value).startswith("RET_SESSION_DB is on nfs (nas:/s mounted at")
    assert "RET_RUNTIME_ROOT" not in str(failure.value)


def test_local_filesystems_pass(tmp_path: Path) -> None:
    mounts = _mounts_file(tmp_path, "/dev/vda / ext4 rw 0 0", f"tmpfs {tmp_path} tmpfs rw 0 0")
    assert check_local_filesystem(make_settings(tmp_path), mounts_file=mounts) == (
        "local filesystems only (tmpfs)"
    )


def test_without_a_mount_table_the_filesystem_is_not_claimed_local(tmp_path: Path) -> None:
    detail = check_local_filesystem(make_settings(tmp_path), mounts_file=tmp_path / "missing")
    assert detail.startswith("not checked:")


# -- session store and its pragmas -------------------------------------------------------------


def test_session_store_round_trip_leaves_no_key_behind(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    assert "(new file)" in check_session_store(settings)
    assert _rows(settings.ret_session_db, "session_cache") == 0
    assert "(new file)" not in check_session_store(settings)


def test_session_store_that_is_not_a_database_fails_naming_the_file(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    settings.ret_session_db.parent.mkdir(parents=True)
    settings.ret_session_db.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(CheckFailed, match=f"{settings.ret_session_db}.*make RET_SESSION_DB a writable"):
        check_session_store(settings)


def test_a_directory_in_place_of_the_session_database_fails(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    settings.ret_session_db.mkdir(parents=True)
    with pytest.raises(CheckFailed, match="is a directory: point RET_SESSION_DB at a file"):
        check_session_store(settings)


def test_a_session_database_that_cannot_be_created_is_not_attempted(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file", encoding="utf-8")
    settings = make_settings(tmp_path, ret_session_db=tmp_path / "blocker" / "ret_session.db")
    with pytest.raises(CheckFailed, match="does not exist and cannot be created"):
        check_session_store(settings)


def _immutable(path: Path) -> bool:
    try:
        subprocess.run(["chattr", "+i", str(path)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        return False
    return True


def test_an_immutable_session_database_fails_as_unwritable(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    check_session_store(settings)
    if not _immutable(settings.ret_session_db):
        pytest.skip("chattr +i is not available on this filesystem")
    try:
        with pytest.raises(CheckFailed, match="readonly database: make RET_SESSION_DB a writable"):
            check_session_store(settings)
    finally:
        subprocess.run(["chattr", "-i", str(settings.ret_session_db)], check=True)


def test_pragmas_report_wal_busy_timeout_and_the_configured_synchronous(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, ret_session_db_synchronous="FULL")
    check_session_store(settings)
    detail = check_sqlite_pragmas(settings)
    assert "journal_mode=wal, busy_timeout=30000 ms, synchronous=FULL (2)" in detail
    assert detail.startswith(f"SQLite {sqlite3.sqlite_version}")


def test_pragmas_of_a_missing_session_database_fail_without_creating_it(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with pytest.raises(CheckFailed, match="does not exist"):
        check_sqlite_pragmas(settings)
    assert not settings.ret_session_db.exists()


# -- record store ------------------------------------------------------------------------------


def test_a_migrated_record_store_passes(tmp_path: Path) -> None:
    settings = _migrated(make_settings(tmp_path))
    assert check_record_store(settings).endswith("schema at the latest revision 0002")


def test_a_missing_record_store_fails_and_is_not_created(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with pytest.raises(CheckFailed, match=r"does not exist \(no migrations applied\): run `ret db upgrade`"):
        check_record_store(settings)
    assert not (tmp_path / "runtime" / "ret.db").exists()


def test_a_downgraded_record_store_fails_naming_the_gap_and_stays_behind(tmp_path: Path) -> None:
    settings = _migrated(make_settings(tmp_path), "0001")
    with pytest.raises(CheckFailed) as failure:
        check_record_store(settings)
    assert str(failure.value) == (
        "schema at revision 0001, code expects 0002: 1 migration(s) behind (0002): run `ret db upgrade`"
    )
    assert _revision(settings) == "0001"


def test_an_empty_record_store_is_behind_by_every_migration(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    (tmp_path / "runtime").mkdir()
    sqlite3.connect(tmp_path / "runtime" / "ret.db").close()
    with pytest.raises(
        CheckFailed, match=r"none \(empty database\), .*2 migration\(s\) behind \(0001, 0002\)"
    ):
        check_record_store(settings)


def test_a_record_store_at_an_unknown_revision_fails(tmp_path: Path) -> None:
    settings = _migrated(make_settings(tmp_path))
    with sqlite3.connect(tmp_path / "runtime" / "ret.db") as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999'")
    connection.close()
    with pytest.raises(CheckFailed, match="revision 9999, which this code does not know"):
        check_record_store(settings)


def test_a_record_store_that_is_not_a_database_fails_on_one_line(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    (tmp_path / "runtime").mkdir()
    (tmp_path / "runtime" / "ret.db").write_bytes(b"garbage" * 1000)
    with pytest.raises(CheckFailed, match=r"is unreachable .*DatabaseError") as failure:
        check_record_store(settings)
    assert "\n" not in str(failure.value)


def test_validation_never_applies_pending_migrations(tmp_path: Path) -> None:
    settings = _migrated(make_settings(tmp_path), "0001")
    results = {result.name: result for result in run_checks(lambda: settings)}
    assert not results["record store"].ok
    assert results["auth round trip"].detail == "not run: needs record store to pass first"
    assert results["job round trip"].detail == "not run: needs record store to pass first"
    assert _revision(settings) == "0001"


# -- rate limiter and job round trip -----------------------------------------------------------


def test_rate_limiter_decides_on_a_throwaway_key_and_removes_it(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    assert check_rate_limiter(settings).startswith("1/minute policy: first hit allowed, second refused")
    assert _rows(settings.ret_session_db, "rate_limit_v1") == 0


def test_rate_limiter_on_an_unusable_store_fails_naming_it(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    settings.ret_session_db.mkdir(parents=True)
    with pytest.raises(CheckFailed, match=f"{settings.ret_session_db}.*make RET_SESSION_DB a writable"):
        check_rate_limiter(settings)


def test_job_round_trip_runs_the_noop_job_and_removes_it(tmp_path: Path) -> None:
    settings = _migrated(make_settings(tmp_path))
    assert check_job_round_trip(settings).startswith("system.noop job submitted, run and succeeded")
    assert _rows(tmp_path / "runtime" / "ret.db", "jobs") == 0
