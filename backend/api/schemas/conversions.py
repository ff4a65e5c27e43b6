"""Request and response models of the conversion routes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from api.schemas.jobs import JobPublic
from api.services.conversion_jobs import LatestConversion
from api.services.conversion_service import ConversionOptions, Format
from api.services.table_preview import TablePage


class ConversionCreate(BaseModel):
    formats: list[Literal["csv", "xlsx"]] = Field(
        default=["csv"], min_length=1, description="CSV tables are always written; add xlsx for tables.xlsx"
    )
    record_path: str | None = Field(
        default=None, max_length=500, examples=["/doi_batch/body/*"], description="names the records"
    )
    excel: bool = Field(default=False, description="CSV for spreadsheets: BOM, formula cells neutralised")

    def options(self) -> ConversionOptions:
        formats: tuple[Format, ...] = ("csv", "xlsx") if "xlsx" in self.formats else ("csv",)
        return ConversionOptions(formats, self.record_path, self.excel)


class ConversionAccepted(BaseModel):
    job_id: str
    state: str

    @classmethod
    def of(cls, job: JobPublic) -> ConversionAccepted:
        return cls(job_id=job.id, state=job.state)


class ConversionLatestPublic(BaseModel):
    job: JobPublic
    manifest: dict[str, Any] | None = Field(description="of the outputs in place (the last successful run)")

    @classmethod
    def of(cls, latest: LatestConversion) -> ConversionLatestPublic:
        return cls(job=JobPublic.of(latest.job), manifest=latest.manifest)


class TablePagePublic(BaseModel):
    record_type: str
    file: str
    columns: list[str]
    rows: list[list[str]]
    offset: int
    limit: int
    total: int

    @classmethod
    def of(cls, page: TablePage, limit: int) -> TablePagePublic:
        return cls(
            record_type=page.record_type,
            file=page.file,
            columns=page.columns,
            rows=page.rows,
            offset=page.offset,
            limit=limit,
            total=page.total,
        )
