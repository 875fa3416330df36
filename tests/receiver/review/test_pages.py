"""The review pages: sign-in and its cookie, CSRF, roles, resolving each way from a form, stale forms, history."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from tests.receiver.review.conftest import (
    bearer,
    conflict_row,
    csrf_from,
    https_client,
    patch_count,
    resolution_log,
    sign_in,
    warp_value,
)
from warp_sync_pipeline.core.audit import Outcome, SyncLogEntry, Trigger, log_sync
from warp_sync_pipeline.core.auth import revoke
from warp_sync_pipeline.core.fields import Direction


def page_form(client: Any, conflict_id: int) -> dict[str, str]:
    """The hidden fields of a conflict's form on the queue page, as the browser would send them."""
    html = client.get("/review/conflicts").get_data(as_text=True)
    section = html.split(f'id="conflict-{conflict_id}"', 1)[1]
    version = section.split('name="expected_version" value="', 1)[1].split('"', 1)[0]
    return {"csrf_token": csrf_from(html), "expected_version": version}


def hubspot_value(portal: Any, company_id: str, prop: str) -> str | None:
    return portal.get_company(company_id, properties=[prop]).get(prop)


# --- signing in ---------------------------------------------------------------------------------------------


def test_pages_without_a_session_redirect_to_sign_in(client, make_conflict, engine) -> None:
    made = make_conflict()
    for path in ("/review/conflicts?field=contact_email", f"/review/customers/{made.customer_id}", "/review/"):
        response = client.get(path)
        assert response.status_code == 303, path
        assert response.headers["Location"].startswith("/review/login"), path
    assert client.get("/review/conflicts?field=contact_email").headers["Location"] == (
        "/review/login?next=/review/conflicts?field%3Dcontact_email")
    # A form post without a session does nothing and goes to sign in.
    posted = client.post(f"/review/conflicts/{made.id}/resolve", data={"choice": "warp", "expected_version": "1"})
    assert posted.status_code == 303 and posted.headers["Location"].startswith("/review/login")
    assert conflict_row(engine, made.id)["status"] == "open"


def test_sign_in_sets_a_signed_secure_strict_cookie_that_never_holds_the_token(app, client, tokens) -> None:
    response = sign_in(client, tokens.resolver, next_url="/review/conflicts?field=credit_limit")

    assert response.status_code == 303
    assert response.headers["Location"] == "/review/conflicts?field=credit_limit"
    [cookie] = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("warp_review_session=")]
    attributes = {part.strip().split("=")[0].lower(): part for part in cookie.split(";")[1:]}
    assert {"secure", "httponly", "samesite", "path"} <= set(attributes)
    assert attributes["samesite"].strip() == "SameSite=Strict"
    assert attributes["path"].strip() == "Path=/review"
    raw = cookie.split(";", 1)[0].split("=", 1)[1]
    content = app.session_interface.get_signing_serializer(app).loads(raw)
    assert content["name"] == "alice" and content["roles"] == ["resolver"]
    assert tokens.resolver not in raw and tokens.resolver not in repr(content)
    assert client.get("/review/conflicts").status_code == 200


def test_a_wrong_token_is_refused_on_the_login_page(client, tokens) -> None:
    response = sign_in(client, "wsk_not-a-real-token")
    assert response.status_code == 401
    assert "not valid" in response.get_data(as_text=True)
    assert client.get("/review/conflicts").status_code == 303


def test_the_bootstrap_token_signs_in_until_it_is_rotated(make_app, database_url, sandbox) -> None:
    first = make_app()
    browser = https_client(first)
    assert sign_in(browser, "bootstrap-token-for-review-tests").status_code == 303
    assert browser.get("/review/conflicts").status_code == 200
    # The same cookie on a receiver whose WARP_API_TOKEN was rotated: the session ends.
    rotated = make_app(WARP_API_TOKEN="a-new-bootstrap-token")
    cookie = browser.get_cookie("warp_review_session", path="/review")
    other = https_client(rotated)
    other.set_cookie("warp_review_session", cookie.value, path="/review")
    assert other.get("/review/conflicts").status_code == 303


def test_a_revoked_credential_ends_its_sessions(client, tokens, engine) -> None:
    sign_in(client, tokens.resolver)
    assert client.get("/review/conflicts").status_code == 200
    revoke(engine, name="alice")
    response = client.get("/review/conflicts")
    assert response.status_code == 303 and response.headers["Location"].startswith("/review/login")


def test_a_sign_in_expires(make_app, tokens) -> None:
    browser = https_client(make_app(REVIEW_SESSION_MAX_AGE=timedelta(seconds=-1)))
    sign_in(browser, tokens.resolver)
    assert browser.get("/review/conflicts").status_code == 303


def test_sign_out_needs_a_form_post_with_its_csrf_token(client, tokens) -> None:
    sign_in(client, tokens.resolver)
    html = client.get("/review/conflicts").get_data(as_text=True)
    assert client.post("/review/logout", data={}).status_code == 400
    assert client.get("/review/conflicts").status_code == 200
    response = client.post("/review/logout", data={"csrf_token": csrf_from(html)})
    assert response.status_code == 303
    assert client.get("/review/conflicts").status_code == 303


@pytest.mark.parametrize("target", ["https://evil.example/review/x", "//evil.example/review/x",
                                    "/v1/conflicts", "/review/\\evil"])
def test_sign_in_never_sends_a_person_elsewhere(client, tokens, target) -> None:
    response = sign_in(client, tokens.resolver, next_url=target)
    assert response.headers["Location"] == "/review/conflicts"


def test_without_a_secret_key_the_pages_say_so_and_the_api_still_works(make_app, tokens) -> None:
    for secret in (None, "short"):
        app = make_app(SECRET_KEY=secret)
        browser = https_client(app)
        response = browser.get("/review/login")
        assert response.status_code == 503
        page = response.get_data(as_text=True)
        assert "WARP_SECRET_KEY" in page and "REVIEW_NOT_CONFIGURED" in page
        assert browser.get("/v1/conflicts", headers=bearer(tokens.resolver)).status_code == 200


def test_pages_send_security_headers(client) -> None:
    response = client.get("/review/login")
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"


# --- CSRF -------------------------------------------------------------------------------------------------------


def test_forms_without_a_valid_csrf_token_are_refused(app, client, tokens, make_conflict, engine, sandbox) -> None:
    made = make_conflict()
    # The login form itself.
    client.get("/review/login")
    assert client.post("/review/login", data={"token": tokens.resolver}).status_code == 400
    sign_in(client, tokens.resolver)
    form = page_form(client, made.id)
    sandbox.control.reset_counters()
    # Missing, forged, and another session's token: all refused, nothing changed.
    other = https_client(app)
    sign_in(other, tokens.resolver2)
    other_token = page_form(other, made.id)["csrf_token"]
    for token in (None, "forged." + form["csrf_token"][7:], other_token):
        data = {**form, "choice": "warp"}
        if token is None:
            data.pop("csrf_token")
        else:
            data["csrf_token"] = token
        response = client.post(f"/review/conflicts/{made.id}/resolve", data=data)
        assert response.status_code == 400, token
        assert "CSRF_FAILED" in response.get_data(as_text=True)
    assert conflict_row(engine, made.id)["status"] == "open"
    assert patch_count(sandbox) == 0


def test_api_routes_take_no_csrf_and_ignore_the_page_cookie(client, tokens, make_conflict) -> None:
    made = make_conflict()
    sign_in(client, tokens.resolver)
    cookie = client.get_cookie("warp_review_session", path="/review")
    # The browser would not even send the cookie to /v1 (its path is /review); sent anyway, it counts for nothing.
    refused = client.get("/v1/conflicts", headers={"Cookie": f"warp_review_session={cookie.value}"})
    assert refused.status_code == 401
    assert refused.get_json()["error"]["code"] == "UNAUTHORIZED"
    resolved = client.post(f"/v1/conflicts/{made.id}/resolve", json={"choice": "warp", "expected_version": made.version},
                           headers=bearer(tokens.resolver))
    assert resolved.status_code == 200


# --- roles -------------------------------------------------------------------------------------------------------


def test_an_admin_reads_but_cannot_resolve(client, tokens, make_conflict, engine) -> None:
    made = make_conflict()
    sign_in(client, tokens.admin)
    html = client.get("/review/conflicts").get_data(as_text=True)
    assert f'id="conflict-{made.id}"' in html
    assert "Keep WARP" not in html  # no resolve forms for a role that may not resolve
    assert f"/review/customers/{made.customer_id}" in html
    response = client.post(f"/review/conflicts/{made.id}/resolve",
                           data={"csrf_token": csrf_from(html), "choice": "warp", "expected_version": made.version})
    assert response.status_code == 403
    assert "may not conflicts resolve" in response.get_data(as_text=True)
    assert conflict_row(engine, made.id)["status"] == "open"
    assert client.get(f"/review/customers/{made.customer_id}").status_code == 200


def test_a_resolver_reads_the_history_of_customers_with_conflicts_only(client, tokens, make_conflict,
                                                                        engine) -> None:
    made = make_conflict()
    sign_in(client, tokens.resolver)
    html = client.get("/review/conflicts").get_data(as_text=True)
    assert f"/review/customers/{made.customer_id}" in html
    page = client.get(f"/review/customers/{made.customer_id}")
    assert page.status_code == 200 and "Waiting for a person." in page.get_data(as_text=True)
    with engine.begin() as conn:
        other = conn.execute(sa.text("INSERT INTO customers (ban, company_name) VALUES ('ZT-399999999', 'Quiet Co') "
                                     "RETURNING id")).scalar_one()
    refused = client.get(f"/review/customers/{other}")
    assert refused.status_code == 403 and "customers with conflicts only" in refused.get_data(as_text=True)
    # The same answer for a customer that does not exist: nothing to probe.
    assert client.get("/review/customers/00000000-0000-4000-8000-000000000000").status_code == 403


def test_api_refuses_missing_wrong_and_wrong_role_credentials(client, tokens, make_conflict) -> None:
    made = make_conflict()
    path = f"/v1/conflicts/{made.id}/resolve"
    body = {"choice": "warp", "expected_version": made.version}
    cases = [
        ("GET", "/v1/conflicts", {}, 401),
        ("GET", "/v1/conflicts", bearer("wsk_wrong"), 401),
        ("GET", "/v1/conflicts", {"Authorization": f"Basic {tokens.resolver}"}, 401),
        ("GET", f"/v1/conflicts/{made.id}", {}, 401),
        ("POST", path, {}, 401),
        ("POST", path, bearer("wsk_wrong"), 401),
        ("POST", path, bearer(tokens.admin), 403),  # admin reads, only a resolver resolves
    ]
    for method, url, headers, status in cases:
        response = client.open(url, method=method, headers=headers, json=body if method == "POST" else None)
        assert response.status_code == status, (method, url, headers)
        assert response.get_json()["error"]["code"] == ("UNAUTHORIZED" if status == 401 else "FORBIDDEN")
    assert client.get("/v1/conflicts", headers=bearer(tokens.admin)).status_code == 200
    assert client.get("/v1/conflicts", headers=bearer(tokens.resolver)).status_code == 200


# --- resolving from the page --------------------------------------------------------------------------------------


def test_resolve_each_way_from_the_page(client, tokens, make_conflict, portal, engine) -> None:
    keep_warp = make_conflict("contact_email")
    take_hubspot = make_conflict("company_name", warp={"company_name": "Acme Ltd"},
                                 hubspot={"name": "Acme Limited"}, agreed="Acme")
    corrected = make_conflict("credit_limit", warp={"credit_limit": "100.00"}, hubspot={"warp_credit_limit": "200"},
                              agreed="50.00")
    sign_in(client, tokens.resolver)

    for made, choice, value in ((keep_warp, "warp", None), (take_hubspot, "hubspot", None),
                                (corrected, "value", "150.25")):
        data = {**page_form(client, made.id), "choice": choice}
        if value is not None:
            data["value"] = value
        response = client.post(f"/review/conflicts/{made.id}/resolve", data=data)
        assert response.status_code == 303, response.get_data(as_text=True)
        landing = client.get(response.headers["Location"]).get_data(as_text=True)
        assert f"Conflict {made.id} resolved" in landing
        assert f'id="conflict-{made.id}"' not in landing  # gone from the open queue

    assert hubspot_value(portal, keep_warp.company_id, "warp_contact_email") == "Ops@Acme.example"
    assert warp_value(engine, keep_warp.customer_id, "contact_email") == "Ops@Acme.example"
    assert hubspot_value(portal, take_hubspot.company_id, "name") == "Acme Limited"
    assert warp_value(engine, take_hubspot.customer_id, "company_name") == "Acme Limited"
    assert Decimal(hubspot_value(portal, corrected.company_id, "warp_credit_limit")) == Decimal("150.25")
    assert warp_value(engine, corrected.customer_id, "credit_limit") == Decimal("150.25")
    for made, resolution in ((keep_warp, "warp"), (take_hubspot, "hubspot"), (corrected, "value")):
        row = conflict_row(engine, made.id)
        assert (row["status"], row["closed_by"], row["resolution"]) == ("resolved", "alice", resolution)
        assert {e["actor"] for e in resolution_log(engine, made.customer_id)} == {"alice"}


def test_an_invalid_corrected_value_is_shown_back_with_the_reason(client, tokens, make_conflict, engine) -> None:
    made = make_conflict("contact_email")
    sign_in(client, tokens.resolver)
    data = {**page_form(client, made.id), "choice": "value", "value": "not an email"}
    response = client.post(f"/review/conflicts/{made.id}/resolve", data=data)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "INVALID_VALUE" in html and "is not an email address" in html
    assert 'value="not an email"' in html  # the person's draft is kept
    assert conflict_row(engine, made.id)["status"] == "open"


def test_a_stale_form_shows_who_resolved_it_and_what_changed(client, tokens, make_conflict, engine) -> None:
    made = make_conflict("contact_email")
    sign_in(client, tokens.resolver)
    form = page_form(client, made.id)
    # Meanwhile bob settles it through the API.
    bob = client.application.test_client()
    bob.post(f"/v1/conflicts/{made.id}/resolve", json={"choice": "hubspot", "expected_version": made.version},
             headers=bearer(tokens.resolver2))

    response = client.post(f"/review/conflicts/{made.id}/resolve",
                           data={**form, "choice": "warp", "seen_warp": "ops@acme.example",
                                 "seen_hubspot": "billing@acme.example"})

    assert response.status_code == 409
    html = response.get_data(as_text=True)
    assert "CONFLICT_CHANGED" in html and "already resolved by bob" in html
    assert "You saw" in html and "ops@acme.example" in html
    assert warp_value(engine, made.customer_id, "contact_email") == "billing@acme.example"


def test_values_from_hubspot_are_escaped(client, tokens, make_conflict) -> None:
    made = make_conflict("company_name", warp={"company_name": "Acme"},
                         hubspot={"name": "<script>alert(1)</script>"}, agreed="Acme Old")
    sign_in(client, tokens.both)
    for path in ("/review/conflicts", f"/review/customers/{made.customer_id}"):
        html = client.get(path).get_data(as_text=True)
        assert "<script>alert(1)</script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_the_queue_filters_by_field_and_customer(client, tokens, make_conflict) -> None:
    email = make_conflict("contact_email", warp={"company_name": "Initech"}, hubspot={"name": "Initech"})
    limit = make_conflict("credit_limit", warp={"credit_limit": "1.00", "company_name": "Umbrella"},
                          hubspot={"name": "Umbrella"}, agreed="2.00")
    sign_in(client, tokens.resolver)

    def shown(query: str) -> set[int]:
        html = client.get(f"/review/conflicts{query}").get_data(as_text=True)
        return {c.id for c in (email, limit) if f'id="conflict-{c.id}"' in html}

    assert shown("") == {email.id, limit.id}
    assert shown("?field=credit_limit") == {limit.id}
    assert shown("?customer=initech") == {email.id}
    assert shown("?customer=nobody") == set()
    assert client.get("/review/conflicts?field=not_a_field").status_code == 400


# --- history --------------------------------------------------------------------------------------------------


def test_the_customer_page_shows_what_changed_which_way_why_and_in_which_run(
    client, tokens, make_conflict, engine
) -> None:
    made = make_conflict("contact_email")
    with engine.begin() as conn:
        log_sync(conn, SyncLogEntry(
            trigger=Trigger.RECONCILIATION, outcome=Outcome.APPLIED, customer_id=made.customer_id,
            warp_field="status", hubspot_property="warp_status", direction=Direction.WARP_TO_HUBSPOT,
            old_value="PENDING", new_value="ACTIVE", action="WRITE_TO_HUBSPOT", reason="ONE_WAY_FROM_WARP",
            run_id="run-4f2a9c",
        ))
    api = client.application.test_client()
    api.post(f"/v1/conflicts/{made.id}/resolve", json={"choice": "warp", "expected_version": made.version},
             headers=bearer(tokens.both))
    sign_in(client, tokens.both)

    html = client.get(f"/review/customers/{made.customer_id}").get_data(as_text=True)

    history = html.split('id="history"', 1)[1]
    assert "run <code>run-4f2a9c</code>" in history and "Flows from WARP only: WARP&#39;s value copied" in history
    assert "ONE_WAY_FROM_WARP" not in history  # the code stays in the data; people read its sentence
    assert "reconciliation" in history and "resolution" in history
    assert history.count("WARP → HubSpot") == 2
    assert "dave" in history and "Chosen by a person on the review pages." in history
    assert "billing@acme.example" in history and "ops@acme.example" in history
    assert ">Resolved</span>" in html and "by dave: kept WARP&#39;s value" in html  # the closed conflict, in words
    assert client.get("/review/customers/00000000-0000-0000-0000-000000000000").status_code == 404
    assert client.get("/review/customers/not-a-uuid").status_code == 404


def test_history_rows_of_a_failed_create_by_ban_are_included(client, tokens, make_conflict, engine) -> None:
    made = make_conflict("contact_email")
    with engine.begin() as conn:
        ban = conn.execute(sa.text("SELECT ban FROM customers WHERE id = :id"), {"id": made.customer_id}).scalar_one()
        log_sync(conn, SyncLogEntry(trigger=Trigger.CREATE, outcome=Outcome.ROLLED_BACK, ban=ban,
                                    error_code="HUBSPOT_SYNC_FAILED", error="an earlier attempt"))
    sign_in(client, tokens.admin)
    html = client.get(f"/review/customers/{made.customer_id}").get_data(as_text=True)
    assert "rolled_back" in html and "an earlier attempt" in html


def test_an_admin_is_told_why_there_are_no_resolve_buttons(client, tokens, make_conflict) -> None:
    made = make_conflict()
    sign_in(client, tokens.admin)
    html = client.get("/review/conflicts").get_data(as_text=True)
    assert f'id="take-warp-{made.id}"' not in html
    assert 'id="read-only"' in html and "resolving needs the <strong>resolver</strong> role" in html
    resolver = client.application.test_client()
    sign_in(resolver, tokens.resolver)
    assert 'id="read-only"' not in resolver.get("/review/conflicts").get_data(as_text=True)


def test_conflicts_and_customers_link_their_hubspot_record(client, tokens, make_conflict) -> None:
    made = make_conflict()
    sign_in(client, tokens.both)
    record = f"https://app.hubspot.com/contacts/62515/record/0-2/{made.company_id}"  # the sandbox's account details
    conflicts = client.get("/review/conflicts").get_data(as_text=True)
    assert f'<a class="muted" href="{record}"' in conflicts
    assert "WARP contact email (contact_email)" in conflicts
    customer = client.get(f"/review/customers/{made.customer_id}").get_data(as_text=True)
    assert f'href="{record}"' in customer
    assert str(made.customer_id) not in customer.replace(f"/review/customers/{made.customer_id}", "")


def test_the_history_says_what_happened_to_a_conflict(client, tokens, make_conflict, engine) -> None:
    made = make_conflict("contact_email")
    with engine.begin() as conn:  # the audit row the nightly writes when it opens a conflict (warp_apply)
        log_sync(conn, SyncLogEntry(
            trigger=Trigger.RECONCILIATION, outcome=Outcome.CONFLICT, customer_id=made.customer_id,
            warp_field="contact_email", hubspot_property="warp_contact_email", old_value="finance@acme.example",
            new_value="ap@acme.example", action="OPEN_CONFLICT", reason="CONFLICT_MANUAL_REVIEW",
            details={"conflict_id": made.id, "opened": True}, run_id="run-77aa"))
    api = client.application.test_client()
    api.post(f"/v1/conflicts/{made.id}/resolve", json={"choice": "hubspot", "expected_version": made.version},
             headers=bearer(tokens.both))
    sign_in(client, tokens.both)
    history = client.get(f"/review/customers/{made.customer_id}").get_data(as_text=True).split('id="history"')[1]
    opened = (f'Conflict #{made.id} opened: WARP has <span class="value">finance@acme.example</span>, HubSpot has '
              '<span class="value">ap@acme.example</span>.')
    assert opened in history
    assert f"Conflict #{made.id} resolved by dave:" in history
    assert "→ <span class=\"value\">(none)</span>" not in history  # a conflict is not a value cleared
