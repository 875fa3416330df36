"""Resolving conflicts through the JSON API, checking both sides: WARP's row and the sandbox's company."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from tests.receiver.review.conftest import (
    bearer,
    conflict_row,
    https_client,
    patch_count,
    queued_fields,
    resolution_log,
    warp_value,
)
from warp_sync_pipeline.core.field_state import read_field_state
from warp_sync_pipeline.core.leases import hold_customer


def resolve(client: Any, token: str, conflict_id: int, **body: Any) -> Any:
    return client.post(f"/v1/conflicts/{conflict_id}/resolve", json=body, headers=bearer(token))


def hubspot_value(portal: Any, company_id: str, prop: str) -> str | None:
    return portal.get_company(company_id, properties=[prop]).get(prop)


def test_take_warps_value_writes_hubspot_with_ledger_entry_and_closes(
    client, tokens, make_conflict, portal, engine, sandbox
) -> None:
    made = make_conflict("contact_email")
    sandbox.control.reset_counters()

    response = resolve(client, tokens.resolver, made.id, choice="warp", expected_version=made.version)

    assert response.status_code == 200, response.get_json()
    data = response.get_json()["data"]
    assert data["resolution"] | {"resolved_at": None} == {
        "conflict_id": made.id, "customer_id": str(made.customer_id), "warp_field": "contact_email",
        "choice": "warp", "value": "ops@acme.example", "hubspot_written": True, "warp_written": False,
        "resolved_by": "alice", "resolved_at": None, "version": made.version + 1,
    }
    # HubSpot holds WARP's value, in the case WARP holds it; WARP is untouched.
    assert hubspot_value(portal, made.company_id, "warp_contact_email") == "Ops@Acme.example"
    assert warp_value(engine, made.customer_id, "contact_email") == "Ops@Acme.example"
    assert patch_count(sandbox) == 1
    row = conflict_row(engine, made.id)
    assert (row["status"], row["closed_by"], row["resolution"], row["resolved_value"]) == (
        "resolved", "alice", "warp", "ops@acme.example")
    assert data["conflict"]["status"] == "resolved"
    # The write's ledger entry exists (so its echo is recognised), recorded before the request.
    with engine.connect() as conn:
        ledger = conn.execute(sa.text(
            "SELECT company_id, hubspot_property, value, status FROM hubspot_write_ledger")).all()
    assert [tuple(r) for r in ledger] == [(made.company_id, "warp_contact_email", "ops@acme.example", "pending")]
    # Field state: both sides agree now.
    with engine.connect() as conn:
        state = read_field_state(conn, [made.customer_id], ["contact_email"])[(made.customer_id, "contact_email")]
    assert (state.agreed.value, state.warp.value, state.hubspot.value) == ("ops@acme.example",) * 3
    # Audit: one applied write to HubSpot, by the resolver.
    [entry] = resolution_log(engine, made.customer_id)
    assert (entry["direction"], entry["outcome"], entry["actor"], entry["old_value"], entry["new_value"]) == (
        "WARP_TO_HUBSPOT", "applied", "alice", "billing@acme.example", "ops@acme.example")
    assert entry["details"]["conflict_id"] == made.id


def test_take_hubspots_value_writes_warp_without_queueing_an_echo(
    client, tokens, make_conflict, portal, engine, sandbox
) -> None:
    made = make_conflict("contact_email")
    sandbox.control.reset_counters()

    response = resolve(client, tokens.resolver, made.id, choice="hubspot", expected_version=made.version)

    assert response.status_code == 200, response.get_json()
    resolution = response.get_json()["data"]["resolution"]
    assert (resolution["hubspot_written"], resolution["warp_written"]) == (False, True)
    assert warp_value(engine, made.customer_id, "contact_email") == "billing@acme.example"
    assert hubspot_value(portal, made.company_id, "warp_contact_email") == "billing@acme.example"
    assert patch_count(sandbox) == 0  # HubSpot already held it
    # The no-echo marker: the outbound trigger queued nothing back to HubSpot.
    assert queued_fields(engine, made.customer_id) == []
    [entry] = resolution_log(engine, made.customer_id)
    assert (entry["direction"], entry["outcome"], entry["actor"]) == ("HUBSPOT_TO_WARP", "applied", "alice")
    assert conflict_row(engine, made.id)["resolution"] == "hubspot"


def test_corrected_value_is_validated_and_written_to_both_sides(
    client, tokens, make_conflict, portal, engine
) -> None:
    made = make_conflict("credit_limit", warp={"credit_limit": "7500.00"}, hubspot={"warp_credit_limit": "9000"},
                         agreed="5000.00")

    refused = resolve(client, tokens.resolver, made.id, choice="value", value="12.345",
                      expected_version=made.version)
    assert refused.status_code == 422
    error = refused.get_json()["error"]
    assert (error["code"], error["field"], error["reason"]) == ("INVALID_VALUE", "credit_limit", "AMOUNT_TOO_PRECISE")
    assert conflict_row(engine, made.id)["status"] == "open"

    response = resolve(client, tokens.resolver, made.id, choice="value", value="8250.5",
                       expected_version=made.version)

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["data"]["resolution"]["value"] == "8250.50"
    assert warp_value(engine, made.customer_id, "credit_limit") == Decimal("8250.50")
    assert Decimal(hubspot_value(portal, made.company_id, "warp_credit_limit")) == Decimal("8250.50")
    directions = sorted(e["direction"] for e in resolution_log(engine, made.customer_id))
    assert directions == ["HUBSPOT_TO_WARP", "WARP_TO_HUBSPOT"]
    assert queued_fields(engine, made.customer_id) == []


def test_corrected_value_cannot_empty_a_required_field(client, tokens, make_conflict, engine) -> None:
    made = make_conflict("company_name", warp={"company_name": "Acme Ltd"}, hubspot={"name": "ACME Limited"},
                         agreed="Acme")
    response = resolve(client, tokens.resolver, made.id, choice="value", value="   ",
                       expected_version=made.version)
    assert response.status_code == 422
    assert response.get_json()["error"]["reason"] == "VALUE_REQUIRED"
    assert warp_value(engine, made.customer_id, "company_name") == "Acme Ltd"


def test_a_stale_version_is_refused_with_the_current_values(client, tokens, make_conflict, engine, sandbox) -> None:
    made = make_conflict("contact_email")
    sandbox.control.reset_counters()

    response = resolve(client, tokens.resolver, made.id, choice="warp", expected_version=made.version + 3)

    assert response.status_code == 409
    error = response.get_json()["error"]
    assert error["code"] == "CONFLICT_CHANGED"
    assert (error["current"]["version"], error["current"]["warp_value"], error["current"]["hubspot_value"]) == (
        made.version, "ops@acme.example", "billing@acme.example")
    assert patch_count(sandbox) == 0
    assert conflict_row(engine, made.id)["status"] == "open"


def test_two_resolvers_at_once_one_wins_the_other_is_told(
    app, tokens, make_conflict, portal, engine, sandbox
) -> None:
    made = make_conflict("contact_email")
    # Slow HubSpot so that both requests are in flight together.
    sandbox.control.set_faults(latency_ms=300)
    sandbox.control.reset_counters()
    answers: dict[str, Any] = {}
    start = threading.Barrier(2)

    def attempt(name: str, token: str, choice: str) -> None:
        client = https_client(app)
        start.wait()
        answers[name] = resolve(client, token, made.id, choice=choice, expected_version=made.version)

    threads = [threading.Thread(target=attempt, args=("alice", tokens.resolver, "warp")),
               threading.Thread(target=attempt, args=("bob", tokens.resolver2, "hubspot"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    sandbox.control.clear_faults()

    statuses = sorted(answer.status_code for answer in answers.values())
    assert statuses == [200, 409], {k: v.get_json() for k, v in answers.items()}
    winner = next(name for name, answer in answers.items() if answer.status_code == 200)
    loser = next(name for name, answer in answers.items() if answer.status_code == 409)
    told = answers[loser].get_json()["error"]
    assert told["code"] == "CONFLICT_CHANGED"
    assert (told["current"]["status"], told["current"]["closed_by"]) == ("resolved", winner)
    assert winner in told["message"]
    # Only the winner's choice reached the two sides.
    expected = "Ops@Acme.example" if winner == "alice" else "billing@acme.example"
    assert warp_value(engine, made.customer_id, "contact_email") == expected
    assert hubspot_value(portal, made.company_id, "warp_contact_email") == expected
    assert patch_count(sandbox) == (1 if winner == "alice" else 0)
    assert {e["actor"] for e in resolution_log(engine, made.customer_id)} == {winner}


def test_hubspot_outage_leaves_everything_open_and_says_so(
    client, tokens, make_conflict, portal, engine, sandbox
) -> None:
    made = make_conflict("contact_email")
    sandbox.control.set_faults(outage={"calls": 10, "endpoint": "PATCH /crm/v3/objects/companies/{companyId}"})

    response = resolve(client, tokens.resolver, made.id, choice="value", value="new@acme.example",
                       expected_version=made.version)

    assert response.status_code == 502
    error = response.get_json()["error"]
    assert (error["code"], error["hubspot_applied"], error["conflict_open"]) == ("HUBSPOT_SYNC_FAILED", False, True)
    sandbox.control.clear_faults()
    row = conflict_row(engine, made.id)
    assert (row["status"], row["version"]) == ("open", made.version)
    assert warp_value(engine, made.customer_id, "contact_email") == "Ops@Acme.example"
    assert hubspot_value(portal, made.company_id, "warp_contact_email") == "billing@acme.example"
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT status FROM hubspot_write_ledger")).scalars().all() == ["voided"]
    [entry] = resolution_log(engine, made.customer_id)
    assert (entry["outcome"], entry["error_code"]) == ("failed", "HUBSPOT_SYNC_FAILED")

    # Nothing was lost: the same resolution succeeds once HubSpot is back.
    retry = resolve(client, tokens.resolver, made.id, choice="value", value="new@acme.example",
                    expected_version=made.version)
    assert retry.status_code == 200, retry.get_json()
    assert hubspot_value(portal, made.company_id, "warp_contact_email") == "new@acme.example"


def test_a_hubspot_edit_since_detection_is_shown_not_overwritten(
    client, tokens, make_conflict, portal, engine, sandbox
) -> None:
    made = make_conflict("contact_email")
    sandbox.control.rep_edit(made.company_id, {"warp_contact_email": "rep@acme.example"})
    sandbox.control.reset_counters()

    stale = resolve(client, tokens.resolver, made.id, choice="warp", expected_version=made.version)

    assert stale.status_code == 409
    error = stale.get_json()["error"]
    assert error["code"] == "CONFLICT_CHANGED" and "HubSpot changed" in error["message"]
    assert (error["current"]["hubspot_value"], error["current"]["version"]) == ("rep@acme.example", made.version + 1)
    assert patch_count(sandbox) == 0
    assert hubspot_value(portal, made.company_id, "warp_contact_email") == "rep@acme.example"

    # With the values now shown, the person decides again.
    fresh = resolve(client, tokens.resolver, made.id, choice="hubspot", expected_version=made.version + 1)
    assert fresh.status_code == 200, fresh.get_json()
    assert warp_value(engine, made.customer_id, "contact_email") == "rep@acme.example"


def test_a_warp_change_since_detection_is_never_overwritten(
    client, tokens, make_conflict, portal, engine
) -> None:
    made = make_conflict("contact_email")
    with engine.begin() as conn:  # billing, say, in plain SQL
        conn.execute(sa.text("UPDATE customers SET contact_email = 'finance@acme.example' WHERE id = :id"),
                     {"id": made.customer_id})

    response = resolve(client, tokens.resolver, made.id, choice="hubspot", expected_version=made.version)

    assert response.status_code == 409
    current = response.get_json()["error"]["current"]
    assert (current["warp_value"], current["status"]) == ("finance@acme.example", "open")
    assert warp_value(engine, made.customer_id, "contact_email") == "finance@acme.example"


def test_sides_that_agree_by_now_close_the_conflict_as_superseded(
    client, tokens, make_conflict, engine, sandbox
) -> None:
    made = make_conflict("contact_email")
    sandbox.control.rep_edit(made.company_id, {"warp_contact_email": "ops@acme.example"})

    response = resolve(client, tokens.resolver, made.id, choice="hubspot", expected_version=made.version)

    assert response.status_code == 409
    current = response.get_json()["error"]["current"]
    assert (current["status"], current["resolution"], current["closed_by"]) == ("superseded", "sides_agree", "alice")


def test_warp_transaction_failure_after_hubspot_is_audited_and_retryable(
    client, tokens, make_conflict, portal, engine
) -> None:
    made = make_conflict("contact_email")
    # A real database failure on the WARP write (a trigger refusing it), not a mock.
    with engine.begin() as conn:
        conn.execute(sa.text(
            "CREATE FUNCTION refuse_email_change() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'refused for the test'; END; $$"))
        conn.execute(sa.text(
            "CREATE TRIGGER refuse_email_change BEFORE UPDATE OF contact_email ON customers "
            "FOR EACH ROW EXECUTE FUNCTION refuse_email_change()"))

    failed = resolve(client, tokens.resolver, made.id, choice="value", value="both@acme.example",
                     expected_version=made.version)

    assert failed.status_code == 503
    error = failed.get_json()["error"]
    assert (error["code"], error["hubspot_applied"]) == ("WARP_WRITE_FAILED", True)
    assert hubspot_value(portal, made.company_id, "warp_contact_email") == "both@acme.example"
    assert warp_value(engine, made.customer_id, "contact_email") == "Ops@Acme.example"
    row = conflict_row(engine, made.id)
    assert (row["status"], row["hubspot_value"]) == ("open", "both@acme.example")
    [entry] = resolution_log(engine, made.customer_id)
    assert (entry["outcome"], entry["error_code"], entry["details"]["hubspot_applied"]) == (
        "failed", "WARP_WRITE_FAILED", True)
    assert "HubSpot now holds" in entry["error"]

    with engine.begin() as conn:
        conn.execute(sa.text("DROP TRIGGER refuse_email_change ON customers"))
    retry = resolve(client, tokens.resolver, made.id, choice="hubspot", expected_version=row["version"])
    assert retry.status_code == 200, retry.get_json()
    assert retry.get_json()["data"]["resolution"]["hubspot_written"] is False
    assert warp_value(engine, made.customer_id, "contact_email") == "both@acme.example"


def test_unlinked_customer_is_refused(client, tokens, make_conflict, engine) -> None:
    made = make_conflict("contact_email", linked=False)
    response = resolve(client, tokens.resolver, made.id, choice="warp", expected_version=made.version)
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "CUSTOMER_NOT_LINKED"
    assert conflict_row(engine, made.id)["status"] == "open"


def test_unknown_conflict_and_bad_bodies(client, tokens, make_conflict) -> None:
    made = make_conflict("contact_email")
    assert resolve(client, tokens.resolver, 999_999, choice="warp", expected_version=1).status_code == 404
    cases = [
        ({"choice": "mine", "expected_version": made.version}, "choice"),
        ({"choice": "warp"}, "expected_version"),
        ({"choice": "warp", "expected_version": True}, "expected_version"),
        ({"choice": "warp", "value": "x", "expected_version": made.version}, "value"),
        ({"choice": "value", "expected_version": made.version}, "value"),
        ({"choice": "warp", "expected_version": made.version, "force": True}, "force"),
    ]
    for body, field in cases:
        response = client.post(f"/v1/conflicts/{made.id}/resolve", json=body, headers=bearer(tokens.resolver))
        assert response.status_code == 400, body
        assert field in [f["field"] for f in response.get_json()["error"]["fields"]], body
    not_json = client.post(f"/v1/conflicts/{made.id}/resolve", data="choice=warp", headers=bearer(tokens.resolver))
    assert not_json.status_code == 400


def test_list_filters_by_field_and_customer_and_pages(client, tokens, make_conflict) -> None:
    first = make_conflict("contact_email", warp={"company_name": "Northwind Mobile"}, hubspot={"name": "Northwind Mobile"})
    second = make_conflict("credit_limit", warp={"credit_limit": "100.00"}, agreed="50.00")
    third = make_conflict("contact_email", warp={"company_name": "Globex 100% Fibre"},
                          hubspot={"name": "Globex 100% Fibre"})
    headers = bearer(tokens.admin)

    def ids(query: str) -> list[int]:
        response = client.get(f"/v1/conflicts{query}", headers=headers)
        assert response.status_code == 200, response.get_json()
        return [c["id"] for c in response.get_json()["data"]["conflicts"]]

    assert ids("") == [first.id, second.id, third.id]
    assert ids("?field=contact_email") == [first.id, third.id]
    assert ids("?customer=northwind") == [first.id]
    assert ids("?customer=100%25") == [third.id]  # a literal %, not a wildcard
    assert ids(f"?customer={second.customer_id}") == [second.id]
    page = client.get("/v1/conflicts?limit=2", headers=headers).get_json()["data"]
    assert ([c["id"] for c in page["conflicts"]], page["total"], page["next_after"]) == (
        [first.id, second.id], 3, second.id)
    assert ids(f"?limit=2&after={page['next_after']}") == [third.id]
    listed = client.get("/v1/conflicts?field=contact_email", headers=headers).get_json()["data"]["conflicts"][0]
    assert {"ban", "company_name", "warp_value", "hubspot_value", "warp_changed_at", "hubspot_changed_at",
            "detected_by", "version"} <= set(listed)
    one = client.get(f"/v1/conflicts/{first.id}", headers=headers)
    assert one.status_code == 200 and one.get_json()["data"]["id"] == first.id
    assert client.get("/v1/conflicts/999999", headers=headers).status_code == 404
    for query in ("?field=secret_column", "?limit=0", "?limit=abc", "?after=-1", "?sort=id"):
        assert client.get(f"/v1/conflicts{query}", headers=headers).status_code == 400, query


def test_list_by_ban(client, tokens, make_conflict, engine) -> None:
    made = make_conflict("contact_email")
    make_conflict("contact_email")
    with engine.connect() as conn:
        ban = conn.execute(sa.text("SELECT ban FROM customers WHERE id = :id"), {"id": made.customer_id}).scalar_one()
    response = client.get(f"/v1/conflicts?customer={ban.lower()}", headers=bearer(tokens.resolver))
    assert [c["id"] for c in response.get_json()["data"]["conflicts"]] == [made.id]


def test_a_lost_hubspot_answer_is_reported_as_unknown_and_nothing_is_lost(
    client, tokens, make_conflict, portal, engine, sandbox
) -> None:
    made = make_conflict("contact_email")
    # HubSpot applies the write, then the answer is lost (every attempt).
    sandbox.control.set_faults(after_success={"calls": 5, "mode": "drop",
                                              "endpoint": "PATCH /crm/v3/objects/companies/{companyId}"})

    lost = resolve(client, tokens.resolver, made.id, choice="value", value="maybe@acme.example",
                   expected_version=made.version)

    assert lost.status_code == 502
    error = lost.get_json()["error"]
    assert (error["code"], error["hubspot_applied"]) == ("HUBSPOT_SYNC_FAILED", None)
    sandbox.control.clear_faults()
    # The ledger entry stays, so the write's echo is still recognised; WARP and the conflict are untouched.
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT status FROM hubspot_write_ledger")).scalars().all() == ["pending"]
    assert warp_value(engine, made.customer_id, "contact_email") == "Ops@Acme.example"
    assert conflict_row(engine, made.id)["status"] == "open"
    # HubSpot did take it: the next attempt shows that, and the person finishes with HubSpot's value.
    again = resolve(client, tokens.resolver, made.id, choice="value", value="maybe@acme.example",
                    expected_version=made.version)
    assert again.status_code == 409
    current = again.get_json()["error"]["current"]
    assert current["hubspot_value"] == "maybe@acme.example"
    done = resolve(client, tokens.resolver, made.id, choice="hubspot", expected_version=current["version"])
    assert done.status_code == 200, done.get_json()
    assert warp_value(engine, made.customer_id, "contact_email") == "maybe@acme.example"


def test_a_customer_held_by_another_writer_is_reported_busy(make_app, tokens, make_conflict, engine) -> None:
    made = make_conflict("contact_email")
    client = https_client(make_app(RESOLUTION_LEASE_WAIT_SECONDS=0.2))
    with hold_customer(engine, made.customer_id, "drain:test-run"):
        busy = resolve(client, tokens.resolver, made.id, choice="warp", expected_version=made.version)
    assert busy.status_code == 409
    assert busy.get_json()["error"]["code"] == "CUSTOMER_BUSY"
    assert "drain:test-run" in busy.get_json()["error"]["message"]
    assert conflict_row(engine, made.id)["status"] == "open"
    # Once the other writer is done, the same resolution goes through.
    assert resolve(client, tokens.resolver, made.id, choice="warp", expected_version=made.version).status_code == 200
