from __future__ import annotations

import pytest
import sqlalchemy as sa

NEW_CUSTOMER = sa.text(
    "INSERT INTO customers (ban, company_name, status) VALUES (:ban, :name, :status) RETURNING id"
)


def test_the_eight_field_rules_are_seeded(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT warp_field, hubspot_property, direction, strategy FROM hubspot_field_mappings")
        ).all()
    assert sorted(rows) == sorted([
        ("ban", "warp_ban", "WARP_TO_HUBSPOT", "WARP_WINS"),
        ("company_name", "name", "BIDIRECTIONAL", "LATEST_WINS"),
        ("status", "warp_status", "WARP_TO_HUBSPOT", "WARP_WINS"),
        ("credit_limit", "warp_credit_limit", "BIDIRECTIONAL", "HUBSPOT_WINS"),
        ("current_balance", "warp_current_balance", "WARP_TO_HUBSPOT", "WARP_WINS"),
        ("services", "warp_services", "WARP_TO_HUBSPOT", "WARP_WINS"),
        ("payment_terms", "warp_payment_terms", "HUBSPOT_TO_WARP", "HUBSPOT_WINS"),
        ("contact_email", "warp_contact_email", "BIDIRECTIONAL", "LATEST_WINS"),
    ])


def test_changing_a_ban_fails_in_the_database(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        customer_id = conn.execute(NEW_CUSTOMER, {"ban": "ZT-000000001", "name": "Acme", "status": "ACTIVE"}).scalar()
    with pytest.raises(sa.exc.IntegrityError, match="ban is immutable"), engine.begin() as conn:
        conn.execute(sa.text("UPDATE customers SET ban = 'ZT-000000002' WHERE id = :id"), {"id": customer_id})
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT ban FROM customers")).scalar() == "ZT-000000001"


def test_updated_at_follows_changes(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        customer_id = conn.execute(NEW_CUSTOMER, {"ban": "ZT-000000003", "name": "Acme", "status": "ACTIVE"}).scalar()
        before = conn.execute(sa.text("SELECT updated_at FROM customers")).scalar()
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE customers SET company_name = 'Acme 2' WHERE id = :id"), {"id": customer_id})
        assert conn.execute(sa.text("SELECT updated_at FROM customers")).scalar() > before


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("status", "'DORMANT'"),
        ("payment_terms", "'NET90'"),
        ("credit_limit", "-1"),
        ("contact_email", "'not-an-email'"),
        ("services", """'{"voice": true}'"""),
        ("services", """'{"voice": true, "messaging": false, "data": false, "fax": true}'"""),
        ("hubspot_link_status", "'lost'"),
        ("ban", "'ZT-12'"),
    ],
)
def test_values_outside_the_value_sets_are_refused(engine: sa.Engine, column: str, value: str) -> None:
    with engine.begin() as conn:
        conn.execute(NEW_CUSTOMER, {"ban": "ZT-000000004", "name": "Acme", "status": "ACTIVE"})
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE customers SET {column} = {value}"))


def test_a_hubspot_company_links_to_one_customer(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for ban in ("ZT-000000005", "ZT-000000006"):
            conn.execute(NEW_CUSTOMER, {"ban": ban, "name": "Acme", "status": "ACTIVE"})
        conn.execute(sa.text("""UPDATE customers SET external_ids = '{"hubspot_company_id": "42"}'
                                WHERE ban = 'ZT-000000005'"""))
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(sa.text("""UPDATE customers SET external_ids = '{"hubspot_company_id": "42"}'
                                WHERE ban = 'ZT-000000006'"""))


@pytest.mark.parametrize(
    ("direction", "strategy"),
    [("WARP_TO_HUBSPOT", "HUBSPOT_WINS"), ("HUBSPOT_TO_WARP", "WARP_WINS"), ("WARP_TO_HUBSPOT", "LATEST_WINS"),
     ("SIDEWAYS", "WARP_WINS"), ("BIDIRECTIONAL", "COIN_FLIP")],
)
def test_a_mapping_row_with_the_wrong_owner_is_refused(engine: sa.Engine, direction: str, strategy: str) -> None:
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE hubspot_field_mappings SET direction = :d, strategy = :s WHERE warp_field = 'status'"),
            {"d": direction, "s": strategy},
        )


def test_a_bidirectional_rule_may_take_any_strategy(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for strategy in ("HUBSPOT_WINS", "WARP_WINS", "LATEST_WINS", "MANUAL"):
            conn.execute(
                sa.text("UPDATE hubspot_field_mappings SET strategy = :s WHERE warp_field = 'company_name'"),
                {"s": strategy},
            )


def test_the_seeded_rules_constant_is_what_the_migration_seeds(engine: sa.Engine) -> None:
    from warp_sync_pipeline.core.fields import SEEDED_RULES, load_rules

    with engine.connect() as conn:
        loaded = load_rules(conn)
    assert {field: loaded[field] for field in loaded} == {rule.warp_field: rule for rule in SEEDED_RULES}
