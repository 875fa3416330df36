"""The demo's mailbox pages: the messages the mail catcher saved, listed and readable as web pages."""

from __future__ import annotations

from pathlib import Path

from tests.core.test_email import HOSTILE_NAME, SCRIPT, sample_report
from warp_sync_pipeline.core.email import EmailSettings, build_message, render_report_email
from warp_sync_pipeline.devstack.mailbox import MESSAGE_CSP, create_mailbox_app


def _save(folder: Path, name: str, report: dict) -> None:
    settings = EmailSettings.from_env({"SMTP_HOST": "127.0.0.1", "WARP_REPORT_RECIPIENTS": "ops@example.com"})
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(build_message(render_report_email(report), settings).as_bytes())


def test_the_mailbox_lists_messages_and_shows_each_as_its_html(tmp_path: Path) -> None:
    _save(tmp_path, "20261205T080000-0001.eml", sample_report(run_id="aaaaaaaa-older"))
    _save(tmp_path, "20261205T090000-0002.eml", sample_report(run_id="bbbbbbbb-newer"))
    client = create_mailbox_app(tmp_path).test_client()

    index = client.get("/").get_data(as_text=True)
    assert "2 message(s)" in index
    assert index.index("bbbbbbbb") < index.index("aaaaaaaa")  # newest first
    page = client.get("/message/20261205T090000-0002.eml")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert page.headers["Content-Security-Policy"] == MESSAGE_CSP  # no script runs, nothing is fetched
    html = page.get_data(as_text=True)
    assert "Reconciliation" in html and SCRIPT not in html
    raw = client.get("/raw/20261205T090000-0002.eml")
    assert raw.mimetype == "message/rfc822" and b"Subject:" in raw.data


def test_only_saved_messages_can_be_asked_for(tmp_path: Path) -> None:
    _save(tmp_path, "20261205T080000-0001.eml", sample_report())
    (tmp_path.parent / "secret.txt").write_text("not yours")
    client = create_mailbox_app(tmp_path).test_client()
    for path in ("/message/..%2Fsecret.txt", "/raw/..%2Fsecret.txt", "/message/20261205T080000-0009.eml",
                 "/message/notes.eml"):
        assert client.get(path).status_code == 404, path
    assert HOSTILE_NAME not in client.get("/").get_data(as_text=True)
