"""HubSpot's CRM Exports API for companies: a CSV export of chosen properties, its task waited for, its file
downloaded (one CSV, or a zip of CSV partitions past a million rows) and read row by row.

A handful of API calls instead of one per 100 companies; the cost is time (HubSpot builds the file) and the
`crm.export` scope. Internal names and values are asked for (`exportInternalValuesOptions`), so headers are property
names and option cells their values, as the objects API gives them. The download link is a file store's pre-signed
URL: fetched without the token, and not an API call.
"""

from __future__ import annotations

import csv
import io
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from warp_sync_pipeline.core.hubspot.errors import HubSpotError, ServiceUnavailable
from warp_sync_pipeline.core.hubspot.models import OBJECT_ID_PROPERTY
from warp_sync_pipeline.core.hubspot.transport import Transport
from warp_sync_pipeline.core.hubspot.versions import ApiVersion

COMPLETE, CANCELED = "COMPLETE", "CANCELED"
# A file of a million companies is tens of megabytes: read in chunks, never whole.
DOWNLOAD_CHUNK = 1 << 20


class ExportFailed(HubSpotError):
    """HubSpot canceled the export, it did not finish in time, or its file could not be read."""


@dataclass(frozen=True)
class ExportStatus:
    status: str
    url: str | None


class CompanyExports:
    """Start, wait for and read company exports through one transport."""

    def __init__(self, transport: Transport, paths: ApiVersion) -> None:
        self._transport = transport
        self._paths = paths

    def start(self, properties: Sequence[str], *, name: str) -> str:
        """`POST .../exports/export/async`: the task's id."""
        body = {"exportType": "VIEW", "format": "CSV", "exportName": name, "objectType": "COMPANY",
                "objectProperties": list(dict.fromkeys(properties)), "language": "EN",
                "exportInternalValuesOptions": ["NAMES", "VALUES"]}
        answer = self._transport.call("POST", self._paths.exports, json=body)
        task_id = str((answer or {}).get("id") or "")
        if not task_id:
            raise ExportFailed(f"HubSpot started an export without a task id: {answer!r}")
        return task_id

    def status(self, task_id: str) -> ExportStatus:
        answer = self._transport.call("GET", f"{self._paths.exports}/tasks/{task_id}/status") or {}
        return ExportStatus(str(answer.get("status") or ""), answer.get("result"))

    def wait(self, task_id: str, *, poll_seconds: float, timeout_seconds: float,
             on_poll: Callable[[ExportStatus], None] | None = None) -> str:
        """Poll until the export is COMPLETE: its file's URL. ExportFailed when canceled or past the timeout."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            status = self.status(task_id)
            if on_poll is not None:
                on_poll(status)
            if status.status == COMPLETE and status.url:
                return status.url
            if status.status == CANCELED:
                raise ExportFailed(f"HubSpot canceled export task {task_id}")
            if time.monotonic() + poll_seconds > deadline:
                raise ExportFailed(f"export task {task_id} was still {status.status} after {timeout_seconds:.0f} s")
            time.sleep(poll_seconds)

    def download(self, url: str, target: Path, *, read_timeout_seconds: float, deadline_seconds: float) -> Path:
        """The file behind the export's link, streamed to `target` within `deadline_seconds` in all (no token: the
        link carries its own grant; the environment's proxy and CA settings apply, as to API calls)."""
        deadline = time.monotonic() + deadline_seconds
        try:
            with httpx.stream("GET", url, timeout=read_timeout_seconds, follow_redirects=True) as answer:
                if answer.status_code != 200:
                    raise ExportFailed(f"the export's file answered {answer.status_code}"
                                       + (" (its link expired)" if answer.status_code == 403 else ""),
                                       status=answer.status_code)
                with target.open("wb") as out:
                    for chunk in answer.iter_bytes(DOWNLOAD_CHUNK):
                        out.write(chunk)
                        if time.monotonic() > deadline:
                            raise ExportFailed(f"the export's file took more than {deadline_seconds:.0f} s to download")
        except httpx.TransportError as exc:
            raise ServiceUnavailable(f"downloading the export's file: {type(exc).__name__}") from exc
        except httpx.HTTPError as exc:  # too many redirects, an undecodable body
            raise ExportFailed(f"downloading the export's file: {type(exc).__name__}: {exc}") from exc
        return target


def export_rows(path: Path) -> Iterator[dict[str, str]]:
    """Every row of an export's file, by column name: a CSV, or each CSV of a zip in name order."""
    with path.open("rb") as head:
        looks_zipped = head.read(4) == b"PK\x03\x04"
    if looks_zipped and not zipfile.is_zipfile(path):
        raise ExportFailed("the export's file is a broken zip (cut short?)")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for name in sorted(n for n in archive.namelist() if n.lower().endswith(".csv")):
                with archive.open(name) as member:
                    yield from _csv_rows(io.TextIOWrapper(member, encoding="utf-8-sig", newline=""))
        return
    with path.open(encoding="utf-8-sig", newline="") as text:
        yield from _csv_rows(text)


def _csv_rows(text: Any) -> Iterator[dict[str, str]]:
    reader = csv.DictReader(text)
    if reader.fieldnames is None or OBJECT_ID_PROPERTY not in reader.fieldnames:
        raise ExportFailed(f"the export's file has no {OBJECT_ID_PROPERTY} column (headers {reader.fieldnames!r})")
    for row in reader:
        # DictReader fills a short row's missing cells with None and keeps a long row's extras under the key None.
        if None in row or None in row.values():
            raise ExportFailed(f"row {reader.line_num} of the export's file does not match its header")
        yield row
