"""Echo matching against the write ledger (DESIGN.md, "Loops and echoes")."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from warp_sync_pipeline.core.fields import FieldRules
from warp_sync_pipeline.core.hubspot import AuthFailed, HubSpotClient
from warp_sync_pipeline.core.ledger import (
    LedgeredUpdate,
    LedgerWrite,
    bind_company,
    match_echo,
    purge_expired,
    record_write,
    record_writes,
    update_companies_ledger_first,
    void_writes,
)

COMPANY = "40000000001"


def _db_now(engine: sa.Engine):  # noqa: ANN202
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one()


def _status(engine: sa.Engine) -> list[tuple[int, str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text("SELECT id, status FROM hubspot_write_ledger ORDER BY id"))]


def test_our_write_is_absorbed_once(engine: sa.Engine, rules: FieldRules) -> None:
    rule = rules["credit_limit"]
    entry = record_write(engine, rule, Decimal("10000.00"), company_id=COMPANY)
    occurred = _db_now(engine)
    # HubSpot echoes the value as it stores it ("10000"), from an integration.
    assert match_echo(engine, company_id=COMPANY, rule=rule, value="10000", occurred_at=occurred,
                      source="INTEGRATION") == entry
    # A second identical event (a redelivery, or a person typing the same value) is not absorbed again.
    assert match_echo(engine, company_id=COMPANY, rule=rule, value="10000", occurred_at=occurred) is None
    assert _status(engine) == [(entry, "matched")]


def test_a_persons_change_away_and_back_is_not_an_echo(engine: sa.Engine, rules: FieldRules) -> None:
    rule = rules["company_name"]
    record_write(engine, rule, "Acme", company_id=COMPANY)
    echo_at = _db_now(engine)
    assert match_echo(engine, company_id=COMPANY, rule=rule, value="Acme", occurred_at=echo_at) is not None
    # A rep then changes X -> Z -> X.
    for value in ("ACME Corp", "Acme"):
        later = _db_now(engine)
        assert match_echo(engine, company_id=COMPANY, rule=rule, value=value, occurred_at=later) is None
        assert match_echo(engine, company_id=COMPANY, rule=rule, value=value, occurred_at=later,
                          source="CRM_UI") is None


def test_a_person_setting_our_value_before_the_echo_arrives_is_not_taken_for_it(
    engine: sa.Engine, rules: FieldRules
) -> None:
    rule = rules["company_name"]
    entry = record_write(engine, rule, "Acme", company_id=COMPANY)
    now = _db_now(engine)
    # HubSpot says a person made this change: not our echo, whatever the value.
    assert match_echo(engine, company_id=COMPANY, rule=rule, value="Acme", occurred_at=now, source="CRM_UI") is None
    assert match_echo(engine, company_id=COMPANY, rule=rule, value="Acme", occurred_at=now,
                      source="integration") == entry


def test_matching_needs_company_property_value_and_time(engine: sa.Engine, rules: FieldRules) -> None:
    rule = rules["contact_email"]
    written = _db_now(engine)
    entry = record_write(engine, rule, "Ops@Acme.com", company_id=COMPANY, written_at=written)
    assert match_echo(engine, company_id="40000000002", rule=rule, value="ops@acme.com", occurred_at=written) is None
    assert match_echo(engine, company_id=COMPANY, rule=rules["company_name"], value="ops@acme.com",
                      occurred_at=written) is None
    assert match_echo(engine, company_id=COMPANY, rule=rule, value="sales@acme.com", occurred_at=written) is None
    assert match_echo(engine, company_id=COMPANY, rule=rule, value="not an email", occurred_at=written) is None
    # Occurred before the write, beyond the clock skew: a change we cannot have caused.
    assert match_echo(engine, company_id=COMPANY, rule=rule, value="ops@acme.com",
                      occurred_at=written - timedelta(seconds=30)) is None
    # Within the skew (HubSpot's clock a little behind ours), and case-insensitive: ours.
    assert match_echo(engine, company_id=COMPANY, rule=rule, value=" OPS@acme.com",
                      occurred_at=written - timedelta(seconds=2)) == entry


def test_an_expired_entry_is_not_matched_and_is_purged(engine: sa.Engine, rules: FieldRules) -> None:
    rule = rules["status"]
    written = _db_now(engine)
    record_write(engine, rule, "ACTIVE", company_id=COMPANY, written_at=written)
    three_days_on = written + timedelta(days=3, seconds=1)
    assert match_echo(engine, company_id=COMPANY, rule=rule, value="ACTIVE", occurred_at=written,
                      now=three_days_on) is None
    assert purge_expired(engine, now=written + timedelta(days=1)) == 0
    assert purge_expired(engine, now=three_days_on) == 1
    assert _status(engine) == []


def test_a_voided_write_absorbs_nothing(engine: sa.Engine, rules: FieldRules) -> None:
    rule = rules["status"]
    [entry] = record_writes(engine, [LedgerWrite(rule, "CLOSED", company_id=COMPANY)])
    assert void_writes(engine, [entry], "HubSpot answered 400 VALIDATION_ERROR") == 1
    assert match_echo(engine, company_id=COMPANY, rule=rule, value="CLOSED", occurred_at=_db_now(engine)) is None
    assert _status(engine) == [(entry, "voided")]


def test_a_creates_entries_wait_for_the_company_id(engine: sa.Engine, rules: FieldRules) -> None:
    ids = record_writes(engine, [
        LedgerWrite(rules["ban"], "ZT-100000001", ban="ZT-100000001"),
        LedgerWrite(rules["company_name"], "Acme", ban="ZT-100000001"),
    ])
    assert len(ids) == 2 and ids[0] < ids[1]
    occurred = _db_now(engine)
    assert match_echo(engine, company_id=COMPANY, rule=rules["company_name"], value="Acme",
                      occurred_at=occurred) is None
    assert bind_company(engine, "ZT-100000001", COMPANY) == 2
    assert match_echo(engine, company_id=COMPANY, rule=rules["company_name"], value="Acme",
                      occurred_at=occurred) == ids[1]


def test_the_record_is_committed_before_the_request(engine: sa.Engine, rules: FieldRules) -> None:
    with engine.connect() as conn, pytest.raises(TypeError, match="Engine"):
        record_writes(conn, [LedgerWrite(rules["status"], "ACTIVE", company_id=COMPANY)])  # type: ignore[arg-type]
    record_write(engine, rules["status"], "ACTIVE", company_id=COMPANY)
    # Visible to any other connection at once.
    with engine.connect() as other:
        assert other.execute(sa.text("SELECT count(*) FROM hubspot_write_ledger")).scalar_one() == 1


def test_two_concurrent_matchers_cannot_both_absorb_one_entry(engine: sa.Engine, rules: FieldRules) -> None:
    rule = rules["status"]
    entry = record_write(engine, rule, "SUSPENDED", company_id=COMPANY)
    occurred = _db_now(engine)
    barrier = threading.Barrier(2)
    results: list[int | None] = []
    first_matched = threading.Event()
    release_first = threading.Event()

    def matcher(hold: bool) -> None:
        with engine.begin() as conn:
            barrier.wait()
            if not hold:
                first_matched.wait(5)
            results.append(match_echo(conn, company_id=COMPANY, rule=rule, value="SUSPENDED", occurred_at=occurred))
            if hold:
                first_matched.set()
                release_first.wait(5)  # keep the transaction open while the other one tries

    holder = threading.Thread(target=matcher, args=(True,))
    other = threading.Thread(target=matcher, args=(False,))
    holder.start()
    other.start()
    other.join(10)
    release_first.set()
    holder.join(10)
    assert sorted(results, key=lambda r: r is None) == [entry, None]
    assert _status(engine) == [(entry, "matched")]


def _ledger(engine: sa.Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {r.company_id: r.status for r in conn.execute(sa.text("SELECT company_id, status FROM hubspot_write_ledger"))}


def test_ledger_first_updates_void_exactly_what_hubspot_definitely_did_not_apply(
    engine: sa.Engine, sandbox, warp_hubspot, rules: FieldRules,  # noqa: ANN001
) -> None:
    # The one ledger-first write of the drain, the nightly and the resolution (issue 14).
    kept, gone = (warp_hubspot.create_company({"name": f"Ledger {n}"}).id for n in range(2))
    warp_hubspot.archive_company(gone)
    sent = update_companies_ledger_first(engine, warp_hubspot, rules, [
        LedgeredUpdate(kept, {"credit_limit": "10"}), LedgeredUpdate(gone, {"credit_limit": "20"})], reason="test")
    assert [outcome.ok for outcome in sent] == [True, False]
    # The written value waits for its echo; the missing company's was definitely not applied.
    assert _ledger(engine) == {kept: "pending", gone: "voided"}

    refused = HubSpotClient(sandbox.base_url, "pat-wrong", time_budget_s=5)
    with pytest.raises(AuthFailed):
        update_companies_ledger_first(engine, refused, rules, [LedgeredUpdate(kept, {"credit_limit": "30"})],
                                      reason="test")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT status FROM hubspot_write_ledger WHERE value = '30.00'")).scalar_one() \
            == "voided"
