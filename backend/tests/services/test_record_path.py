"""Record paths: element names from the root, ``*`` allowed; anything else is refused (422)."""

from __future__ import annotations

import pytest

from api.services.record_path import InvalidRecordPathError, parse_record_path


@pytest.mark.parametrize(
    ("text", "steps"),
    [
        ("/doi_batch/body/*", ("doi_batch", "body", "*")),
        ("/catalogue/item", ("catalogue", "item")),
        ("/cr:doi_batch/cr:body/*", ("cr:doi_batch", "cr:body", "*")),
        (" /r ", ("r",)),
        ("/données/élément", ("données", "élément")),
    ],
)
def test_valid_paths_give_their_steps(text: str, steps: tuple[str, ...]) -> None:
    assert parse_record_path(text) == steps


@pytest.mark.parametrize(
    "text",
    [
        "",
        "/",
        "doi_batch/body",
        "/a//b",
        "/a/../b",
        "/a/b[1]",
        "/a/@id",
        "/a/*b",
        "/1a",
        "/a:b:c",
        "/a/" + "b/" * 40,
    ],
)
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(InvalidRecordPathError):
        parse_record_path(text)
