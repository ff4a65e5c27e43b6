"""The docs check's own machinery: block parsing and how a document's blocks are run and reported."""

from __future__ import annotations

from pathlib import Path

from tests.docs.markdown import (
    fenced_blocks,
    first_column_names,
    heading_anchors,
    relative_links,
    section,
    slug,
)
from tests.docs.runner import DocumentRun, docs_environment, run_document

DOCUMENT = """# Title

```bash runnable
GREETING=hello
```

```bash
exit 1   # shown, never run
```

````bash runnable
echo "$GREETING from the second block"
cat > /dev/null <<'EOF'
```
still inside the four-backtick fence
```
EOF
````
"""


def _run(tmp_path: Path, text: str) -> DocumentRun:
    blocks = [block for block in fenced_blocks(text) if block.runnable]
    return run_document("doc.md", blocks, docs_environment(tmp_path), tmp_path, tmp_path)


def test_only_bash_runnable_blocks_are_run_with_their_fence_lines() -> None:
    runnable = [block for block in fenced_blocks(DOCUMENT) if block.runnable]
    assert [block.line for block in runnable] == [3, 11]
    assert "still inside the four-backtick fence" in runnable[1].text


def test_later_blocks_see_the_variables_of_earlier_ones(tmp_path: Path) -> None:
    run = _run(tmp_path, DOCUMENT)
    assert run.ok, run.report()
    assert run.output_by_block[11].startswith("hello from the second block")


def test_a_failure_names_the_document_the_block_line_and_its_output(tmp_path: Path) -> None:
    text = (
        "```bash runnable\necho fine\n```\n\n```bash runnable\necho about to fail\nfalse\necho never\n```\n"
    )
    run = _run(tmp_path, text)
    report = run.report()
    assert not run.ok
    assert "doc.md" in report
    assert "block at line 5 failed" in report
    assert "about to fail" in report
    assert "never" not in report


def test_a_failure_inside_a_pipe_fails_the_block(tmp_path: Path) -> None:
    run = _run(tmp_path, "```bash runnable\nfalse | cat\n```\n")
    assert not run.ok


def test_a_background_process_left_running_does_not_hold_the_check(tmp_path: Path) -> None:
    run = _run(tmp_path, "```bash runnable\nsleep 600 &\necho started\n```\n")
    assert run.ok, run.report()


def test_blocks_run_with_ret_on_path_and_a_fresh_runtime_root(tmp_path: Path) -> None:
    expected_root = tmp_path / "runtime"
    text = f'```bash runnable\ncommand -v ret\ntest "$RET_RUNTIME_ROOT" = "{expected_root}"\n```\n'
    run = _run(tmp_path, text)
    assert run.ok, run.report()


def test_links_in_code_are_not_links() -> None:
    text = "See [ops](operations.md#backup).\n\n```\n[x](missing.md)\n```\n\n`[y](missing.md)`\n"
    assert relative_links(text) == [(1, "operations.md#backup")]


def test_slugs_follow_github() -> None:
    assert slug("Backup and restore") == "backup-and-restore"
    assert slug("`ret validate` checks") == "ret-validate-checks"


def test_headings_with_code_keep_it_in_their_anchor() -> None:
    anchors = heading_anchors("## Checking a deployment: `ret validate`\n")
    assert anchors == {"checking-a-deployment-ret-validate"}


def test_section_ends_at_the_next_heading_of_its_level_and_ignores_code_comments() -> None:
    text = (
        "## Configuration reference\n\n```bash\n# not a heading\n```\n\n"
        "| `A` / `B` | x |\n\n## Next\n| `C` | y |\n"
    )
    assert first_column_names(section(text, "Configuration reference")) == {"A", "B"}


def test_output_without_a_final_newline_stays_with_its_block(tmp_path: Path) -> None:
    run = _run(tmp_path, "```bash runnable\nprintf 'no newline'\n```\n\n```bash runnable\necho next\n```\n")
    assert run.output_by_block == {1: "no newline", 5: "next\n"}
