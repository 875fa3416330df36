"""One table of the words people read for warp-sync's codes (core/wording.py)."""

from __future__ import annotations

from warp_sync_pipeline.core.decision import Reason
from warp_sync_pipeline.core.email import render_markdown, render_report_email
from warp_sync_pipeline.core.wording import REASON_SENTENCES, reason_sentence


def test_every_reason_code_has_a_sentence() -> None:
    assert set(Reason) <= set(REASON_SENTENCES)
    for code, sentence in REASON_SENTENCES.items():
        assert sentence.endswith(".") and "_" not in sentence, code
    assert len(set(REASON_SENTENCES.values())) == len(REASON_SENTENCES)  # no two codes read alike
    assert reason_sentence("ONLY_HUBSPOT_CHANGED") == "Changed in HubSpot only: copied to WARP."
    assert reason_sentence("some free text") == "some free text" and reason_sentence(None) == ""


def test_the_email_and_the_markdown_show_sentences_not_codes() -> None:
    report = {
        "run_id": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "dry_run": False, "status": "succeeded", "counts": {},
        "alerts": [], "notes": [],
        "sections": [{"title": "Changes written to WARP", "columns": ["BAN", "Field", "Reason"],
                      "rows": [["ZT-000000001", "credit_limit", code] for code in Reason]}],
    }
    rendered = render_report_email(report)
    for text in (rendered.text, rendered.html, render_markdown(report)):
        for code in Reason:
            assert code.value not in text, code
    assert "Both sides changed; WARP" in rendered.text and "s change was later." in rendered.text
