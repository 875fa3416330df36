"""The report's tables as CSV files, attached to the email when a table is longer than the email shows.

A CSV holds the data as the run row and the JSON keep it: reason codes and WARP field names (the email's sentences
and labels are for reading), plus the ids the email links through (customer id, HubSpot company id, property).
Every value may come from HubSpot, and spreadsheets run a cell that starts with `=`, `+`, `-` or `@` as a formula:
such a text cell is written with a leading apostrophe (OWASP's advice for CSV injection); numbers stay numbers.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from dataclasses import dataclass
from typing import Any

from warp_sync_pipeline.core.reconcile.results import Report, ReportSection
from warp_sync_pipeline.core.web_links import COMPANY, CUSTOMER

# Whole tables up to this size are attached as they are; larger ones gzipped (a CSV shrinks about tenfold).
GZIP_ABOVE_BYTES = 2 * 1024 * 1024
# What all attachments of one email may weigh: mail servers commonly refuse messages over 20-25 MB, and base64
# adds a third. A table that does not fit is cut, and the email says so.
MAX_ATTACHMENTS_BYTES = 12 * 1024 * 1024

KEY_COLUMNS = ((CUSTOMER, "customer_id"), (COMPANY, "hubspot_company_id"), ("property", "hubspot_property"))
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?$")
_NOT_A_NAME = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    content_type: str  # "text/csv" or "application/gzip"
    rows: int  # rows in the file
    total_rows: int  # rows the table has

    @property
    def complete(self) -> bool:
        return self.rows >= self.total_rows


def safe_cell(value: Any) -> str:
    """A cell as text a spreadsheet shows rather than runs."""
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_START) and not _NUMBER.match(text):
        return "'" + text
    return text


def file_name(title: str) -> str:
    return (_NOT_A_NAME.sub("-", title.lower()).strip("-") or "table")[:60]


def section_csv(section: ReportSection, rows: int | None = None) -> bytes:
    """The section's first `rows` rows (all by default) as UTF-8 CSV with a header; the id columns after the shown
    ones."""
    count = len(section.rows) if rows is None else min(rows, len(section.rows))
    keys = [(kind, name) for kind, name in KEY_COLUMNS if any(kind in k for k in section.keys[:count])]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([safe_cell(c) for c in section.columns] + [name for _, name in keys])
    for index in range(count):
        row_keys = section.row_keys(index)
        writer.writerow([safe_cell(v) for v in section.rows[index]] + [safe_cell(row_keys.get(k)) for k, _ in keys])
    # A byte-order mark so spreadsheet programs read the file as UTF-8 (names carry accents).
    return buffer.getvalue().encode("utf-8-sig")


def _packed(section: ReportSection, rows: int) -> tuple[bytes, bool]:
    content = section_csv(section, rows)
    if len(content) > GZIP_ABOVE_BYTES:
        return gzip.compress(content, mtime=0), True
    return content, False


def report_attachments(report: Report, shown_rows: int, *,
                       max_bytes: int = MAX_ATTACHMENTS_BYTES) -> list[Attachment]:
    """A CSV of every table longer than the email's `shown_rows`, within `max_bytes` all told."""
    attachments: list[Attachment] = []
    room = max_bytes
    for section in report.sections:
        if section.total_rows <= shown_rows or not section.rows:
            continue
        rows = len(section.rows)
        content, zipped = _packed(section, rows)
        while len(content) > room and rows > shown_rows:
            # Cut in proportion to what fits (a little under, so one more pass rarely follows).
            rows = max(shown_rows, int(rows * room / len(content) * 0.95))
            content, zipped = _packed(section, rows)
        if len(content) > room:
            continue
        room -= len(content)
        name = file_name(section.title) + (".csv.gz" if zipped else ".csv")
        attachments.append(Attachment(name, content, "application/gzip" if zipped else "text/csv", rows,
                                      section.total_rows))
    return attachments
