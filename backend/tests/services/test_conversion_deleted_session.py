"""A conversion whose workspace session is deleted while it runs leaves nothing of the session behind
(logout cancels the job but cannot wait for it to notice)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.archives import zip_bytes
from tests.support.workspace import Workspace

DEPOSIT = (
    b'<doi_batch xmlns="http://www.crossref.org/schema/5.3.1"><body><book><t>x</t></book></body></doi_batch>'
)


class Cancelled(Exception):
    pass


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    space = Workspace(tmp_path)
    space.upload("d.zip", zip_bytes([("a.xml", DEPOSIT), ("b.xml", DEPOSIT)]))
    return space


def _left_behind(workspace: Workspace) -> tuple[bool, list[str]]:
    directory = workspace.storage.path(workspace.session_id)
    return directory.exists(), workspace.storage.records.cache.keys(f"session:{workspace.session_id}:")


def test_a_run_cancelled_after_its_session_was_deleted_recreates_nothing(workspace: Workspace) -> None:
    def deleted_then_cancelled(percent: int, message: str) -> None:
        if message.startswith("converted"):
            workspace.storage.cleanup_session(workspace.session_id)
            raise Cancelled

    with pytest.raises(Cancelled):
        workspace.convert(report=deleted_then_cancelled)
    assert _left_behind(workspace) == (False, [])
