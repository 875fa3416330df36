"""Headless Chromium against the running Dagster stack on demo data: the nightly reconciliation, launched
through the run queue (the daemon starts it, the code server runs it in a process of its own), emails its
report, and renders in the UI: the asset graph, the latest report with its Markdown, and the run. Screenshots are saved to
test-artifacts/ (git-ignored). Where Chromium is not installed the test skips, saying so."""

from pathlib import Path

import pytest
import sqlalchemy as sa

from tests import ARTIFACTS
from tests.cdp import chromium_page, find_chromium
from tests.plugins.dagster_stack import DagsterStack
from tests.plugins.sandbox import SandboxHandle
from tests.plugins.smtp import SmtpCatcher
from warp_sync_pipeline.core.db import make_engine
from warp_sync_pipeline.core.hubspot import HubSpotClient
from warp_sync_pipeline.defs.reconciliation import RECONCILIATION_JOB_NAME
from warp_sync_pipeline.devstack.demo_seed import seed_demo

CHROMIUM = find_chromium()

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (Debian package `chromium`, which .ci/run installs): browser test skipped",
)


def test_the_asset_graph_and_the_latest_report_render_in_the_dagster_ui(
    dagster_stack: DagsterStack, stack_database: str, stack_mail: SmtpCatcher, stack_sandbox: SandboxHandle,
    tmp_path: Path,
) -> None:
    assert CHROMIUM is not None
    engine = make_engine(stack_database, poolclass=sa.pool.NullPool)
    with HubSpotClient(stack_sandbox.base_url, stack_sandbox.access_token, time_budget_s=20) as client:
        seed_demo(engine, client=client, seed_companies=stack_sandbox.control.seed, customers=200)
    engine.dispose()
    run_id = dagster_stack.launch(RECONCILIATION_JOB_NAME, run_config={
        "resources": {"reconciliation": {"config": {"allow_mass_write": True}}}})
    assert dagster_stack.wait_for_run(run_id) == "SUCCESS", dagster_stack.log_tails()
    # The run's own process sent the report (the shared stack may also have alerted about other tests' runs).
    [report] = stack_mail.wait_for_subject(run_id[:8])
    assert "ALERT" not in report["Subject"]

    with chromium_page(CHROMIUM, tmp_path / "profile", timeout_s=60) as page:
        # The lineage graph shortens long names on its nodes; the short ones read in full.
        page.navigate(f"{dagster_stack.url}/locations/warp_sync_pipeline/asset-groups/reconciliation")
        graph = page.wait_for_text("Asset Group", "warp_writeback", "warp_customers")
        assert "Join the Dagster community" not in graph  # nux is off in dagster.yaml
        page.screenshot(ARTIFACTS / "dagster-asset-graph.png")

        # The global lineage: the three flows meet at the two systems' external assets.
        page.navigate(f"{dagster_stack.url}/asset-groups")
        page.wait_for_text("systems", "outbound", "inbound", "reconciliation")
        page.screenshot(ARTIFACTS / "dagster-global-lineage.png")

        page.navigate(f"{dagster_stack.url}/assets/reconciliation_report")
        page.wait_for_text("reconciliation_report", "Counts, the changes made each way", "[Show Markdown]")
        page.screenshot(ARTIFACTS / "dagster-report-asset.png")
        page.click_text("[Show Markdown]")
        report = page.wait_for_text("Reconciliation report: succeeded", "Summary")
        page.screenshot(ARTIFACTS / "dagster-report-markdown.png")
        assert "<table" in report  # the report's tables render as tables

        page.navigate(f"{dagster_stack.url}/runs/{run_id}")
        html = page.wait_for_text(run_id[:8], "reconciliation_report")
        page.screenshot(ARTIFACTS / "dagster-report-run.png")
    assert "RUN_FAILURE" not in html
    for name in ("dagster-asset-graph.png", "dagster-global-lineage.png", "dagster-report-asset.png", "dagster-report-markdown.png",
                 "dagster-report-run.png"):
        assert (ARTIFACTS / name).stat().st_size > 10_000  # a rendered page, not a blank one
