"""HubSpot's CRM Exports API for companies: start an export, poll its task, download the file.

    POST /crm/v3/exports/export/async                    start (202, a task locator: {"id", "links"})
    GET  /crm/v3/exports/export/async/tasks/{id}/status  PENDING, PROCESSING, then COMPLETE with `result`, the URL
    GET  /exports/files/{token}                          the file: one CSV, or a zip of CSVs past the partition size

Shapes from hubspot-api.md (the Exports API entry) and HubSpot's exports guide and reference: the request's
`exportType`, `format`, `exportName`, `objectType`, `objectProperties` and `language` are required;
`exportInternalValuesOptions` (`NAMES`, `VALUES`) asks for internal property names as headers and internal option
values in cells, where the default is labels; exports past a million rows arrive as a zip of partitions (HubSpot's
changelog of April 2025). The start and the status calls are API calls (authenticated, counted, rate limited); the
download is a plain URL of its own, as HubSpot's is a file store's pre-signed link, and expires.

Where the documents are silent, the sandbox chooses (the README's sandbox section lists these):
- the records are those active when the export starts, read then (a snapshot);
- cells hold the same text the objects API returns for the property (dates and times as ISO 8601), the first
  column is the record id (`hs_object_id`, "Record ID" as a label), and there is one row per record;
- a task answers PENDING, then PROCESSING, then COMPLETE (`export_status_polls` reads before it completes), or
  CANCELED when `export_outcome` says so;
- only CSV is served (an XLSX or XLS request is refused with a 400 naming what the sandbox serves), and only
  `VIEW` exports (a `LIST` export needs a list, which the sandbox does not have);
- the download link expires `export_url_ttl_seconds` after the task completes (403 then, as a file store answers).
"""

from __future__ import annotations

import csv
import io
import zipfile
from typing import Any

from flask import Blueprint, Response, url_for

from hubspot_sandbox.app import json_response, read_json_object, sandbox_state
from hubspot_sandbox.properties import PropertyDefinition
from hubspot_sandbox.wire import bad_request, iso_ms, not_found, now_ms

exports = Blueprint("hubspot_exports", __name__, url_prefix="/crm/v3/exports/export/async")
files = Blueprint("hubspot_export_files", __name__, url_prefix="/exports/files")

REQUIRED = ("exportType", "format", "exportName", "objectType", "objectProperties", "language")
LANGUAGES = ("DE", "EN", "ES", "FI", "FR", "IT", "JA", "NL", "PL", "PT", "SV")
COMPANY_TYPES = ("COMPANY", "COMPANIES", "0-2")
ID_PROPERTY = "hs_object_id"
ID_LABEL = "Record ID"


def _request_properties(body: dict[str, Any], known: dict[str, PropertyDefinition]) -> list[str]:
    missing = [name for name in REQUIRED if body.get(name) in (None, "", [])]
    if missing:
        raise bad_request(f"Missing required field(s): {', '.join(missing)}.")
    if body["exportType"] != "VIEW":
        raise bad_request(f"exportType {body['exportType']!r} is not served by the sandbox: it has no lists; use VIEW.")
    if body["format"] != "CSV":
        raise bad_request(f"format {body['format']!r} is not served by the sandbox; it serves CSV.")
    if str(body["objectType"]).upper() not in COMPANY_TYPES:
        raise bad_request(f"objectType {body['objectType']!r}: the sandbox exports companies (COMPANY or 0-2).")
    if body["language"] not in LANGUAGES:
        raise bad_request(f"language must be one of {', '.join(LANGUAGES)}.")
    options = body.get("exportInternalValuesOptions") or []
    if not isinstance(options, list) or not set(options) <= {"NAMES", "VALUES"}:
        raise bad_request("exportInternalValuesOptions must be a list of NAMES and VALUES.")
    names = body["objectProperties"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise bad_request("objectProperties must be a list of property names.")
    unknown = sorted({n for n in names if n not in known})
    if unknown:
        raise bad_request(f"Unknown properties: {', '.join(unknown)}.", properties=unknown)
    return [n for n in dict.fromkeys(names) if n != ID_PROPERTY]


def _cell(value: str | None, definition: PropertyDefinition, internal_values: bool) -> str:
    if value is None or value == "":
        return ""
    if internal_values or not definition.options:
        return value
    labels = {option.get("value"): option.get("label") for option in definition.options}
    return ";".join(str(labels.get(part, part)) for part in value.split(";"))


@exports.post("")
def start_export() -> Response:
    state = sandbox_state()
    portal = state.portal
    body = read_json_object()
    with portal.lock:
        known = dict(portal.properties)
        names = _request_properties(body, known)
        options = set(body.get("exportInternalValuesOptions") or [])
        header = [ID_PROPERTY if "NAMES" in options else ID_LABEL,
                  *[n if "NAMES" in options else known[n].label for n in names]]
        rows = [[str(c.id), *[_cell(c.values.get(n), known[n], "VALUES" in options) for n in names]]
                for c in portal.active_companies()]
    task = state.exports.add(name=str(body["exportName"]), requested_ms=now_ms(), header=header, rows=rows)
    status_url = url_for("hubspot_exports.export_status", task_id=task.id, _external=True)
    return json_response({"id": str(task.id), "links": {"status": status_url}}, status=202)


@exports.get("/tasks/<int:task_id>/status")
def export_status(task_id: int) -> Response:
    state = sandbox_state()
    config = state.config
    task = state.exports.poll(task_id, polls_before_done=config.export_status_polls,
                              cancel=config.export_outcome == "canceled", now_ms=now_ms())
    if task is None:
        raise not_found(f"No export task with id {task_id}.")
    answer: dict[str, Any] = {"requestedAt": iso_ms(task.requested_ms), "startedAt": iso_ms(task.requested_ms),
                              "numErrors": 0, "errors": [], "links": {}}
    if task.canceled:
        answer["status"] = "CANCELED"
    elif task.completed_ms is None:
        answer["status"] = "PENDING" if task.polls == 1 else "PROCESSING"
    else:
        answer.update(status="COMPLETE", completedAt=iso_ms(task.completed_ms),
                      result=url_for("hubspot_export_files.download", token=task.token, _external=True))
    return json_response(answer)


def _csv(header: list[str], rows: list[list[str]]) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


@files.get("/<token>")
def download(token: str) -> Response:
    state = sandbox_state()
    task = state.exports.by_token(token)
    if task is None or task.completed_ms is None:
        return Response("Not Found", status=404, content_type="text/plain")
    if now_ms() - task.completed_ms > state.config.export_url_ttl_seconds * 1000:
        task.rows = []  # the file is gone for good: free its copy of the portal
        return Response("Request has expired", status=403, content_type="text/plain")
    size = state.config.export_partition_rows
    if len(task.rows) <= size:
        return Response(_csv(task.header, task.rows), content_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{task.name}.csv"'})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for part, start in enumerate(range(0, len(task.rows), size), start=1):
            archive.writestr(f"{task.name}-{part}.csv", _csv(task.header, task.rows[start:start + size]))
    return Response(buffer.getvalue(), content_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{task.name}.zip"'})
