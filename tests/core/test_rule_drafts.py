"""Rule drafts on the real database: made from the live rules, checked like them, published at once with the
change audited, kept versions rolled back (and a rollback rolled back)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from warp_sync_pipeline.core.fields import Strategy, load_rules
from warp_sync_pipeline.core.rule_drafts import (
    RuleDraftError,
    create_draft,
    draft_previews,
    get_draft,
    list_drafts,
    live_rules,
    publish_draft,
    remove_rule,
    roll_back,
    rule_versions,
    set_rule,
    validate_draft,
)


def strategies(engine: sa.Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {rule.warp_field: rule.strategy.value for rule in load_rules(conn).values()}


def test_a_draft_starts_as_the_live_rules_and_changes_nothing_live(engine: sa.Engine) -> None:
    before = strategies(engine)
    draft = create_draft(engine, "credit-latest", "ana", note="credit limits edited on both sides")
    with engine.connect() as conn:
        assert draft.rules == tuple(live_rules(conn)) and draft.changes(live_rules(conn)) == []
    set_rule(engine, "credit-latest", "credit_limit", strategy="LATEST_WINS")
    assert strategies(engine) == before  # the live rules are untouched until a publish
    with engine.connect() as conn:
        assert get_draft(conn, "credit-latest").changes(live_rules(conn)) == [
            "credit_limit: strategy HUBSPOT_WINS -> LATEST_WINS"]
    assert validate_draft(engine, "credit-latest")["credit_limit"].strategy is Strategy.LATEST_WINS
    with pytest.raises(RuleDraftError) as taken:
        create_draft(engine, "credit-latest", "bo")
    assert taken.value.code == "DRAFT_EXISTS"
    assert [d.name for d in list_drafts(engine)] == ["credit-latest"]


@pytest.mark.parametrize(("change", "code", "words"), [
    ({"warp_field": "status", "strategy": "HUBSPOT_WINS"}, "INVALID_FIELD_MAPPING", "won by the side it flows from"),
    ({"warp_field": "credit_limit", "hubspot_property": "warp_status"}, "INVALID_FIELD_MAPPING",
     "another field of the draft maps to that HubSpot property"),
    ({"warp_field": "phone_number"}, "VALIDATION_ERROR", "give its hubspot_property, direction, strategy, field_type"),
    ({"warp_field": "credit_limit", "strategy": "SOMETIMES"}, "VALIDATION_ERROR", "SOMETIMES"),
])
def test_a_rule_that_cannot_work_is_refused_with_its_reason(engine: sa.Engine, change: dict[str, str], code: str,
                                                            words: str) -> None:
    create_draft(engine, "bad", "ana")
    field = change.pop("warp_field")
    with pytest.raises(RuleDraftError) as refused:
        set_rule(engine, "bad", field, **change)
    assert refused.value.code == code and words in refused.value.message


def test_a_draft_the_live_rules_could_not_hold_is_never_published(engine: sa.Engine) -> None:
    create_draft(engine, "ghost", "ana")
    set_rule(engine, "ghost", "no_such_column", hubspot_property="warp_ghost", direction="BIDIRECTIONAL",
             strategy="MANUAL", field_type="string")
    with pytest.raises(RuleDraftError) as refused:
        publish_draft(engine, "ghost", "ana")
    assert "'no_such_column' is not a column of customers" in refused.value.message
    with pytest.raises(RuleDraftError, match="ban cannot be unmapped"):
        remove_rule(engine, "ghost", "ban")
    assert "no_such_column" not in strategies(engine)


def test_publishing_switches_every_rule_at_once_audited_and_kept_for_a_rollback(engine: sa.Engine) -> None:
    before = strategies(engine)
    create_draft(engine, "two-way", "ana")
    set_rule(engine, "two-way", "credit_limit", strategy="LATEST_WINS")
    set_rule(engine, "two-way", "contact_email", strategy="MANUAL")
    remove_rule(engine, "two-way", "current_balance")
    # A property moved from one field to another is one publish (the uniqueness is checked at commit).
    set_rule(engine, "two-way", "status", hubspot_property="warp_status_old")
    published = publish_draft(engine, "two-way", "ana")
    after = strategies(engine)
    assert after["credit_limit"] == "LATEST_WINS" and after["contact_email"] == "MANUAL"
    assert "current_balance" not in after and len(published.changes) == 4
    with engine.connect() as conn:
        audit = conn.execute(sa.text(
            "SELECT warp_field, action, actor FROM hubspot_sync_log WHERE trigger = 'mapping' ORDER BY id")).all()
        assert get_draft(conn, "two-way", any_status=True).status == "published"
    assert {(row.warp_field, row.action, row.actor) for row in audit} == {
        ("credit_limit", "MAPPING_UPDATE", "ana"), ("contact_email", "MAPPING_UPDATE", "ana"),
        ("current_balance", "MAPPING_DELETE", "ana"), ("status", "MAPPING_UPDATE", "ana")}

    undone = roll_back(engine, "bo")
    assert strategies(engine) == before and undone.version_id > published.version_id
    [latest, first] = rule_versions(engine)
    assert (latest.rolled_back_to, first.draft_name) == (published.version_id, "two-way")
    roll_back(engine, "bo")  # a rollback is itself kept: rolling it back publishes the draft's rules again
    assert strategies(engine) == after


def test_a_reader_sees_the_old_rules_or_the_new_never_a_mix(engine: sa.Engine) -> None:
    create_draft(engine, "all-manual", "ana")
    for field in ("company_name", "credit_limit", "contact_email"):
        set_rule(engine, "all-manual", field, strategy="MANUAL")
    before = strategies(engine)
    with engine.connect() as reader:
        reader.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        assert {k: v.strategy.value for k, v in load_rules(reader).items()} == before
        publish_draft(engine, "all-manual", "ana")  # commits while the reader's transaction is open
        assert {k: v.strategy.value for k, v in load_rules(reader).items()} == before
    assert {strategies(engine)[f] for f in ("company_name", "credit_limit", "contact_email")} == {"MANUAL"}
    assert draft_previews(engine, "all-manual") == []


def test_publishing_checks_each_field_against_its_hubspot_property(engine: sa.Engine, warp_hubspot) -> None:  # noqa: ANN001
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE customers ADD COLUMN is_reseller boolean"))
    create_draft(engine, "resellers", "ana")
    set_rule(engine, "resellers", "is_reseller", hubspot_property="warp_is_reseller", direction="WARP_TO_HUBSPOT",
             strategy="WARP_WINS", field_type="boolean")
    with pytest.raises(RuleDraftError) as missing:
        publish_draft(engine, "resellers", "ana", warp_hubspot)
    assert missing.value.code == "HUBSPOT_PROPERTY_MISMATCH"
    assert "HubSpot has no property warp_is_reseller (`warp-sync hubspot setup` creates it)" in missing.value.message
    # A property of another type cannot hold a boolean: refused, naming both types.
    warp_hubspot.create_property({"name": "warp_is_reseller", "label": "Reseller", "type": "string",
                                  "fieldType": "text", "groupName": "companyinformation"})
    with pytest.raises(RuleDraftError) as mistyped:
        publish_draft(engine, "resellers", "ana", warp_hubspot)
    assert "is 'string', a boolean field needs 'bool'" in mistyped.value.message
    assert "is_reseller" not in strategies(engine)  # nothing was published
