"""Headless Chromium against a running Dagster webserver on demo data: the asset graph and the latest
reconciliation report render, with their descriptions and checks. Screenshots are saved to
test-artifacts/ (git-ignored). Where Chromium is not installed the test skips, saying so."""

from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from tests.cdp import chromium_page, find_chromium
from tests.plugins.dagster_ui import DagsterWebserver
from warp_sync_pipeline.core.hubspot import HubSpotClient
from warp_sync_pipeline.core.reconcile.demo_seed import seed_demo
from warp_sync_pipeline.defs.reconciliation import RECONCILIATION_ASSETS, ReconciliationSettings
from warp_sync_pipeline.resources.database import DatabaseResource
from warp_sync_pipeline.resources.email import EmailResource
from warp_sync_pipeline.resources.hubspot import HubSpotResource
from warp_sync_pipeline.resources.parquet_io import ParquetIOManager

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = find_chromium()

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (Debian package `chromium`, which .ci/run installs): browser test skipped",
)


def test_the_asset_graph_and_the_latest_report_render_in_the_dagster_ui(
    dagster_webserver: DagsterWebserver, database_url: str, engine: sa.Engine, sandbox,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    assert CHROMIUM is not None
    with HubSpotClient(sandbox.base_url, sandbox.access_token, time_budget_s=20) as client:
        seed_demo(engine, client=client, seed_companies=sandbox.control.seed, customers=200)
    for key, value in dagster_webserver.environment.items():
        monkeypatch.setenv(key, value)
    resources = {
        "db": DatabaseResource(url=database_url),
        "hubspot": HubSpotResource(base_url=sandbox.base_url, access_token=sandbox.access_token,
                                   time_budget_seconds=20, request_timeout_seconds=5),
        "email": EmailResource(),
        "parquet_io_manager": ParquetIOManager(base_dir=str(tmp_path / "frames")),
        "reconciliation": ReconciliationSettings(allow_mass_write=True),
    }
    # The run goes into the webserver's own instance (the project's dagster.yaml, dagster-postgres).
    with dg.DagsterInstance.get() as instance:
        result = dg.materialize(RECONCILIATION_ASSETS, resources=resources, instance=instance,
                                tags={"warp/flow": "reconciliation"}, raise_on_error=False)
    assert result.success

    with chromium_page(CHROMIUM, tmp_path / "profile", timeout_s=60) as page:
        # The lineage graph shortens long names on its nodes; the short ones read in full.
        page.navigate(f"{dagster_webserver.url}/locations/warp_sync_pipeline/asset-groups/reconciliation")
        graph = page.wait_for_text("Asset Group", "warp_writeback", "warp_customers")
        assert "Join the Dagster community" not in graph  # nux is off in dagster.yaml
        page.screenshot(ARTIFACTS / "dagster-asset-graph.png")

        page.navigate(f"{dagster_webserver.url}/assets/reconciliation_report")
        page.wait_for_text("reconciliation_report", "Counts, the changes made each way", "[Show Markdown]")
        page.screenshot(ARTIFACTS / "dagster-report-asset.png")
        page.click_text("[Show Markdown]")
        report = page.wait_for_text("Reconciliation report: succeeded", "Summary")
        page.screenshot(ARTIFACTS / "dagster-report-markdown.png")
        assert "<table" in report  # the report's tables render as tables

        page.navigate(f"{dagster_webserver.url}/runs/{result.run_id}")
        html = page.wait_for_text(result.run_id[:8], "reconciliation_report")
        page.screenshot(ARTIFACTS / "dagster-report-run.png")
    assert "Failure" not in html or "RUN_FAILURE" not in html
    for name in ("dagster-asset-graph.png", "dagster-report-asset.png", "dagster-report-markdown.png",
                 "dagster-report-run.png"):
        assert (ARTIFACTS / name).stat().st_size > 10_000  # a rendered page, not a blank one
