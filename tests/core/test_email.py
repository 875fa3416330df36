from __future__ import annotations

import datetime as dt
import ssl

import pytest

from tests.plugins.smtp import SmtpCatcher
from warp_sync_pipeline.core.alerts import Notice, NoticeKind, run_failed
from warp_sync_pipeline.core.email import (
    EmailDeliveryError,
    EmailSettings,
    escape_markdown,
    render_markdown,
    render_report_email,
    send_alert,
    send_report,
    tls_context,
)
from warp_sync_pipeline.core.settings import SettingsError

SCRIPT = "<script>alert('hubspot')</script>"
HOSTILE_NAME = "Evil\r\nBcc: victim@example.test\x00\x1b[2J Corp\u202e"


def sample_report(**overrides: object) -> dict:
    report = {
        "run_id": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
        "dry_run": False,
        "status": "succeeded",
        "counts": {"customers_pulled": 1000, "companies_pulled": 998, "changes_to_hubspot": 2},
        "alerts": [],
        "notes": ["Two rows were skipped because they changed after the pull."],
        "sections": [
            {
                "title": "Changes written to HubSpot",
                "columns": ["BAN", "Field", "Old value", "New value"],
                "rows": [
                    ["ZT-000000001", "name", HOSTILE_NAME, SCRIPT],
                    ["ZT-000000002", "warp_credit_limit", "10000", "12500.00"],
                ],
            },
            {"title": "Duplicates", "columns": ["warp_ban", "Companies"], "rows": []},
        ],
    }
    report.update(overrides)
    return report


def settings_for(server: SmtpCatcher, **overrides: str) -> EmailSettings:
    return EmailSettings.from_env(server.environ(**overrides))


def test_the_report_arrives_with_a_text_and_an_html_part(smtp_server: SmtpCatcher) -> None:
    result = send_report(sample_report(), settings_for(smtp_server))
    assert result.accepted == ("ops@example.test", "admin@example.test") and result.refused == {}

    [message] = smtp_server.wait_for(1)
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(preferencelist=("plain",)).get_content()
    html_part = message.get_body(preferencelist=("html",)).get_content()
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert smtp_server.envelopes[0].rcpt_tos == ["ops@example.test", "admin@example.test"]
    assert message["From"] == "warp-sync@example.test"
    assert message["Auto-Submitted"] == "auto-generated"

    # A summary first, then the tables.
    assert text.index("SUMMARY") < text.index("Customers read from WARP") < text.index("CHANGES WRITTEN TO HUBSPOT")
    assert "1,000" in text and "ZT-000000002" in text
    assert html_part.index("Summary") < html_part.index("Changes written to HubSpot")
    assert "<table" in html_part and "12500.00" in html_part


def test_hubspot_values_are_escaped_in_html_and_markdown(smtp_server: SmtpCatcher) -> None:
    send_report(sample_report(), settings_for(smtp_server))
    [message] = smtp_server.wait_for(1)
    html_part = message.get_body(preferencelist=("html",)).get_content()
    assert "<script>" not in html_part
    assert "&lt;script&gt;alert(&#39;hubspot&#39;)&lt;/script&gt;" in html_part

    markdown = render_markdown(sample_report())
    assert "<script>" not in markdown
    assert "&lt;script&gt;" in markdown
    # Markdown syntax in a value is literal text too: no link, no emphasis, no broken table.
    assert escape_markdown("[click](http://evil.test) *bold* a|b") == (
        "\\[click\\]\\(http\\:\\/\\/evil\\.test\\) \\*bold\\* a\\|b"
    )


def test_control_characters_are_stripped_and_values_stay_out_of_headers(smtp_server: SmtpCatcher) -> None:
    send_report(sample_report(alerts=["Brake: 9% would change"]), settings_for(smtp_server))
    [message] = smtp_server.wait_for(1)
    text = message.get_body(preferencelist=("plain",)).get_content()
    html_part = message.get_body(preferencelist=("html",)).get_content()
    for received in (text, html_part, render_markdown(sample_report())):
        body = received.replace("\r\n", "\n")  # SMTP's own line ends
        assert "\x00" not in body and "\x1b" not in body and "\u202e" not in body and "\r" not in body
    assert "Evil Bcc: victim@example.test[2J Corp" in text

    headers = "\n".join(f"{k}: {v}" for k, v in message.items())
    assert "Evil" not in headers and "victim" not in headers and "script" not in headers
    assert "Bcc" not in message
    assert message["Subject"] == "[warp-sync] Reconciliation: nothing changed - run 0f1e2d3c"


def test_the_subject_takes_no_free_text_from_the_report() -> None:
    report = sample_report(status="<b>pwned</b>", run_id="x\r\nBcc: a@b.test", dry_run=True)
    assert render_report_email(report).subject == "[warp-sync] Reconciliation (dry run): nothing changed"


@pytest.mark.parametrize(("counts", "dry_run", "status", "subject"), [
    ({"manual_conflicts": 2, "changes_planned_to_hubspot": 10, "changes_planned_to_warp": 7,
      "changes_written_to_hubspot": 10, "changes_written_to_warp": 7, "write_errors": 0}, False, "succeeded",
     "[warp-sync] Reconciliation: 2 need review, 17 changes written, 0 errors - run 0f1e2d3c"),
    ({"manual_conflicts": 1, "changes_planned_to_hubspot": 1, "changes_written_to_hubspot": 1, "write_errors": 1},
     False, "succeeded", "[warp-sync] Reconciliation: 1 needs review, 1 change written, 1 error - run 0f1e2d3c"),
    ({"changes_planned_to_warp": 3, "manual_conflicts": 0}, True, "succeeded",
     "[warp-sync] Reconciliation (dry run): 0 need review, 3 changes planned, 0 errors - run 0f1e2d3c"),
    ({"changes_planned_to_hubspot": 900, "changes_written_to_hubspot": 0}, False, "succeeded",
     "[warp-sync] Reconciliation: 0 need review, 900 changes planned, none written, 0 errors - run 0f1e2d3c"),
    ({"manual_conflicts": 0, "write_errors": 0}, False, "succeeded",
     "[warp-sync] Reconciliation: nothing changed - run 0f1e2d3c"),
    ({}, False, "failed", "[warp-sync] Reconciliation FAILED - run 0f1e2d3c"),
])
def test_the_subject_says_what_needs_doing(counts: dict, dry_run: bool, status: str, subject: str) -> None:
    report = sample_report(counts=counts, dry_run=dry_run, status=status)
    assert render_report_email(report).subject == subject


def test_a_dry_run_says_so_and_long_tables_are_cut(smtp_server: SmtpCatcher) -> None:
    rows = [[f"ZT-{i:09d}", "name", "a", "b"] for i in range(250)]
    report = sample_report(
        dry_run=True,
        sections=[{"title": "Changes", "columns": ["BAN", "Field", "Old", "New"], "rows": rows, "total_rows": 1200}],
    )
    send_report(report, settings_for(smtp_server))
    [message] = smtp_server.wait_for(1)
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert "DRY RUN: everything was computed and nothing was changed on either side." in text
    assert "ZT-000000099" in text and "ZT-000000100" not in text
    assert "1,100 more rows" in text
    assert "(dry run)" in message["Subject"]
    assert "1,150 more rows (total 1,200)" in render_markdown(report)


def test_the_failure_alert_names_job_run_and_reason(smtp_server: SmtpCatcher) -> None:
    condition = run_failed("reconciliation_job", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", cancelled=True,
                           reason="Run cancelled: by <operator>\nstep hubspot_writeback: RuntimeError: boom")
    notice = Notice(condition.key, NoticeKind.ALERT, condition.title, condition.detail, dt.datetime.now(dt.UTC))
    send_alert(notice, settings_for(smtp_server))
    [message] = smtp_server.wait_for(1)
    assert message["Subject"] == "[warp-sync] ALERT: reconciliation_job cancelled - run 0f1e2d3c"
    text = message.get_body(preferencelist=("plain",)).get_content()
    html_part = message.get_body(preferencelist=("html",)).get_content()
    assert "Run id:  0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0" in text
    assert "step hubspot_writeback: RuntimeError: boom" in text
    assert "by &lt;operator&gt;" in html_part


# --- settings ---------------------------------------------------------------------------------
def test_settings_read_the_environment_and_name_bad_variables() -> None:
    settings = EmailSettings.from_env(
        {"SMTP_HOST": "mail.example.test", "WARP_REPORT_RECIPIENTS": "a@x.test, b@x.test ,a@x.test"}
    )
    assert settings.port == 587 and settings.starttls is True and settings.timeout_seconds == 10.0
    assert settings.recipients == ("a@x.test", "b@x.test")
    assert settings.configured
    assert not EmailSettings.from_env({}).configured

    bad = [
        ({"WARP_REPORT_RECIPIENTS": "ops@x.test, Ops <ops@x.test>"}, "WARP_REPORT_RECIPIENTS"),
        ({"WARP_REPORT_RECIPIENTS": "a@x.test\r\nBcc: b@x.test"}, "WARP_REPORT_RECIPIENTS"),
        ({"SMTP_PORT": "abc"}, "SMTP_PORT"),
        ({"SMTP_STARTTLS": "maybe"}, "SMTP_STARTTLS"),
        ({"SMTP_USERNAME": "u", "SMTP_PASSWORD": "p", "SMTP_STARTTLS": "false"}, "SMTP_STARTTLS"),
        ({"SMTP_USERNAME": "u"}, "SMTP_PASSWORD"),
        ({"SMTP_TIMEOUT_SECONDS": "0"}, "SMTP_TIMEOUT_SECONDS"),
        ({"SMTP_FROM": "not an address"}, "SMTP_FROM"),
        ({"SMTP_CA_FILE": "/nonexistent/ca.pem"}, "SMTP_CA_FILE"),
    ]
    for environ, variable in bad:
        with pytest.raises(SettingsError) as err:
            EmailSettings.from_env(environ)
        assert err.value.variable == variable, environ


def test_the_password_never_shows_in_repr() -> None:
    settings = EmailSettings.from_env({"SMTP_USERNAME": "u", "SMTP_PASSWORD": "hunter2-secret"})
    assert "hunter2-secret" not in repr(settings)


def test_an_unreachable_server_is_a_clear_error(smtp_server: SmtpCatcher) -> None:
    settings = settings_for(smtp_server, SMTP_PORT="1")  # nothing listens on port 1
    with pytest.raises(EmailDeliveryError) as err:
        send_report(sample_report(), settings)
    assert err.value.code == "SMTP_UNAVAILABLE"
    with pytest.raises(EmailDeliveryError) as err:
        send_report(sample_report(), EmailSettings.from_env({}))
    assert err.value.code == "EMAIL_NOT_CONFIGURED"


# --- TLS --------------------------------------------------------------------------------------
def test_starttls_with_a_trusted_ca_logs_in_and_delivers(smtp_tls_server: SmtpCatcher) -> None:
    send_report(sample_report(), settings_for(smtp_tls_server))
    smtp_tls_server.wait_for(1)
    assert smtp_tls_server.auth_attempts == ["warp-mailer"]


def test_an_untrusted_certificate_fails_before_any_login(smtp_tls_server: SmtpCatcher) -> None:
    # The default context does not trust the test CA: verification must fail, before AUTH.
    settings = settings_for(smtp_tls_server, SMTP_CA_FILE="")
    with pytest.raises(EmailDeliveryError) as err:
        send_report(sample_report(), settings)
    assert err.value.code == "SMTP_TLS_FAILED"
    assert "certificate verify failed" in str(err.value)
    assert "s3cret-pw" not in str(err.value)
    assert smtp_tls_server.auth_attempts == [] and smtp_tls_server.messages == []


def test_the_tls_context_verifies_chain_and_host_name(smtp_tls_server: SmtpCatcher) -> None:
    for settings in (settings_for(smtp_tls_server), settings_for(smtp_tls_server, SMTP_CA_FILE="")):
        context = tls_context(settings)
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname is True
    # A caller-supplied context (trusting the test CA) is used as given.
    context = ssl.create_default_context(cafile=smtp_tls_server.ca_file)
    send_report(sample_report(), settings_for(smtp_tls_server, SMTP_CA_FILE=""), ssl_context=context)
    smtp_tls_server.wait_for(1)


def test_wrong_credentials_are_reported_without_the_password(smtp_tls_server: SmtpCatcher) -> None:
    settings = settings_for(smtp_tls_server, SMTP_PASSWORD="wrong-password")
    with pytest.raises(EmailDeliveryError) as err:
        send_report(sample_report(), settings)
    assert err.value.code == "SMTP_AUTH_FAILED"
    assert "wrong-password" not in str(err.value)
    assert smtp_tls_server.messages == []


def test_starttls_required_but_not_offered(smtp_server: SmtpCatcher) -> None:
    settings = settings_for(smtp_server, SMTP_STARTTLS="true")
    with pytest.raises(EmailDeliveryError) as err:
        send_report(sample_report(), settings)
    assert err.value.code == "SMTP_TLS_UNAVAILABLE"
    assert smtp_server.messages == []
