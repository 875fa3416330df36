"""POST /v1/customers: the synchronous, all-or-nothing create (DESIGN.md flow 1) against the sandbox."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
import sqlalchemy as sa

from tests.plugins.outbound import (
    AUTH,
    Receiver,
    api_calls,
    customer_rows,
    live_companies,
    running_receiver,
)
from warp_sync_pipeline.core.customers import CreateFailed, CreateSettings, create_customer, validate_customer
from warp_sync_pipeline.core.errors import Failure
from warp_sync_pipeline.core.field_state import read_field_state
from warp_sync_pipeline.core.fields import FieldRules
from webhook_receiver.resources import receiver_resources

CREATE = "POST /crm/v3/objects/companies"
FULL_BODY = {
    "company_name": "Acme Corp",
    "status": "ACTIVE",
    "credit_limit": 5000.5,
    "current_balance": "12.00",
    "services": {"voice": True, "messaging": False, "data": True},
    "contact_email": "Billing@Acme.example",
    "payment_terms": "NET30",
}


def _audit(engine: sa.Engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text("SELECT * FROM hubspot_sync_log ORDER BY id")).mappings()]


def _assert_nothing_created(engine: sa.Engine, sandbox) -> None:  # noqa: ANN001
    assert customer_rows(engine) == []
    assert live_companies(sandbox) == []


def test_a_create_makes_the_customer_and_its_company_together(receiver: Receiver, engine: sa.Engine, sandbox) -> None:  # noqa: ANN001
    response = receiver.post(FULL_BODY)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["success"] is True
    customer = body["data"]["customer"]
    sync = body["data"]["hubspot_sync"]
    assert sync["success"] is True and sync["message"] == "Customer synced successfully"
    assert sorted(sync["fields_synced"]) == sorted(
        ["ban", "company_name", "status", "credit_limit", "current_balance", "services", "contact_email",
         "payment_terms"]
    )
    assert customer["external_ids"] == {"hubspot_company_id": sync["hubspot_company_id"]}
    assert customer["ban"].startswith("ZT-") and len(customer["ban"]) == 12
    assert customer["credit_limit"] == "5000.50" and customer["hubspot_link_status"] == "linked"

    (company,) = live_companies(sandbox)
    assert company["id"] == sync["hubspot_company_id"]
    props = company["properties"]
    assert props["name"] == "Acme Corp" and props["warp_ban"] == customer["ban"]
    assert props["warp_credit_limit"] in ("5000.5", "5000.50")
    assert props["warp_services"] == "voice;data" and props["warp_payment_terms"] == "NET30"
    assert props["warp_contact_email"] == "Billing@Acme.example"

    (row,) = customer_rows(engine)
    assert str(row["id"]) == customer["id"] and row["hubspot_link_status"] == "linked"
    with engine.connect() as conn:
        state = read_field_state(conn, [row["id"]])
        ledger = conn.execute(sa.text("SELECT company_id, ban, status FROM hubspot_write_ledger")).all()
        queued = conn.execute(sa.text("SELECT count(*) FROM hubspot_sync_queue")).scalar_one()
    assert state[(row["id"], "credit_limit")].agreed.value == "5000.50"
    assert state[(row["id"], "contact_email")].agreed.value == "billing@acme.example"
    assert {(c, b, s) for c, b, s in ledger} == {(company["id"], customer["ban"], "pending")}
    assert len(ledger) == 8
    assert queued == 0  # linking the company is not a change to send
    applied = [e for e in _audit(engine) if e["trigger"] == "create"]
    assert {e["warp_field"] for e in applied} == set(sync["fields_synced"])
    assert all(e["outcome"] == "applied" and e["actor"] == "bootstrap" for e in applied)


def test_a_minimal_create_takes_the_defaults(receiver: Receiver, sandbox) -> None:  # noqa: ANN001
    response = receiver.post({"company_name": "  Tiny Telecom  "})
    assert response.status_code == 201, response.get_json()
    data = response.get_json()["data"]
    assert data["customer"]["company_name"] == "Tiny Telecom"
    assert data["customer"]["status"] == "PENDING" and data["customer"]["credit_limit"] is None
    assert "credit_limit" not in data["hubspot_sync"]["fields_synced"]
    (company,) = live_companies(sandbox)
    assert company["properties"]["warp_status"] == "PENDING"


def test_validation_lists_every_bad_field_and_touches_nothing(
    receiver: Receiver, engine: sa.Engine, sandbox  # noqa: ANN001
) -> None:
    sandbox.control.reset_counters()
    response = receiver.post({
        "status": "BOGUS", "credit_limit": -5, "contact_email": "not-an-email", "services": {"voice": "yes"},
        "payment_terms": "NET7", "ban": "ZT-123456789", "favourite_colour": "blue", "current_balance": "1.234",
    })
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    codes = {f["field"]: f["code"] for f in error["fields"]}
    assert codes == {
        "company_name": "VALUE_REQUIRED", "status": "INVALID_OPTION", "credit_limit": "AMOUNT_BELOW_MINIMUM",
        "contact_email": "INVALID_EMAIL", "services": "INVALID_SERVICES", "payment_terms": "INVALID_OPTION",
        "ban": "READ_ONLY_FIELD", "favourite_colour": "UNKNOWN_FIELD", "current_balance": "AMOUNT_TOO_PRECISE",
    }
    assert api_calls(sandbox) == 0
    _assert_nothing_created(engine, sandbox)


# A lone surrogate (valid JSON escape, not valid Unicode), a NUL, and a name HubSpot would refuse on every send:
# each was a 500, silently changed, or accepted and then dead in the queue (issue 12, item 7).
UNSTORABLE_TEXT = [
    pytest.param({"company_name": "a\ud800b"}, "company_name", "INVALID_TEXT", id="lone-surrogate"),
    pytest.param({"company_name": "Acme\x00 Ltd"}, "company_name", "INVALID_TEXT", id="nul"),
    pytest.param({"company_name": "x" * 100_000}, "company_name", "VALUE_TOO_LONG", id="100k-characters"),
    pytest.param({"company_name": "Acme", "contact_email": "a\udfff@example.com"}, "contact_email", "INVALID_TEXT",
                 id="surrogate-in-email"),
]


@pytest.mark.parametrize(("body", "field", "code"), UNSTORABLE_TEXT)
def test_text_that_cannot_be_kept_as_sent_is_refused_before_anything_is_stored(
    receiver: Receiver, engine: sa.Engine, sandbox, body: dict, field: str, code: str  # noqa: ANN001
) -> None:
    sandbox.control.reset_counters()
    response = receiver.post(body)
    assert response.status_code == 400, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert [(f["field"], f["code"]) for f in error["fields"]] == [(field, code)]
    assert api_calls(sandbox) == 0
    _assert_nothing_created(engine, sandbox)


def test_a_name_at_hubspots_limit_is_accepted(receiver: Receiver) -> None:
    response = receiver.post({"company_name": "x" * 65_536})
    assert response.status_code == 201, response.get_data(as_text=True)


@pytest.mark.parametrize("body", [[1, 2], "text", 42])
def test_a_body_that_is_not_an_object_is_refused(receiver: Receiver, body: object) -> None:
    response = receiver.post(body)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "VALIDATION_ERROR"


def test_unparseable_json_is_refused(receiver: Receiver) -> None:
    response = receiver.client.post("/v1/customers", data=b"{nope", headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "INVALID_JSON"


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", "Basic abc"])
def test_creates_need_the_admin_token(receiver: Receiver, engine: sa.Engine, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = receiver.client.post("/v1/customers", json={"company_name": "X"}, headers=headers)
    assert response.status_code == 401 and response.get_json()["error"]["code"] == "UNAUTHORIZED"
    assert customer_rows(engine) == []


def test_an_outage_rolls_back_with_502_and_is_audited(receiver: Receiver, engine: sa.Engine, sandbox) -> None:  # noqa: ANN001
    sandbox.control.set_faults(outage={"seconds": 30})
    response = receiver.post(FULL_BODY)
    assert response.status_code == 502
    error = response.get_json()["error"]
    assert error["code"] == "HUBSPOT_SYNC_FAILED"
    assert error["message"].startswith("Customer creation rolled back due to HubSpot sync failure")
    assert error["failed_fields"] == [{"field": "hubspot_api", "reason": "Service Unavailable (503)"}]
    assert "Failed fields: [hubspot_api: Service Unavailable (503)]" in error["message"]
    sandbox.control.clear_faults()
    _assert_nothing_created(engine, sandbox)
    (entry,) = _audit(engine)
    assert entry["outcome"] == "rolled_back" and entry["error_code"] == "HUBSPOT_SYNC_FAILED"
    assert entry["ban"] and entry["customer_id"] is None and entry["details"]["kind"] == "hubspot_failed"
    with engine.connect() as conn:
        statuses = conn.execute(sa.text("SELECT DISTINCT status FROM hubspot_write_ledger")).scalars().all()
    assert statuses == ["voided"]


def test_hubspot_refusing_credit_limit_answers_422_in_warp_names(
    receiver: Receiver, engine: sa.Engine, sandbox  # noqa: ANN001
) -> None:
    sandbox.control.set_faults(validation={"property": "warp_credit_limit", "calls": 1,
                                           "message": "Invalid property value"})
    response = receiver.post(FULL_BODY)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "HUBSPOT_SYNC_FAILED"
    assert error["failed_fields"] == [{"field": "credit_limit", "reason": "Invalid property value"}]
    assert error["message"] == (
        "Customer creation rolled back due to HubSpot sync failure: Failed to create HubSpot company. "
        "Failed fields: [credit_limit: Invalid property value]"
    )
    _assert_nothing_created(engine, sandbox)
    failed = [e for e in _audit(engine) if e["outcome"] == "failed"]
    assert [(e["warp_field"], e["hubspot_property"]) for e in failed] == [("credit_limit", "warp_credit_limit")]


def test_429s_that_never_stop_answer_502_within_the_budget(
    receiver: Receiver, engine: sa.Engine, sandbox  # noqa: ANN001
) -> None:
    sandbox.control.set_faults(rate_limit={"seconds": 60})
    response = receiver.post(FULL_BODY)
    assert response.status_code == 502
    (failed,) = response.get_json()["error"]["failed_fields"]
    assert failed["field"] == "hubspot_api" and "429" in failed["reason"]
    sandbox.control.clear_faults()
    _assert_nothing_created(engine, sandbox)


def test_a_401_from_hubspot_answers_502(receiver: Receiver, engine: sa.Engine, sandbox) -> None:  # noqa: ANN001
    sandbox.control.configure(access_token="rotated-token")
    response = receiver.post(FULL_BODY)
    assert response.status_code == 502
    assert "401" in response.get_json()["error"]["failed_fields"][0]["reason"]
    assert customer_rows(engine) == []


def test_a_lost_answer_after_hubspot_made_the_company_links_that_company(
    receiver: Receiver, engine: sa.Engine, sandbox  # noqa: ANN001
) -> None:
    sandbox.control.set_faults(after_success={"calls": 1, "mode": "drop", "endpoint": CREATE})
    response = receiver.post(FULL_BODY)
    assert response.status_code == 201, response.get_json()
    companies = sandbox.control.all_companies()
    assert len(companies) == 1 and not companies[0]["archived"]
    (row,) = customer_rows(engine)
    assert row["external_ids"]["hubspot_company_id"] == companies[0]["id"]
    assert companies[0]["properties"]["warp_ban"] == row["ban"]
    assert api_calls(sandbox, CREATE) == 1  # read back by BAN, never created twice


def test_a_timeout_past_the_budget_rolls_back_and_archives_the_company_it_made(
    database_url: str, engine: sa.Engine, sandbox  # noqa: ANN001
) -> None:
    # The request timeout exceeds the create's budget, so the budget runs out while HubSpot holds the answer.
    with running_receiver(database_url, sandbox, HUBSPOT_REQUEST_TIMEOUT_SECONDS=30,
                          WARP_CREATE_TIME_BUDGET_SECONDS=1.5) as receiver:
        sandbox.control.set_faults(after_success={"calls": 1, "mode": "timeout", "hold_seconds": 20,
                                                  "endpoint": CREATE})
        response = receiver.post(FULL_BODY)
    assert response.status_code == 502
    error = response.get_json()["error"]
    companies = sandbox.control.all_companies()
    assert len(companies) == 1 and companies[0]["archived"] is True
    assert error["hubspot_company_archived"] == companies[0]["id"]
    assert customer_rows(engine) == []


def test_a_commit_failure_after_hubspots_success_archives_the_company(
    receiver: Receiver, engine: sa.Engine, sandbox  # noqa: ANN001
) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(
            "CREATE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.company_name = 'Commit Fails' THEN RAISE EXCEPTION 'refused at commit'; END IF; "
            "RETURN NULL; END $$"
        ))
        conn.execute(sa.text(
            "CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT ON customers "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_at_commit()"
        ))
    response = receiver.post({**FULL_BODY, "company_name": "Commit Fails"})
    assert response.status_code == 500
    error = response.get_json()["error"]
    assert error["code"] == "CUSTOMER_CREATE_FAILED"
    assert "refused at commit" not in error["message"]  # database text stays in the logs' class names only
    (company,) = sandbox.control.all_companies()
    assert company["archived"] is True and error["hubspot_company_archived"] == company["id"]
    assert customer_rows(engine) == []
    (entry,) = [e for e in _audit(engine) if e["outcome"] == "rolled_back"]
    assert entry["details"]["hubspot_company_archived"] == company["id"]


@pytest.mark.parametrize("form", ["validation_400", "validation_400_unnamed", "error_tokens", "conflict_409"])
def test_a_ban_hubspot_already_holds_is_never_overwritten_or_archived(
    engine: sa.Engine, rules: FieldRules, warp_hubspot, sandbox, make_customer, form: str  # noqa: ANN001
) -> None:
    # HubSpot's captured 400 names the holder only in its message, as the second id; or not at all.
    sandbox.control.configure(unique_conflict_form=form)
    (held_id,) = sandbox.control.seed([{"name": "Someone Else", "warp_ban": "ZT-000000777"}])
    make_customer(ban="ZT-000000888")  # taken in WARP: redrawn before any HubSpot call
    drawn = iter(["ZT-000000888", "ZT-000000777", "ZT-000000999"])
    sandbox.control.reset_counters()
    created = create_customer(
        engine, warp_hubspot, validate_customer({"company_name": "Acme"}, rules, for_update=False),
        settings=CreateSettings(time_budget_s=5), ban_source=lambda: next(drawn),
    )
    assert created.customer["ban"] == "ZT-000000999"
    assert api_calls(sandbox, CREATE) == 2  # the held BAN once, then the fresh one
    # Unnamed in the answer, the holder was read by its BAN (one call); it is named in the record either way.
    assert api_calls(sandbox, "GET /crm/v3/objects/companies/{companyId}") == (form == "validation_400_unnamed")
    by_id = {c["id"]: c for c in sandbox.control.all_companies()}
    assert by_id[held_id]["properties"] == {**by_id[held_id]["properties"], "name": "Someone Else",
                                            "warp_ban": "ZT-000000777"}
    assert by_id[held_id]["archived"] is False
    assert by_id[created.hubspot_company_id]["properties"]["warp_ban"] == "ZT-000000999"
    with engine.connect() as conn:
        ledger = conn.execute(sa.text("SELECT ban, status FROM hubspot_write_ledger")).all()
    assert {b for b, s in ledger if s == "voided"} == {"ZT-000000777"}
    assert {b for b, s in ledger if s == "pending"} == {"ZT-000000999"}
    with engine.connect() as conn:
        reasons = conn.execute(sa.text("SELECT DISTINCT void_reason FROM hubspot_write_ledger "
                                       "WHERE status = 'voided'")).scalars().all()
    assert reasons == [f"HubSpot already holds this BAN (company {held_id})"]


def test_a_ban_hubspot_keeps_refusing_gives_up_without_archiving(
    engine: sa.Engine, rules: FieldRules, warp_hubspot, sandbox  # noqa: ANN001
) -> None:
    held = [f"ZT-00000{n:04d}" for n in range(4)]
    sandbox.control.seed([{"name": f"Other {n}", "warp_ban": ban} for n, ban in enumerate(held)])
    drawn = itertools.cycle(held)
    with pytest.raises(CreateFailed) as caught:
        create_customer(
            engine, warp_hubspot, validate_customer({"company_name": "Acme"}, rules, for_update=False),
            settings=CreateSettings(time_budget_s=5, max_hubspot_ban_conflicts=3), ban_source=lambda: next(drawn),
        )
    assert caught.value.kind is Failure.HUBSPOT_FAILED and caught.value.extra["failed_fields"][0]["field"] == "ban"
    assert all(not c["archived"] for c in sandbox.control.all_companies())
    assert customer_rows(engine) == []


def test_the_receiver_starts_while_hubspot_is_down_and_ensures_properties_before_the_first_write(
    database_url: str, engine: sa.Engine, sandbox  # noqa: ANN001
) -> None:
    sandbox.control.set_faults(outage={"seconds": 60})
    with running_receiver(database_url, sandbox, properties_ensured=False, HUBSPOT_REQUEST_TIMEOUT_SECONDS=1) as receiver:
        assert receiver_resources(receiver.app).properties.ready is False
        sandbox.control.clear_faults()
        response = receiver.post({"company_name": "After The Outage", "credit_limit": "10"})
        assert response.status_code == 201, response.get_json()
        assert receiver_resources(receiver.app).properties.ready is True
    (company,) = live_companies(sandbox)
    assert company["properties"]["warp_credit_limit"] in ("10", "10.00")


def test_amounts_keep_their_cents(receiver: Receiver) -> None:
    response = receiver.post({"company_name": "Cents", "credit_limit": 0.1, "current_balance": -0.3})
    assert response.status_code == 201
    customer = response.get_json()["data"]["customer"]
    assert (customer["credit_limit"], customer["current_balance"]) == ("0.10", "-0.30")
    assert Decimal(customer["credit_limit"]) == Decimal("0.1")


def test_an_unknown_outcome_that_created_nothing_creates_again_with_the_same_ban(
    receiver: Receiver, engine: sa.Engine, sandbox  # noqa: ANN001
) -> None:
    # A 504 before HubSpot wrote anything: the client cannot know, so the attempt reads by BAN first.
    sandbox.control.set_faults(timeout={"calls": 1, "hold_seconds": 0, "endpoint": CREATE})
    sandbox.control.reset_counters()
    response = receiver.post(FULL_BODY)
    assert response.status_code == 201, response.get_json()
    assert api_calls(sandbox, CREATE) == 2
    assert api_calls(sandbox, "GET /crm/v3/objects/companies/{companyId}") == 1
    (company,) = live_companies(sandbox)
    (row,) = customer_rows(engine)
    assert company["properties"]["warp_ban"] == row["ban"]
    with engine.connect() as conn:
        bans = conn.execute(sa.text("SELECT DISTINCT ban, status FROM hubspot_write_ledger")).all()
    assert bans == [(row["ban"], "pending")]  # no BAN drawn after the unknown outcome
