"""Crossref-style deposits for the end-to-end test, and the rows their conversion must give.

A nested upload: ``{upload}`` holds ``2024/batch.zip`` (which holds the deposits) and a text file the
conversion skips. Titles carry commas, quotes and non-ASCII text, so CSV quoting and encoding count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from xml.sax.saxutils import escape

from benchmarks.crossref_corpus import small_deposits
from tests.support.archives import zip_bytes

RecordType = Literal["book", "journal"]
INNER_ZIP = "2024/batch.zip"
HEADER = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<doi_batch xmlns="http://www.crossref.org/schema/5.3.1" version="5.3.1">\n'
)
# Where a record's title and DOI land: the flattening rules name columns by path from the record.
TITLE_COLUMN = {"book": "book_metadata.titles.title", "journal": "journal_article.titles.title"}
DOI_COLUMN = {"book": "book_metadata.doi_data.doi", "journal": "journal_article.doi_data.doi"}


@dataclass(frozen=True)
class Work:
    record_type: RecordType
    title: str
    doi: str

    def xml(self) -> str:
        doi_data = (
            f"<doi_data><doi>{self.doi}</doi><resource>https://example.org/{self.doi}</resource></doi_data>"
        )
        title = f"<titles><title>{escape(self.title)}</title></titles>"
        if self.record_type == "book":
            return f'<book book_type="monograph"><book_metadata>{title}{doi_data}</book_metadata></book>'
        return (
            "<journal><journal_metadata><full_title>Journal of Examples</full_title></journal_metadata>"
            f"<journal_article>{title}{doi_data}</journal_article></journal>"
        )


@dataclass(frozen=True)
class Deposit:
    name: str
    batch_id: str
    works: tuple[Work, ...]

    def xml(self) -> bytes:
        head = (
            f"<head><doi_batch_id>{self.batch_id}</doi_batch_id>"
            "<depositor><depositor_name>Example Press</depositor_name></depositor></head>"
        )
        body = "".join(work.xml() for work in self.works)
        return f"{HEADER}{head}<body>{body}</body></doi_batch>\n".encode()


def corpus(tag: str) -> tuple[Deposit, ...]:
    """Two deposits of books and journals; ``tag`` makes the values of one user's corpus unique."""
    return (
        Deposit(
            "batch-1.xml",
            f"{tag}-batch-1",
            (
                Work("book", f"Notes on the Analytical Engine, {tag}", f"10.5555/{tag}.1"),
                Work("journal", f'Café "naïve" résumés of {tag}', f"10.5555/{tag}.2"),
                Work("book", f"Zürich, Kraków and São Paulo ({tag})", f"10.5555/{tag}.3"),
            ),
        ),
        Deposit(
            "batch-2.xml",
            f"{tag}-batch-2",
            (Work("journal", f"Øresund studies {tag}", f"10.5555/{tag}.4"),),
        ),
    )


def nested_upload(deposits: tuple[Deposit, ...]) -> bytes:
    """A ZIP holding a ZIP holding the deposits (and a file that is not XML)."""
    inner = zip_bytes([(deposit.name, deposit.xml()) for deposit in deposits])
    return zip_bytes([(INNER_ZIP, inner), ("README.txt", b"not a deposit")])


def expected_rows(
    upload: str, deposits: tuple[Deposit, ...], record_type: RecordType
) -> list[dict[str, str]]:
    """The identifying columns of every row of ``record_type``'s table, in table order."""
    rows = []
    for deposit in deposits:
        for index, work in enumerate(deposit.works, start=1):
            if work.record_type == record_type:
                rows.append(
                    {
                        "source_file": f"{upload}!/{INNER_ZIP}!/{deposit.name}",
                        "record_index": str(index),
                        "record_type": record_type,
                        "head.doi_batch_id": deposit.batch_id,
                        "head.depositor.depositor_name": "Example Press",
                        TITLE_COLUMN[record_type]: work.title,
                        DOI_COLUMN[record_type]: work.doi,
                    }
                )
    return rows


def bulk_upload(count: int) -> bytes:
    """A ZIP of ``count`` generated Crossref deposits (``benchmarks.crossref_corpus``): enough work
    that a conversion started just before logout is still queued or running when logout comes."""
    deposits = small_deposits(seed=9, count=count, unique=min(count, 50))
    return zip_bytes((f"bulk/deposit_{index:05d}.xml", data) for index, data in enumerate(deposits))
