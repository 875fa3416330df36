"""The rule drafts on the review pages: an admin reads the live rules, a draft's changes and its preview, publishes
it and puts kept rules back; a resolver cannot."""

from __future__ import annotations

import sqlalchemy as sa

from tests.receiver.review.conftest import csrf_from, sign_in
from warp_sync_pipeline.core.reconcile.preview import RulePreview
from warp_sync_pipeline.core.rule_drafts import create_draft, record_preview, set_rule


def strategy(engine: sa.Engine, field: str) -> str:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT strategy FROM hubspot_field_mappings WHERE warp_field = :f"),
                            {"f": field}).scalar_one()


def preview_of(name: str, customer_id: str) -> RulePreview:
    """A stored preview as the rule_draft_preview asset keeps it (tests/defs make real ones)."""
    counts = {"to_hubspot": 2, "to_warp": 0, "conflicts": 3, "invalid": 0}
    return RulePreview(
        draft_name=name, changed_rules=["contact_email: ..."],
        fields={"contact_email": {"live": counts, "draft": {**counts, "to_hubspot": 5, "conflicts": 0}}},
        groups=[], records_total=1,
        records=[{"customer_id": customer_id, "company_id": "9001", "ban": "ZT-300000001", "field": "contact_email",
                  "live": "OPEN_CONFLICT", "live_reason": "CONFLICT_MANUAL_REVIEW", "live_value": None,
                  "draft": "WRITE_TO_HUBSPOT", "draft_reason": "CONFLICT_WARP_WINS",
                  "draft_value": "billing@acme.example"}])


def test_an_admin_reads_a_draft_and_its_preview_then_publishes_and_rolls_back(client, tokens, engine,
                                                                               make_conflict) -> None:
    made = make_conflict()
    create_draft(engine, "email-warp-wins", "ana", note="sales asked")
    set_rule(engine, "email-warp-wins", "contact_email", strategy="WARP_WINS")
    record_preview(engine, "email-warp-wins", "run-5e1f", preview_of("email-warp-wins", str(made.customer_id)))
    sign_in(client, tokens.admin)

    listing = client.get("/review/rules").get_data(as_text=True)
    assert 'href="/review/rules/email-warp-wins"' in listing and "sales asked" in listing
    assert "contact_email: strategy MANUAL -&gt; WARP_WINS" in listing
    page = client.get("/review/rules/email-warp-wins").get_data(as_text=True)
    assert "3 → <strong>0</strong>" in page and "2 → <strong>5</strong>" in page  # conflicts and writes, live → draft
    assert f'href="/review/customers/{made.customer_id}">ZT-300000001</a>' in page
    assert "a conflict for a person" in page and "written to HubSpot: <span class=\"value\">billing@acme.example" in page
    assert "Both sides changed; the field&#39;s rule says WARP wins." in page

    published = client.post("/review/rules/email-warp-wins/publish", data={"csrf_token": csrf_from(page)})
    assert published.status_code == 303 and strategy(engine, "contact_email") == "WARP_WINS"
    listing = client.get("/review/rules").get_data(as_text=True)
    assert "Draft email-warp-wins published" in listing and 'id="rollback-1"' in listing
    with engine.connect() as conn:
        actor = conn.execute(sa.text("SELECT actor FROM hubspot_sync_log WHERE trigger = 'mapping' "
                                     "ORDER BY id DESC LIMIT 1")).scalar_one()
    assert actor == "carol"  # the audit names who published

    rolled = client.post("/review/rules/rollback/1", data={"csrf_token": csrf_from(listing)})
    assert rolled.status_code == 303 and strategy(engine, "contact_email") == "MANUAL"


def test_a_publish_without_a_csrf_token_or_by_a_resolver_changes_nothing(client, tokens, engine) -> None:
    before = strategy(engine, "credit_limit")
    create_draft(engine, "quiet", "ana")
    set_rule(engine, "quiet", "credit_limit", strategy="LATEST_WINS")
    sign_in(client, tokens.admin)
    assert client.post("/review/rules/quiet/publish", data={}).status_code == 400
    resolver = client.application.test_client()
    sign_in(resolver, tokens.resolver)
    assert resolver.get("/review/rules").status_code == 403
    assert strategy(engine, "credit_limit") == before != "LATEST_WINS"
