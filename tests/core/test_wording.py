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


def test_every_count_of_the_report_has_a_label_from_the_one_table() -> None:
    import inspect

    from warp_sync_pipeline.core.reconcile.report import report_counts
    from warp_sync_pipeline.core.wording import COUNT_LABELS

    keys = set(__import__("re").findall(r'"([a-z_]+)": ', inspect.getsource(report_counts)))
    assert keys and keys <= set(COUNT_LABELS)
    rendered = render_report_email({"run_id": "r", "dry_run": False, "status": "succeeded", "alerts": [],
                                    "notes": [], "sections": [], "counts": dict.fromkeys(COUNT_LABELS, 1)})
    for label in COUNT_LABELS.values():
        assert label in rendered.text
    assert "hubspot" not in rendered.text.replace("HubSpot", "")  # no lower-case system names in the labels


def test_every_mapped_field_reads_as_its_hubspot_label_and_warp_name() -> None:
    from warp_sync_pipeline.core.fields import SEEDED_RULES
    from warp_sync_pipeline.core.wording import HUBSPOT_LABELS, RESOLUTION_PHRASES, field_label

    for rule in SEEDED_RULES:
        assert rule.hubspot_property in HUBSPOT_LABELS, rule
        assert field_label(rule.warp_field) == f"{HUBSPOT_LABELS[rule.hubspot_property]} ({rule.warp_field})"
    assert field_label("credit_limit") == "WARP credit limit (credit_limit)"
    assert field_label("phone", "phone") == "phone (phone)"  # a property warp-sync has no label for, by name
    from warp_sync_pipeline.core.conflicts import SIDES_AGREE
    from warp_sync_pipeline.core.review import Choice

    assert {c.value for c in Choice} | {SIDES_AGREE} <= set(RESOLUTION_PHRASES)
