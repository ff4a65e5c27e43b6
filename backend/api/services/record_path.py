"""Record paths: the simple path of element names from the root that names a request's records.

``/doi_batch/body/*`` selects every child of ``body`` under the root ``doi_batch``. A step is ``*``
or an element name, with or without a prefix (``jats:article``); how steps match elements is
``api.services.xml_records``' business. Kept apart from the XML modules so that conversion worker
processes never import the web framework (``AppError`` lives with it).
"""

from __future__ import annotations

import re
from typing import Final

from api.errors import AppError

MAX_STEPS: Final = 32
_STEP = re.compile(r"\*|(?:[^\W\d]|_)[\w.\-]*(?::(?:[^\W\d]|_)[\w.\-]*)?")


class InvalidRecordPathError(AppError):
    status_code = 422
    code = "invalid_record_path"


def parse_record_path(text: str) -> tuple[str, ...]:
    """The steps of a record path such as ``/doi_batch/body/*``.

    Raises:
        InvalidRecordPathError: not ``/``-separated element names (``*`` allowed) from the root.
    """
    steps = tuple(text.strip().split("/"))
    if len(steps) < 2 or steps[0] != "" or len(steps) - 1 > MAX_STEPS:
        raise InvalidRecordPathError(
            f"record_path must start with / and have 1 to {MAX_STEPS} steps, like /doi_batch/body/*"
        )
    for step in steps[1:]:
        if not _STEP.fullmatch(step):
            raise InvalidRecordPathError(f"record_path step {step!r} is not an element name or *")
    return steps[1:]
