"""Headless Chromium against the running Dagster stack on demo data: the nightly reconciliation, launched
through the run queue (the daemon starts it, the code server runs it in a process of its own), emails its
report, and renders in the UI: the asset graph, the latest report with its Markdown, and the run. Screenshots are saved to
test-artifacts/ (git-ignored). Where Chromium is not installed the test skips, saying so."""

import re
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests import ARTIFACTS
from tests.cdp import Page, anchors, chromium_page, find_chromium
from tests.plugins.dagster_stack import DagsterStack
from tests.plugins.sandbox import SandboxHandle
from tests.plugins.smtp import SmtpCatcher
from tests.receiver.review.conftest import receiver_config, serving
from warp_sync_pipeline.core.auth import issue
from warp_sync_pipeline.core.db import make_engine
from warp_sync_pipeline.core.decision import Reason
from warp_sync_pipeline.core.hubspot import HubSpotClient
from warp_sync_pipeline.defs.reconciliation import RECONCILIATION_JOB_NAME
from warp_sync_pipeline.devstack.demo_seed import seed_demo
from webhook_receiver.app import close_app, create_app

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
    [emailed] = stack_mail.wait_for_subject(run_id[:8])
    assert "ALERT" not in emailed["Subject"]

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
    check_the_report_email_and_its_links(dagster_stack, emailed, run_id, stack_database, stack_sandbox, tmp_path)
    for name in ("dagster-asset-graph.png", "dagster-global-lineage.png", "dagster-report-asset.png", "dagster-report-markdown.png",
                 "dagster-report-run.png"):
        assert (ARTIFACTS / name).stat().st_size > 10_000  # a rendered page, not a blank one


UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SUBJECT = re.compile(r"\[warp-sync\] Reconciliation: [\d,]+ needs? review, [\d,]+ changes? written, [\d,]+ errors? "
                     r"- run [0-9a-f]{8}")


@contextmanager
def review_pages(stack: DagsterStack, database_url: str, sandbox: SandboxHandle) -> Iterator[str]:
    """The receiver's review pages on the stack's database, served where the stack's reports link them."""
    app = create_app(receiver_config(database_url, sandbox))
    try:
        with serving(app, stack.review_port) as url:
            yield url
    finally:
        close_app(app)


def person_facing(text: str) -> str:
    """What a person reads: the text without the link targets (ids may travel in URLs)."""
    return re.sub(r'href="[^"]*"', "", text)


def check_the_report_email_and_its_links(stack: DagsterStack, message: EmailMessage, run_id: str,
                                         database_url: str, sandbox: SandboxHandle, tmp_path: Path) -> None:
    """The emailed report, rendered in Chromium: the subject says what needs doing, no UUID or bare reason code
    is shown, and its links open the run in this Dagster, the review queue and a customer's history on the review
    pages, and companies at HubSpot's record URL."""
    assert SUBJECT.fullmatch(message["Subject"]), message["Subject"]
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    for shown in (text, person_facing(html)):
        assert not UUID_TEXT.search(shown.replace(run_id, "")), UUID_TEXT.search(shown.replace(run_id, ""))
        assert not [code for code in Reason if re.search(rf"\b{code.value}\b", shown)]
    (ARTIFACTS / "report-email.txt").write_text(f"Subject: {message['Subject']}\n\n{text}")
    email_file = ARTIFACTS / "report-email.html"
    email_file.write_text(html)

    links = anchors(html)
    run_url = f"{stack.url}/runs/{run_id}"
    review = f"http://127.0.0.1:{stack.review_port}/review/"
    assert (run_id, run_url) in links and ("open the run in Dagster", run_url) in links
    conflicts = [(t, u) for t, u in links if u.startswith(review + "conflicts?customer=")]
    customers = [(t, u) for t, u in links if u.startswith(review + "customers/")]
    companies = [(t, u) for t, u in links if u.startswith("https://")]
    assert conflicts and customers and companies, links
    known = {c["id"] for c in sandbox.control.all_companies()}
    for _, url in companies:
        found = re.fullmatch(r"https://app\.hubspot\.com/contacts/62515/record/0-2/(\d+)", url)
        assert found and found.group(1) in known, url  # HubSpot's record URL, of a company HubSpot has

    engine = make_engine(database_url, poolclass=sa.pool.NullPool)
    token = issue(engine, "sales-ops", ["admin", "resolver"]).token
    engine.dispose()
    with review_pages(stack, database_url, sandbox), chromium_page(CHROMIUM, tmp_path / "mail", timeout_s=60) as page:
        page.navigate(email_file.as_uri())
        page.screenshot(ARTIFACTS / "report-email.png")
        open_the_links(page, token, run_id, run_url, conflicts[0], customers[0])


def open_the_links(page: Page, token: str, run_id: str, run_url: str, conflict: tuple[str, str],
                   customer: tuple[str, str]) -> None:
    page.navigate(run_url)
    page.wait_for_text(run_id[:8], "reconciliation_report")
    ban, conflict_url = conflict
    page.navigate(conflict_url)
    page.type_into("#token", token)  # the review pages ask a person to sign in, then return to the link
    page.click_and_wait("#sign-in")
    queue = page.html()
    assert page.url() == conflict_url and ban in queue and 'id="take-warp-' in queue, page.url()
    assert "Open conflicts <span class=\"muted\">(1)</span>" in queue  # just that customer's conflict
    page.screenshot(ARTIFACTS / "report-link-conflict.png")
    customer_ban, customer_url = customer
    page.navigate(customer_url)
    history = page.html()
    assert customer_ban in history and "Sync history" in history
    page.screenshot(ARTIFACTS / "report-link-customer.png")
