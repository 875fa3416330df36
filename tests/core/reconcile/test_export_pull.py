"""The full sweep's pull through HubSpot's CRM Exports API gives the list pull's frame, value for value, in a handful
of calls; a file split into a zip of partitions reads the same; a canceled, slow or expired export fails clearly."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from tests.plugins.reconcile import rules_of
from warp_sync_pipeline.core.hubspot import ExportFailed, HubSpotClient
from warp_sync_pipeline.core.reconcile import hubspot_properties, pull_hubspot_companies
from warp_sync_pipeline.core.reconcile.frames import COMPANY_ID, COMPANY_UPDATED_AT
from warp_sync_pipeline.core.reconcile.pull import export_hubspot_companies, read_export
from warp_sync_pipeline.devstack.demo_seed import SeededDemo


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(COMPANY_ID, ignore_index=True)


@pytest.mark.parametrize("partition_rows", [1_000_000, 300])
def test_the_export_pull_gives_the_list_pulls_frame_in_a_handful_of_calls(
    engine: sa.Engine, hubspot_client: HubSpotClient, sandbox, demo: SeededDemo,  # noqa: ANN001
    partition_rows: int,
) -> None:
    created = hubspot_client.batch_create_companies([
        {"name": 'Quote "and" comma, Ltd.\nSecond line', "warp_ban": "ZT-990000001", "warp_services": "voice;data"},
        {"name": "Ünïcödé GmbH", "warp_ban": "ZT-990000002", "warp_credit_limit": "1234.50"},
    ])
    assert [outcome.error for outcome in created] == [None, None]
    merged_id = sandbox.control.rep_merge(created[0].company.id, created[1].company.id)["id"]
    assert hubspot_client.get_company(merged_id, properties=["hs_merged_object_ids"]).properties[
        "hs_merged_object_ids"]
    sandbox.control.configure(export_partition_rows=partition_rows, export_status_polls=1)
    properties = hubspot_properties(rules_of(engine))
    listed = pull_hubspot_companies(hubspot_client, properties)
    sandbox.control.reset_counters()
    messages: list[str] = []
    exported = export_hubspot_companies(hubspot_client, properties, poll_seconds=0.01, timeout_seconds=30,
                                        progress=messages.append)
    assert len(exported) == len(listed) > 1000
    pd.testing.assert_frame_equal(_sorted(exported), _sorted(listed))
    assert sandbox.control.counters()["total"] == 3  # start, PENDING, COMPLETE: whatever the portal's size
    assert messages == ["HubSpot export: pending", "HubSpot export: complete",
                        f"HubSpot export: {len(exported):,} companies"]


def test_a_canceled_slow_or_expired_export_fails_with_its_reason(
    hubspot_client: HubSpotClient, sandbox, tmp_path: Path,  # noqa: ANN001
) -> None:
    sandbox.control.seed([{"name": "Acme"}])
    sandbox.control.configure(export_outcome="canceled", export_status_polls=1)
    with pytest.raises(ExportFailed, match="canceled"):
        hubspot_client.export_companies(["name"], tmp_path / "f", name="x", poll_seconds=0.01, timeout_seconds=5)
    sandbox.control.configure(export_outcome="complete")
    sandbox.control.configure(export_status_polls=1000)
    with pytest.raises(ExportFailed, match="still PROCESSING after"):
        hubspot_client.export_companies(["name"], tmp_path / "f", name="x", poll_seconds=0.05, timeout_seconds=0.3)
    sandbox.control.configure(export_status_polls=0, export_url_ttl_seconds=0.001)
    with pytest.raises(ExportFailed, match="link expired") as expired:
        hubspot_client.export_companies(["name"], tmp_path / "f", name="x", poll_seconds=0.05, timeout_seconds=5)
    assert expired.value.status == 403


GOOD_HEADER = "hs_object_id,hs_lastmodifieddate,name\r\n"


@pytest.mark.parametrize(("content", "words"), [
    (GOOD_HEADER.encode(), "held no companies"),
    ((GOOD_HEADER + "1,2026-12-05T10:00:00Z\r\n").encode(), "does not match its header"),  # a row cut short
    ((GOOD_HEADER + "1,2026-12-05T10:00:00Z,Acme,extra\r\n").encode(), "does not match its header"),
    ((GOOD_HEADER + "1,2026-12-05T10:00:00Z,Caf\xe9\r\n").encode("latin-1"), "UnicodeDecodeError"),
    ((GOOD_HEADER + "1,yesterday,Acme\r\n").encode(), "ValueError"),
    ((GOOD_HEADER + '1,2026-12-05T10:00:00Z,"unclosed\r\n').encode() + b"x" * 140_000, "Error"),
    (b"name\r\nAcme\r\n", "no hs_object_id column"),
    (b"PK\x03\x04 a zip cut short", "broken zip"),
])
def test_a_file_that_cannot_be_read_whole_is_an_export_failure(tmp_path: Path, content: bytes, words: str) -> None:
    """Read errors become ExportFailed, which the sweep answers by reading the list API instead."""
    path = tmp_path / "companies.export"
    path.write_bytes(content)
    with pytest.raises(ExportFailed, match=words):
        read_export(path, ["name"], datetime.now(UTC))


def test_times_with_and_without_milliseconds_and_in_epoch_milliseconds_read_alike(tmp_path: Path) -> None:
    path = tmp_path / "companies.export"
    path.write_text(GOOD_HEADER + "1,2026-12-05T10:00:00.123Z,A\r\n2,2026-12-05T10:00:01Z,B\r\n"
                    "3,1764928802000,\r\n", encoding="utf-8")
    frame = read_export(path, ["name"], datetime.now(UTC), chunk_rows=2)
    assert [t.isoformat() for t in frame[COMPANY_UPDATED_AT]] == [
        "2026-12-05T10:00:00.123000+00:00", "2026-12-05T10:00:01+00:00", "2025-12-05T10:00:02+00:00"]
    assert frame["name"].isna().tolist() == [False, False, True]  # an empty cell is an unset property
