"""Field rules loaded from the mapping table, name translation, and the audit of mapping changes."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from warp_sync_pipeline.core.audit import name_writer
from warp_sync_pipeline.core.fields import (
    Direction,
    FieldRule,
    FieldRuleError,
    FieldRules,
    Strategy,
    load_rules,
)
from warp_sync_pipeline.core.normalize import FIELD_SPECS


def test_the_seeded_rules_load_typed(rules: FieldRules) -> None:
    assert len(rules) == 8
    assert rules["company_name"] == FieldRule("company_name", "name", Direction.BIDIRECTIONAL, Strategy.LATEST_WINS,
                                              declared=FIELD_SPECS["company_name"])
    # The types the table declares (sql/021) are the seeded fields' specs exactly.
    assert {name: rule.spec for name, rule in rules.items()} == dict(FIELD_SPECS)
    assert rules["payment_terms"].direction is Direction.HUBSPOT_TO_WARP
    assert rules["credit_limit"].spec.minimum == 0


def test_names_translate_both_ways(rules: FieldRules) -> None:
    assert rules.hubspot_property("credit_limit") == "warp_credit_limit"
    assert rules.warp_field("warp_credit_limit") == "credit_limit"
    assert rules.for_property("domain") is None
    with pytest.raises(KeyError, match="not mapped"):
        rules.warp_field("domain")
    # Callers report HubSpot's per-property failures in WARP's names.
    assert rules.to_warp_names({"warp_credit_limit": "INVALID_INTEGER", "domain": "X"}) == {
        "credit_limit": "INVALID_INTEGER",
        "domain": "X",
    }
    assert rules.to_hubspot_names({"company_name": "Acme"}) == {"name": "Acme"}


@pytest.mark.parametrize(
    ("warp_field", "problem"),
    [("credit_score", "is not a column of customers"), ("external_ids", "is not a field warp-sync can sync")],
)
def test_a_row_naming_no_usable_column_is_refused(engine: sa.Engine, warp_field: str, problem: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO hubspot_field_mappings (warp_field, hubspot_property, direction, strategy, field_type) "
                "VALUES (:field, 'warp_extra', 'BIDIRECTIONAL', 'MANUAL', 'string')"
            ),
            {"field": warp_field},
        )
    with engine.connect() as conn, pytest.raises(FieldRuleError) as caught:
        load_rules(conn)
    assert caught.value.code == "INVALID_FIELD_MAPPING"
    assert caught.value.problems == [f"{warp_field!r} {problem}"]


@pytest.mark.parametrize(("column", "field_type", "extra", "problem"), [
    ("employees integer", "string", "", "a string field cannot live in an integer column (it needs character "
                                        "varying or text)"),
    ("employees text", "integer", "", "an integer field cannot live in a text column"),
    ("unit_price numeric(12, 4)", "amount", ", scale = 2", "the row says 2 decimals, the column keeps 4"),
    ("segment text", "enumeration", "", "an enumeration field needs its options"),
])
def test_a_declared_type_the_column_cannot_hold_is_refused(engine: sa.Engine, column: str, field_type: str,
                                                           extra: str, problem: str) -> None:
    name = column.split()[0]
    with engine.begin() as conn:
        conn.execute(sa.text(f"ALTER TABLE customers ADD COLUMN {column}"))
        # The table's own checks refuse an enumeration without options: the column check comes first here.
        conn.execute(sa.text("ALTER TABLE hubspot_field_mappings DROP CONSTRAINT hubspot_field_mappings_options_given"))
        conn.execute(sa.text(
            "INSERT INTO hubspot_field_mappings (warp_field, hubspot_property, direction, strategy, field_type, scale) "
            "VALUES (:field, 'warp_extra', 'BIDIRECTIONAL', 'MANUAL', :type, "
            "CASE WHEN :type = 'amount' THEN 4 END)"), {"field": name, "type": field_type})
        if extra:
            conn.execute(sa.text(f"UPDATE hubspot_field_mappings SET {extra.lstrip(', ')} WHERE warp_field = :f"),
                         {"f": name})
    with engine.connect() as conn, pytest.raises(FieldRuleError) as caught:
        load_rules(conn)
    assert any(problem in p for p in caught.value.problems), caught.value.problems


def test_a_rule_edit_is_picked_up_without_a_release(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE hubspot_field_mappings SET strategy = 'MANUAL' WHERE warp_field = 'credit_limit'"))
    with engine.connect() as conn:
        assert load_rules(conn)["credit_limit"].strategy is Strategy.MANUAL


def _mapping_log(engine: sa.Engine) -> list[sa.Row]:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT warp_field, hubspot_property, trigger, old_value, new_value, reason, outcome, actor, "
                "dagster_run_id FROM hubspot_sync_log WHERE trigger = 'mapping' ORDER BY id"
            )
        ).all()


def test_mapping_changes_are_audited(engine: sa.Engine) -> None:
    assert _mapping_log(engine) == []  # the seed predates the trigger
    with engine.begin() as conn:
        name_writer(conn, actor="data-team:alice", run_id="run-42")
        conn.execute(sa.text("UPDATE hubspot_field_mappings SET strategy = 'MANUAL' WHERE warp_field = 'credit_limit'"))
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE hubspot_field_mappings SET updated_at = now()"))  # no rule changed
        conn.execute(sa.text("DELETE FROM hubspot_field_mappings WHERE warp_field = 'contact_email'"))
    rows = _mapping_log(engine)
    assert [(r.warp_field, r.reason, r.outcome) for r in rows] == [
        ("credit_limit", "MAPPING_UPDATE", "applied"),
        ("contact_email", "MAPPING_DELETE", "applied"),
    ]
    assert '"strategy": "HUBSPOT_WINS"' in rows[0].old_value and '"strategy": "MANUAL"' in rows[0].new_value
    assert (rows[0].actor, rows[0].dagster_run_id) == ("data-team:alice", "run-42")
    assert rows[1].actor  # the database role when nobody named themselves
    assert rows[1].new_value is None


def test_an_audited_change_that_rolls_back_leaves_no_log(engine: sa.Engine) -> None:
    with pytest.raises(RuntimeError), engine.begin() as conn:
        conn.execute(sa.text("UPDATE hubspot_field_mappings SET strategy = 'MANUAL' WHERE warp_field = 'credit_limit'"))
        raise RuntimeError("abort")
    assert _mapping_log(engine) == []
