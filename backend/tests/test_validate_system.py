"""``tests/validate_system.py`` and ``ret validate`` as an operator runs them (real processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import BACKEND_DIR

SCRIPT = BACKEND_DIR / "tests" / "validate_system.py"


def _run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RET_", "SESSION_CACHE"))}
    base.update({"RET_RUNTIME_ROOT": str(tmp_path / "runtime"), "ENV": "testing"}, **env)
    base.setdefault("RET_SESSION_DB", str(tmp_path / "runtime" / "ret_session.db"))
    base.setdefault("DATABASE_URL", f"sqlite:///{tmp_path / 'runtime' / 'ret.db'}")
    return subprocess.run(
        args, cwd=BACKEND_DIR, env=base, capture_output=True, text=True, timeout=120, check=False
    )


def test_script_passes_on_a_fresh_runtime_root(tmp_path: Path) -> None:
    result = _run([sys.executable, str(SCRIPT)], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "❌" not in result.stdout
    assert "✅ app answers /api/health" in result.stdout
    assert result.stdout.strip().endswith("all checks passed")


def test_script_exits_1_naming_the_check_when_runtime_root_is_unusable(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a directory", encoding="utf-8")
    result = _run([sys.executable, str(SCRIPT)], tmp_path, RET_RUNTIME_ROOT=str(blocker / "rt"))
    assert result.returncode == 1
    assert "❌ runtime root writable" in result.stdout


def test_script_exits_1_when_a_setting_is_invalid(tmp_path: Path) -> None:
    result = _run([sys.executable, str(SCRIPT)], tmp_path, SESSION_CACHE_MAX_SIZE="huge")
    assert result.returncode == 1
    assert "❌ settings load" in result.stdout
    assert "SESSION_CACHE_MAX_SIZE" in result.stdout


def test_ret_validate_json_output(tmp_path: Path) -> None:
    result = _run([sys.executable, "-m", "api", "validate", "--json"], tmp_path)
    assert result.returncode == 0, result.stderr
    checks = json.loads(result.stdout)
    assert {check["name"] for check in checks} >= {"python version", "settings load"}
    assert all(check["ok"] for check in checks)


def test_script_exits_1_naming_the_session_cache_when_its_database_is_corrupt(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"definitely not sqlite" * 200)
    result = _run([sys.executable, str(SCRIPT)], tmp_path, RET_SESSION_DB=str(corrupt))
    assert result.returncode == 1
    assert "❌ session cache" in result.stdout
    assert str(corrupt) in result.stdout


def test_validation_leaves_no_keys_behind(tmp_path: Path) -> None:
    import sqlite3

    result = _run([sys.executable, str(SCRIPT)], tmp_path)
    assert result.returncode == 0, result.stdout
    database = sqlite3.connect(tmp_path / "runtime" / "ret_session.db")
    try:
        assert database.execute("SELECT COUNT(*) FROM session_cache").fetchone() == (0,)
    finally:
        database.close()


def test_validation_creates_no_lasting_user(tmp_path: Path) -> None:
    import sqlite3

    result = _run([sys.executable, str(SCRIPT)], tmp_path, ENV="development")
    assert result.returncode == 0, result.stdout
    assert "✅ auth round trip" in result.stdout
    assert "First admin" not in result.stdout
    database = sqlite3.connect(tmp_path / "runtime" / "ret.db")
    try:
        assert database.execute("SELECT COUNT(*) FROM users").fetchone() == (0,)
    finally:
        database.close()


def test_validation_runs_a_job_round_trip_and_removes_the_job(tmp_path: Path) -> None:
    import sqlite3

    result = _run([sys.executable, str(SCRIPT)], tmp_path)
    assert result.returncode == 0, result.stdout
    assert "✅ job round trip: system.noop job submitted, run and succeeded" in result.stdout
    database = sqlite3.connect(tmp_path / "runtime" / "ret.db")
    try:
        assert database.execute("SELECT COUNT(*) FROM jobs").fetchone() == (0,)
    finally:
        database.close()
