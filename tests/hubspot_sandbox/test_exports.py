"""The Exports API: start, poll, download; labels or internal names and values; a zip past the partition size; an
expired link; the request checks. The official client drives the wire where it models it."""

from __future__ import annotations

import csv
import io
import time
import zipfile
from typing import Any

import httpx
import hubspot
import pytest
from hubspot.crm.exports import PublicExportRequest

from tests.hubspot_sandbox.conftest import TLS_CONTEXT, create_company
from tests.plugins.sandbox import SandboxHandle

EXPORTS = "/crm/v3/exports/export/async"


def _request(**overrides: Any) -> dict[str, Any]:
    return {"exportType": "VIEW", "format": "CSV", "exportName": "companies", "objectType": "COMPANY",
            "objectProperties": ["name", "warp_status", "warp_services"], "language": "EN", **overrides}


def _complete(api: httpx.Client, task_id: str) -> tuple[list[str], str]:
    """Poll until COMPLETE: the statuses seen and the file's URL."""
    seen = []
    while True:
        answer = api.get(f"{EXPORTS}/tasks/{task_id}/status")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        seen.append(body["status"])
        if body["status"] == "COMPLETE":
            return seen, body["result"]
        assert len(seen) < 10


def _rows(content: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(content.decode("utf-8"), newline="")))


def _download(url: str) -> httpx.Response:
    """As a pre-signed link is fetched: no token."""
    return httpx.get(url, verify=TLS_CONTEXT, trust_env=False, timeout=10)


def test_an_export_goes_pending_processing_complete_and_its_file_holds_every_active_company(
    sandbox: SandboxHandle, warp_api: httpx.Client,
) -> None:
    acme = create_company(warp_api, name="Acme, Inc.\nHQ", warp_status="ACTIVE", warp_services="voice;data")
    bare = create_company(warp_api, name="Bare")
    gone = create_company(warp_api, name="Gone")
    assert warp_api.delete(f"/crm/v3/objects/companies/{gone['id']}").status_code == 204
    started = warp_api.post(EXPORTS, json=_request(exportInternalValuesOptions=["NAMES", "VALUES"]))
    assert started.status_code == 202, started.text
    task_id = started.json()["id"]
    statuses, url = _complete(warp_api, task_id)
    assert statuses == ["PENDING", "PROCESSING", "COMPLETE"]
    assert _download(url).status_code == 200
    header, *rows = _rows(_download(url).content)
    assert header == ["hs_object_id", "name", "warp_status", "warp_services"]
    assert sorted(rows) == sorted([[acme["id"], "Acme, Inc.\nHQ", "ACTIVE", "voice;data"], [bare["id"], "Bare", "", ""]])
    counted = sandbox.control.counters()["by_endpoint"]
    assert counted["POST /crm/v3/exports/export/async"] == 1
    assert counted["GET /crm/v3/exports/export/async/tasks/{task_id}/status"] == 3
    assert not [key for key in counted if "/exports/files" in key]  # the downloads are no API calls


def test_without_internal_values_the_file_has_labels(warp_api: httpx.Client) -> None:
    company = create_company(warp_api, name="Acme", warp_status="ACTIVE", warp_services="voice;data")
    started = warp_api.post(EXPORTS, json=_request())
    _, url = _complete(warp_api, started.json()["id"])
    header, row = _rows(_download(url).content)
    assert header == ["Record ID", "Company name", "WARP status", "WARP services"]
    assert row == [company["id"], "Acme", "Active", "Voice;Data"]


def test_past_the_partition_size_the_file_is_a_zip_of_parts(sandbox: SandboxHandle, warp_api: httpx.Client) -> None:
    ids = sandbox.control.seed([{"name": f"Company {n}"} for n in range(25)])
    sandbox.control.configure(export_partition_rows=10, export_status_polls=0)
    started = warp_api.post(EXPORTS, json=_request(objectProperties=["name"], exportInternalValuesOptions=["NAMES"]))
    statuses, url = _complete(warp_api, started.json()["id"])
    assert statuses == ["COMPLETE"]
    answer = _download(url)
    assert answer.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(answer.content)) as archive:
        parts = [_rows(archive.read(name)) for name in sorted(archive.namelist())]
    assert [len(part) - 1 for part in parts] == [10, 10, 5]
    assert all(part[0] == ["hs_object_id", "name"] for part in parts)
    assert sorted(row[0] for part in parts for row in part[1:]) == sorted(ids)


def test_the_link_expires(sandbox: SandboxHandle, warp_api: httpx.Client) -> None:
    sandbox.control.configure(export_url_ttl_seconds=0.2, export_status_polls=0)
    _, url = _complete(warp_api, warp_api.post(EXPORTS, json=_request()).json()["id"])
    time.sleep(0.3)
    assert _download(url).status_code == 403


@pytest.mark.parametrize(("change", "words"), [
    ({"format": "XLSX"}, "serves CSV"),
    ({"exportType": "LIST"}, "no lists"),
    ({"objectType": "CONTACT"}, "exports companies"),
    ({"objectProperties": ["name", "no_such_property"]}, "no_such_property"),
    ({"language": None}, "language"),
    ({"exportInternalValuesOptions": ["LABELS"]}, "NAMES and VALUES"),
])
def test_a_bad_request_is_refused_with_what_is_wrong(warp_api: httpx.Client, change: dict[str, Any],
                                                     words: str) -> None:
    answer = warp_api.post(EXPORTS, json=_request(**change))
    assert answer.status_code == 400 and answer.json()["category"] == "VALIDATION_ERROR"
    assert words in answer.json()["message"]


def test_an_unknown_task_is_404_and_the_token_is_required(sandbox: SandboxHandle, warp_api: httpx.Client) -> None:
    assert warp_api.get(f"{EXPORTS}/tasks/999/status").status_code == 404
    assert httpx.post(f"{sandbox.base_url}{EXPORTS}", json=_request(), verify=TLS_CONTEXT,
                      trust_env=False).status_code == 401


def test_the_official_client_starts_and_polls_an_export(sandbox: SandboxHandle, warp_api: httpx.Client) -> None:
    create_company(warp_api, name="Acme")
    client = hubspot.Client.create(access_token=sandbox.access_token, host=sandbox.base_url)
    exports = client.crm.exports.public_exports_api
    locator = exports.start(PublicExportRequest(
        export_type="VIEW", format="CSV", export_name="companies", object_type="COMPANY", language="EN",
        object_properties=["name"], export_internal_values_options=["NAMES", "VALUES"]))
    for _ in range(5):
        status = exports.get_status(int(locator.id))
        if status.status == "COMPLETE":
            break
    assert status.status == "COMPLETE" and status.result.startswith(sandbox.base_url)
    assert _rows(_download(status.result).content)[0] == ["hs_object_id", "name"]
