"""The emailed report read by a person: links to the run, the review queue, each customer's history and each
company in HubSpot; fields by their labels; the last runs' trend; long tables attached whole as CSV."""

from __future__ import annotations

import csv
import gzip
import io
from datetime import UTC, datetime, timedelta

from tests.cdp import anchors as all_anchors
from tests.plugins.smtp import SmtpCatcher
from warp_sync_pipeline.core.email import EmailSettings, render_markdown, render_report_email, send_report
from warp_sync_pipeline.core.reconcile.results import Report, ReportSection, TrendPoint
from warp_sync_pipeline.core.report_tables import report_attachments, safe_cell, section_csv
from warp_sync_pipeline.core.web_links import HubSpotAccount, WebLinks

RUN = "63c63536-0c3f-4bd5-9a3c-1f2e3d4c5b6a"
CUSTOMER = "0b7f0c4e-4a38-4d55-9a53-7c1f2b0c9d11"
LINKS = WebLinks(dagster_ui_url="https://dagster.example.org", review_url="https://warp.example.org",
                 hubspot=HubSpotAccount(62515, "app-eu1.hubspot.com"))


def anchors(html: str) -> dict[str, str]:
    return dict(all_anchors(html))


def changes(rows: int) -> ReportSection:
    return ReportSection(
        title="Changes written to HubSpot", columns=["BAN", "Company name", "Field", "New value", "Reason"],
        rows=[[f"ZT-{i:09d}", f"Acme {i}", "credit_limit", "=HYPERLINK(\"http://evil\")" if i == 1 else "12500.00",
               "ONLY_WARP_CHANGED"] for i in range(rows)],
        total_rows=rows, personal=["Company name", "New value"],
        link_columns={"BAN": "customer", "Company name": "company"},
        keys=[{"customer": CUSTOMER, "company": str(9000 + i), "property": "warp_credit_limit"} for i in range(rows)])


def report(rows: int = 2, **counts: int) -> Report:
    conflicts = ReportSection(
        title="MANUAL conflicts for review", columns=["BAN", "Field", "WARP value", "HubSpot value", "Reason"],
        rows=[["ZT-000000042", "payment_terms", "NET30", "NET45", "CONFLICT_MANUAL_REVIEW"]], total_rows=1,
        link_columns={"BAN": "conflicts"}, keys=[{"ban": "ZT-000000042", "field": "payment_terms",
                                                   "customer": CUSTOMER, "property": "warp_payment_terms"}])
    return Report(run_id=RUN, dry_run=False, status="succeeded",
                  counts={"manual_conflicts": 1, "changes_written_to_hubspot": rows, **counts}, alerts=[], notes=[],
                  sections=[changes(rows), conflicts])


def test_the_email_links_the_run_the_review_queue_customers_and_companies() -> None:
    html = render_report_email(report(), links=LINKS).html
    links = anchors(html)
    assert links[RUN] == f"https://dagster.example.org/runs/{RUN}"
    assert links["open the run in Dagster"] == f"https://dagster.example.org/runs/{RUN}"
    assert links["Open the review queue"] == "https://warp.example.org/review/conflicts"
    assert links["ZT-000000000"] == f"https://warp.example.org/review/customers/{CUSTOMER}"
    assert links["Acme 0"] == "https://app-eu1.hubspot.com/contacts/62515/record/0-2/9000"
    assert links["ZT-000000042"] == "https://warp.example.org/review/conflicts?customer=ZT-000000042&field=payment_terms"
    assert CUSTOMER not in html.replace(f"/review/customers/{CUSTOMER}", "")  # an id only inside a link target


def test_without_the_bases_nothing_is_linked() -> None:
    rendered = render_report_email(report())
    assert anchors(rendered.html) == {} and "https://" not in rendered.text
    assert "1 conflict needs a person (see the review pages)" in rendered.text


def test_fields_read_as_the_hubspot_label_and_the_warp_name() -> None:
    rendered = render_report_email(report(), links=LINKS)
    assert "WARP credit limit (credit_limit)" in rendered.text
    assert "WARP payment terms (payment_terms)" in rendered.html


def test_dagster_markdown_links_bans_but_holds_no_names() -> None:
    markdown = render_markdown(report(), without_personal=True, links=LINKS)
    assert f"[ZT\\-000000000](<https://warp.example.org/review/customers/{CUSTOMER}>)" in markdown
    assert f"(<https://dagster.example.org/runs/{RUN}>)" in markdown
    assert "Acme" not in markdown and "12500" not in markdown


def test_the_trend_shows_the_last_runs_as_bars_and_numbers() -> None:
    start = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
    trend = [TrendPoint(f"run{i:05d}-aaaa", start + timedelta(days=i), "succeeded", False, drift=10 * i,
                        conflicts_opened=i % 3, errors=0) for i in range(1, 30)]
    trend.append(TrendPoint("failedrun-bbbb", start + timedelta(days=30), "failed", False, None, None, None))
    rendered = render_report_email(report(), links=LINKS, trend=trend)
    assert "THE LAST 30 RUNS" in rendered.text
    assert "2026-11-30 02:00 run00029 " in rendered.text and "290" in rendered.text
    assert "(failed)" in rendered.text
    # The largest drift has the full bar; others in proportion; a failed run has none.
    assert 'width="120" height="10" bgcolor="#3e7bfa"' in rendered.html
    assert 'width="4" height="10" bgcolor="#3e7bfa"' in rendered.html  # 10 of 290
    assert "<img" not in rendered.html
    assert anchors(rendered.html)["2026-11-30 02:00"] == "https://dagster.example.org/runs/run00029-aaaa"


def test_a_long_table_is_attached_whole_as_csv(smtp_server: SmtpCatcher) -> None:
    whole = report(rows=250)
    rendered = render_report_email(whole, links=LINKS)
    assert "150 more rows, not shown here. The whole table is attached: changes-written-to-hubspot.csv." in \
        rendered.text
    settings = EmailSettings.from_env(smtp_server.environ())
    send_report(whole, settings, links=LINKS)
    [message] = smtp_server.wait_for(1)
    assert message.get_content_type() == "multipart/mixed"
    [attached] = list(message.iter_attachments())
    assert attached.get_filename() == "changes-written-to-hubspot.csv"
    assert attached.get_content_type() == "text/csv" and attached.get_content_charset() == "utf-8"
    rows = list(csv.reader(io.StringIO(attached.get_content().removeprefix("\ufeff"))))
    assert rows[0] == ["BAN", "Company name", "Field", "New value", "Reason", "customer_id", "hubspot_company_id",
                       "hubspot_property"]
    assert len(rows) == 251
    # The codes and names stay in the data; a formula from HubSpot is shown, never run.
    assert rows[1][2:5] == ["credit_limit", "12500.00", "ONLY_WARP_CHANGED"]
    assert rows[2][3] == "'=HYPERLINK(\"http://evil\")"


def test_a_huge_table_is_gzipped_and_cut_to_fit() -> None:
    whole = report(rows=40_000)
    [attached] = report_attachments(whole, 100)
    assert attached.filename.endswith(".csv.gz") and attached.complete
    assert gzip.decompress(attached.content).decode("utf-8-sig").count("\r\n") == 40_001
    [cut] = report_attachments(whole, 100, max_bytes=len(attached.content) // 2)
    assert 100 <= cut.rows < 40_000 and not cut.complete and len(cut.content) <= len(attached.content) // 2
    rendered = render_report_email(whole)
    assert "more rows, not shown here. The whole table is attached: changes-written-to-hubspot.csv.gz." in rendered.text


def test_csv_cells_never_start_a_formula() -> None:
    assert [safe_cell(v) for v in ("=1+1", "+1", "@SUM(A1)", "-3.5", "-x", None, "plain")] == \
        ["'=1+1", "+1", "'@SUM(A1)", "-3.5", "'-x", "", "plain"]
    assert section_csv(changes(1)).startswith(b"\xef\xbb\xbfBAN,")
