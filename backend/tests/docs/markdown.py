"""Just enough Markdown for the docs check: fenced blocks, relative links, headings and tables."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

RUNNABLE_INFO = ("bash", "runnable")
FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
LINK = re.compile(r"!?\[[^\]]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
INLINE_CODE = re.compile(r"`+[^`]*`+")
HEADING = re.compile(r"^(?P<marks>#{1,6})\s+(?P<title>.+?)\s*#*\s*$")
EXTERNAL = ("http://", "https://", "mailto:")


@dataclass(frozen=True, slots=True)
class Block:
    """A fenced code block: its info string, the lines of its fences (1-based), its text."""

    info: tuple[str, ...]
    line: int
    end_line: int
    text: str

    @property
    def runnable(self) -> bool:
        return self.info[:1] == RUNNABLE_INFO[:1] and RUNNABLE_INFO[1] in self.info[1:]


def fenced_blocks(text: str) -> list[Block]:
    """Every fenced code block of ``text``, in order (an unclosed fence runs to the end)."""
    blocks: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence, start = opening["fence"], index
        body: list[str] = []
        index += 1
        while index < len(lines) and not _closes(lines[index], fence):
            body.append(lines[index])
            index += 1
        blocks.append(Block(tuple(opening["info"].split()), start + 1, index + 1, "\n".join(body) + "\n"))
        index += 1
    return blocks


def _closes(line: str, fence: str) -> bool:
    stripped = line.strip()
    return stripped.startswith(fence) and set(stripped) == {fence[0]}


def runnable_blocks(path: Path) -> list[Block]:
    """The blocks of ``path`` whose info string is ``bash runnable``."""
    return [block for block in fenced_blocks(path.read_text(encoding="utf-8")) if block.runnable]


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of the lines outside fenced blocks: where links and headings are."""
    inside = {number for block in fenced_blocks(text) for number in range(block.line, block.end_line + 1)}
    return [(number, line) for number, line in enumerate(text.splitlines(), start=1) if number not in inside]


def headings(text: str) -> list[tuple[int, int, str]]:
    """(line number, level, title) of every heading outside fenced blocks."""
    found = []
    for number, line in prose_lines(text):
        heading = HEADING.match(line)
        if heading is not None:
            found.append((number, len(heading["marks"]), heading["title"]))
    return found


def relative_links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every link that points inside the repository."""
    return [
        (number, match["target"])
        for number, line in prose_lines(text)
        for match in LINK.finditer(INLINE_CODE.sub("", line))
        if not match["target"].startswith(EXTERNAL)
    ]


def heading_anchors(text: str) -> set[str]:
    """The anchors GitHub gives the headings of ``text``."""
    return {slug(title) for _, _, title in headings(text)}


def slug(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    title = re.sub(r"[`*_]|\[|\]\([^)]*\)", "", title).strip().lower()
    return re.sub(r"[^\w\- ]", "", title).replace(" ", "-")


def section(text: str, title: str) -> str:
    """The lines under the heading ``title`` up to the next heading of the same or a higher level."""
    lines, found = text.splitlines(), headings(text)
    for position, (number, level, found_title) in enumerate(found):
        if found_title == title:
            ends = [other for other, other_level, _ in found[position + 1 :] if other_level <= level]
            return "\n".join(lines[number : ends[0] - 1 if ends else len(lines)])
    raise LookupError(f"no heading {title!r}")


def first_column_names(table: str) -> set[str]:
    """Every `CODE` span in the first cell of the rows of the Markdown tables in ``table``."""
    names: set[str] = set()
    for line in table.splitlines():
        if line.startswith("|"):
            first_cell = line.split("|")[1]
            names.update(re.findall(r"`([^`]+)`", first_cell))
    return names
