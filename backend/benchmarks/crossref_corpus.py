"""A generated corpus shaped like real Crossref deposits, for the conversion benchmark and slow tests.

Deterministic for a given seed: the same call writes byte-identical files. Each deposit is a
``doi_batch`` in the Crossref 5.3.1 default namespace with a ``head`` and a ``body`` of a few records
(``book``, ``journal``, ``dissertation``, ``conference``), JATS abstracts under the ``jats:`` prefix,
repeated contributors and ISBNs, ``xml:lang`` attributes, and a sprinkling of non-ASCII text. Small
deposits are 1–15 KB; ``large_deposit`` writes one file of many records.

Self-contained on purpose (standard library only), so both ``bench_conversion.py`` and the test suite
(``benchmarks.crossref_corpus``) can import it.
"""

from __future__ import annotations

import io
import random
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

HEADER = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<doi_batch xmlns="http://www.crossref.org/schema/5.3.1" '
    'xmlns:jats="http://www.ncbi.nlm.nih.gov/JATS1" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" version="5.3.1">\n'
)
WORDS = (
    "metadata",
    "analysis",
    "of",
    "record",
    "systems",
    "open",
    "access",
    "library",
    "catalogue",
    "research",
    "data",
    "national",
    "archive",
    "study",
    "history",
    "science",
    "journal",
    "bibliographic",
    "network",
    "citation",
    "review",
    "theory",
    "model",
    "Zürich",
    "Ångström",
    "café",
    "naïve",
    "résumé",
    "Øresund",
    "São",
    "Paulo",
    "Kraków",
    "Málaga",
)
GIVEN = ("Anna", "Björn", "Chloé", "David", "Eşref", "Fatima", "Günter", "Hiro", "Inés", "Jan")
SURNAMES = ("Smith", "Müller", "García", "Nakamura", "O'Brien", "Kowalski", "Dubois", "Rossi", "Lee")
RECORD_TYPES = ("book", "journal", "dissertation", "conference")


@dataclass(frozen=True)
class CorpusSize:
    """What ``write_corpus`` produced."""

    files: int  # XML documents, wherever they ended up
    xml_bytes: int  # their total uncompressed size


def _words(rng: random.Random, low: int, high: int) -> str:
    return escape(" ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high))))


def _contributors(rng: random.Random) -> str:
    people = []
    for index in range(rng.randint(1, 6)):
        role = "author" if index == 0 or rng.random() < 0.7 else "editor"
        orcid = f"<ORCID>https://orcid.org/0000-000{rng.randint(1, 9)}-{rng.randint(1000, 9999)}-0000</ORCID>"
        people.append(
            f'<person_name sequence="{"first" if index == 0 else "additional"}" contributor_role="{role}">'
            f"<given_name>{rng.choice(GIVEN)}</given_name><surname>{escape(rng.choice(SURNAMES))}</surname>"
            f"{orcid if rng.random() < 0.5 else ''}</person_name>"
        )
    return f"<contributors>{''.join(people)}</contributors>"


def _abstract(rng: random.Random) -> str:
    paragraphs = "".join(
        f"<jats:p>{_words(rng, 20, 60)} <jats:italic>{_words(rng, 1, 3)}</jats:italic> {_words(rng, 5, 20)}"
        "</jats:p>"
        for _ in range(rng.randint(1, 3))
    )
    return f'<jats:abstract xml:lang="en">{paragraphs}</jats:abstract>'


def _date(rng: random.Random, media: str = "print") -> str:
    return (
        f'<publication_date media_type="{media}"><month>{rng.randint(1, 12):02d}</month>'
        f"<day>{rng.randint(1, 28):02d}</day><year>{rng.randint(1950, 2024)}</year></publication_date>"
    )


def _doi_data(rng: random.Random, serial: int) -> str:
    doi = f"10.{rng.randint(1000, 9999)}/ret.{serial}"
    return f"<doi_data><doi>{doi}</doi><resource>https://example.org/{doi}</resource></doi_data>"


def _book(rng: random.Random, serial: int) -> str:
    isbns = "".join(
        f'<isbn media_type="{media}">978-{rng.randint(0, 9)}-{rng.randint(1000, 9999)}-'
        f"{rng.randint(100, 999)}-{rng.randint(0, 9)}</isbn>"
        for media in ("print", "electronic")[: rng.randint(1, 2)]
    )
    return (
        f'<book book_type="monograph"><book_metadata language="en">{_contributors(rng)}'
        f"<titles><title>{_words(rng, 3, 12)}</title></titles>{_abstract(rng)}{_date(rng)}{isbns}"
        f"<publisher><publisher_name>{_words(rng, 2, 4)}</publisher_name></publisher>"
        f"{_doi_data(rng, serial)}</book_metadata></book>"
    )


def _journal(rng: random.Random, serial: int) -> str:
    return (
        f'<journal><journal_metadata language="en"><full_title>{_words(rng, 2, 6)}</full_title>'
        f"<abbrev_title>{_words(rng, 1, 3)}</abbrev_title>"
        f'<issn media_type="print">{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}</issn>'
        f"</journal_metadata><journal_issue>{_date(rng, 'online')}"
        f"<journal_volume><volume>{rng.randint(1, 80)}</volume></journal_volume>"
        f"<issue>{rng.randint(1, 12)}</issue></journal_issue>"
        f'<journal_article publication_type="full_text"><titles><title>{_words(rng, 4, 14)}</title>'
        f"</titles>{_contributors(rng)}{_abstract(rng)}{_date(rng, 'online')}"
        f"<pages><first_page>{rng.randint(1, 300)}</first_page><last_page>{rng.randint(301, 600)}"
        f"</last_page></pages>{_doi_data(rng, serial)}</journal_article></journal>"
    )


def _dissertation(rng: random.Random, serial: int) -> str:
    return (
        f'<dissertation publication_type="full_text" language="en">{_contributors(rng)}'
        f"<titles><title>{_words(rng, 5, 15)}</title></titles>{_date(rng)}"
        f"<institution><institution_name>{_words(rng, 2, 5)}</institution_name>"
        f"<institution_place>{_words(rng, 1, 2)}</institution_place></institution>"
        f"<degree>PhD</degree>{_doi_data(rng, serial)}</dissertation>"
    )


def _conference(rng: random.Random, serial: int) -> str:
    return (
        f"<conference><event_metadata><conference_name>{_words(rng, 3, 8)}</conference_name>"
        f"<conference_location>{_words(rng, 1, 2)}</conference_location></event_metadata>"
        f'<conference_paper publication_type="full_text">{_contributors(rng)}'
        f"<titles><title>{_words(rng, 4, 12)}</title></titles>{_abstract(rng)}{_date(rng)}"
        f"{_doi_data(rng, serial)}</conference_paper></conference>"
    )


BUILDERS = {"book": _book, "journal": _journal, "dissertation": _dissertation, "conference": _conference}


def deposit(rng: random.Random, serial: int, records: int) -> bytes:
    """One Crossref-style deposit of ``records`` records."""
    head = (
        f"<head><doi_batch_id>batch-{serial}</doi_batch_id><timestamp>{20240101000000 + serial}</timestamp>"
        f"<depositor><depositor_name>{_words(rng, 1, 3)}</depositor_name>"
        f"<email_address>depositor{serial % 97}@example.org</email_address></depositor>"
        f"<registrant>{_words(rng, 1, 3)}</registrant></head>\n"
    )
    body = "\n".join(
        BUILDERS[rng.choice(RECORD_TYPES)](rng, serial * 1000 + index) for index in range(records)
    )
    return (HEADER + head + "<body>\n" + body + "\n</body>\n</doi_batch>\n").encode("utf-8")


def small_deposits(seed: int, count: int, unique: int | None = None) -> Iterator[bytes]:
    """``count`` deposits of 1–15 KB (one to six records each); with ``unique``, only that many
    are generated and then repeated (a large corpus builds in seconds)."""
    rng = random.Random(seed)
    made: list[bytes] = []
    for serial in range(count):
        if unique is not None and serial >= unique:
            yield made[serial % unique]
            continue
        data = deposit(rng, serial, rng.choice((1, 1, 1, 2, 2, 3, 4, 5, 6)))
        if unique is not None:
            made.append(data)
        yield data


def large_deposit(seed: int, target_bytes: int, unique_bytes: int | None = None) -> bytes:
    """One deposit of about ``target_bytes`` (many records; with ``unique_bytes``, records are
    generated up to that size and then repeated)."""
    rng = random.Random(seed)
    parts: list[str] = []
    size = serial = 0
    while size < target_bytes:
        if unique_bytes is not None and size >= unique_bytes:
            record = parts[serial % len(parts)]
        else:
            record = BUILDERS[rng.choice(RECORD_TYPES)](rng, 10_000_000 + serial)
        parts.append(record)
        size += len(record) + 1
        serial += 1
    head = "<head><doi_batch_id>large</doi_batch_id><registrant>Bulk</registrant></head>\n"
    return (HEADER + head + "<body>\n" + "\n".join(parts) + "\n</body>\n</doi_batch>\n").encode("utf-8")


def _zip_bytes(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def write_corpus(
    directory: Path, *, files: int, seed: int = 8, large: tuple[int, ...] = (), unique: int | None = None
) -> CorpusSize:
    """Write an upload set into ``directory``: a quarter of the deposits as plain ``.xml`` files, the
    rest in ZIPs (``batch_N.zip``), a third of those one level deeper inside an inner ZIP and some two
    levels deeper; plus one ``large_N.xml`` per entry of ``large`` (its size in bytes). ``unique``
    limits how many distinct deposits (and MB of distinct large records) are generated."""
    directory.mkdir(parents=True, exist_ok=True)
    deposits = list(small_deposits(seed, files, unique))
    plain, zipped = deposits[: files // 4], deposits[files // 4 :]
    for index, data in enumerate(plain):
        (directory / f"deposit_{index:05d}.xml").write_bytes(data)
    per_zip = 200
    for batch, start in enumerate(range(0, len(zipped), per_zip)):
        chunk = zipped[start : start + per_zip]
        outer, inner, innermost = chunk[: len(chunk) // 3], chunk[len(chunk) // 3 : -10], chunk[-10:]
        deepest = _zip_bytes([(f"deep/book_{i}.xml", data) for i, data in enumerate(innermost)])
        middle = [(f"{2024 - batch % 3}/item_{i}.xml", data) for i, data in enumerate(inner)]
        members = [(f"records/record_{i}.xml", data) for i, data in enumerate(outer)]
        members += [("nested/data.zip", _zip_bytes([*middle, ("more/data.zip", deepest)]))]
        members += [("README.txt", b"not a deposit\n")]
        (directory / f"batch_{batch:03d}.zip").write_bytes(_zip_bytes(members))
    total = sum(map(len, deposits))
    for index, size in enumerate(large):
        unique_bytes = None if unique is None else 4 * 1024 * 1024
        data = large_deposit(seed + 1000 + index, size, unique_bytes)
        (directory / f"large_{index}.xml").write_bytes(data)
        total += len(data)
    return CorpusSize(files + len(large), total)
