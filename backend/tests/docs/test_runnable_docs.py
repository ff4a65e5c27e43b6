"""The docs check: the commands the docs mark as runnable run, the settings table is complete, and
every relative link resolves.

Convention (also in docs/operations.md): a fenced block whose info string is ``bash runnable`` is run
with ``bash -e -o pipefail`` from ``backend/``, with the venv's ``bin`` (so ``ret``) on PATH, against
a fresh runtime root (``ENV=testing``, as the test servers get). The blocks of one document run in
order in one shell, so later blocks see earlier variables.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.core.config import Settings
from tests.conftest import BACKEND_DIR
from tests.docs.markdown import first_column_names, heading_anchors, relative_links, runnable_blocks, section
from tests.docs.runner import RunningDocument, docs_environment

REPO_DIR = BACKEND_DIR.parent
DOCUMENTS = sorted([REPO_DIR / "README.md", *(REPO_DIR / "docs").glob("*.md"), *BACKEND_DIR.glob("*.md")])
MIGRATION_GUIDE = REPO_DIR / "docs" / "REDIS_TO_SQLITE_MIGRATION.md"
CONFIGURATION_HEADING = "Configuration reference"
# Pages that show operators commands: each must have blocks the check runs.
PAGES_WITH_COMMANDS = (
    "docs/REDIS_TO_SQLITE_MIGRATION.md",
    "docs/operations.md",
    "docs/api.md",
    "backend/REDIS_MIGRATION_QUICKSTART.md",
)


def _name(path: Path) -> str:
    return path.relative_to(REPO_DIR).as_posix()


RUNNABLE_DOCUMENTS = [path for path in DOCUMENTS if runnable_blocks(path)]
# Tools the blocks may call that a machine with only Python might lack: a document that uses one the
# machine does not have is skipped, naming it, rather than failing `make test` there.
OPTIONAL_TOOLS = ("curl",)


def missing_tools(document: Path) -> list[str]:
    text = "\n".join(block.text for block in runnable_blocks(document))
    return [tool for tool in OPTIONAL_TOOLS if re.search(rf"\b{tool}\b", text) and shutil.which(tool) is None]


@pytest.fixture(scope="module")
def started_documents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[Path, RunningDocument]]:
    """Every runnable document started at once, each on its own runtime root (most of their time
    goes to starting `ret` processes, which overlap well); whatever is left is stopped at the end."""
    started = {}
    for document in RUNNABLE_DOCUMENTS:
        if missing_tools(document):
            continue
        root = tmp_path_factory.mktemp(document.stem)
        env, blocks = docs_environment(root), runnable_blocks(document)
        started[document] = RunningDocument(_name(document), blocks, env, BACKEND_DIR, root)
    yield started
    for running in started.values():
        running.finish(timeout=0)


@pytest.mark.parametrize("document", RUNNABLE_DOCUMENTS, ids=_name)
def test_runnable_blocks_of_the_document_succeed(
    document: Path, started_documents: dict[Path, RunningDocument]
) -> None:
    if missing := missing_tools(document):
        pytest.skip(f"{_name(document)} calls {', '.join(missing)}, which this machine lacks")
    run = started_documents[document].finish()
    assert run.ok, run.report()


@pytest.mark.parametrize("page", PAGES_WITH_COMMANDS)
def test_pages_that_show_commands_have_runnable_blocks(page: str) -> None:
    assert runnable_blocks(REPO_DIR / page), f"{page} marks no block as `bash runnable`"


def test_configuration_reference_lists_every_setting() -> None:
    table = section(MIGRATION_GUIDE.read_text(encoding="utf-8"), CONFIGURATION_HEADING)
    documented = first_column_names(table)
    missing = sorted(name.upper() for name in Settings.model_fields if name.upper() not in documented)
    assert not missing, f"{_name(MIGRATION_GUIDE)} § {CONFIGURATION_HEADING} lacks: {', '.join(missing)}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=_name)
def test_relative_links_resolve(document: Path) -> None:
    broken = [
        f"line {line}: {target}"
        for line, target in relative_links(document.read_text(encoding="utf-8"))
        if not _resolves(document, target)
    ]
    assert not broken, f"{_name(document)} has broken links: " + "; ".join(broken)


def _resolves(document: Path, target: str) -> bool:
    path_part, _, anchor = target.partition("#")
    path = (document.parent / path_part).resolve() if path_part else document
    if not path.exists():
        return False
    if anchor and path.suffix == ".md":
        return anchor in heading_anchors(path.read_text(encoding="utf-8"))
    return True
