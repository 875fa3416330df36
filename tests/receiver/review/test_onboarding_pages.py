"""The onboarding preview in the review pages: read in full by an admin, candidates decided, approved once, fresh."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from tests.receiver.review.conftest import csrf_from, sign_in
from warp_sync_pipeline.core.onboarding.matching import (
    COMPANY_COLUMNS,
    CUSTOMER_COLUMNS,
    MatchPolicy,
    match,
)
from warp_sync_pipeline.core.onboarding.preview import PortalChecks, Preview, store_preview


@pytest.fixture
def preview_id(engine: sa.Engine, make_customer: Callable[..., Any]) -> int:
    """A stored preview: one customer by BAN, two review candidates for one customer, one of them also another
    customer's candidate, and a customer without any."""
    ids = {
        "ban": make_customer("Acme Telecom Ltd", contact_email="ops@acme.example"),
        "review": make_customer("Northwind Traders", contact_email="northwind@gmail.com"),
        "other": make_customer("Northwind Trading", contact_email=None),
        "none": make_customer("Lonely Customer", contact_email="x@lonely.example"),
    }
    with engine.connect() as conn:
        bans = dict(conn.execute(sa.text("SELECT id, ban FROM customers")).all())
    customers = pd.DataFrame([(str(i), bans[i], name, email, None) for i, name, email in (
        (ids["ban"], "Acme Telecom Ltd", "ops@acme.example"), (ids["review"], "Northwind Traders", None),
        (ids["other"], "Northwind Trading", None), (ids["none"], "Lonely Customer", "x@lonely.example"))],
        columns=list(CUSTOMER_COLUMNS))
    companies = pd.DataFrame([
        ("101", bans[ids["ban"]], "Acme Telecom", "acme.example", None, None, "INTEGRATION"),
        ("102", None, "Nortwind Traders Inc", None, None, None, "CRM_UI"),
        ("103", None, "Northwind Traders GmbH", "northwind.example", None, None, "CRM_UI"),
    ], columns=list(COMPANY_COLUMNS))
    result = match(customers, companies, MatchPolicy(common_min=10))
    preview = Preview(pulled_at=datetime.now(UTC), counts=result.counts(), fields=[
        {"field": "credit_limit", "kind": "change", "action": "WRITE_TO_WARP", "reason": "NO_AGREED_VALUE", "pairs": 1}],
        portal=PortalChecks(ban_property="unique", duplicate_bans=0, sampled_companies=1,
                            writers={"warp_credit_limit": {"INTEGRATION:54321": 1, "INTEGRATION:777": 1}},
                            shared=["warp_credit_limit"]))
    return store_preview(engine, preview, result, companies, run_id="run-1")


def _rows(engine: sa.Engine, preview: int) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT o.id, c.company_name, o.company_id, o.category, o.decision, o.decided_by "
            "FROM onboarding_candidates o LEFT JOIN customers c ON c.id = o.customer_id "
            "WHERE preview_id = :p ORDER BY o.id"), {"p": preview}).all()


def _review_row(engine: sa.Engine, preview: int, customer: str, company: str) -> int:
    return next(r.id for r in _rows(engine, preview) if r.company_name == customer and r.company_id == company)


def test_an_admin_reads_the_preview_in_full(client, tokens, preview_id: int) -> None:  # noqa: ANN001
    sign_in(client, tokens.admin)
    listing = client.get("/review/onboarding").get_data(as_text=True)
    assert f'/review/onboarding/{preview_id}"' in listing and "ready" in listing
    page = client.get(f"/review/onboarding/{preview_id}?category=review")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Northwind Traders" in html and "Nortwind Traders Inc" in html and "northwind.example" in html
    assert "warp_credit_limit" in html and "Written by several integrations" in html
    assert 'id="approve"' in html
    linked = client.get(f"/review/onboarding/{preview_id}?category=linked_by_ban").get_data(as_text=True)
    assert "Acme Telecom Ltd" in linked and "warp_ban equals the BAN" in linked


def test_a_resolver_cannot_open_the_onboarding_pages(client, tokens, preview_id: int) -> None:  # noqa: ANN001
    sign_in(client, tokens.resolver)
    assert client.get(f"/review/onboarding/{preview_id}").status_code == 403


def test_a_person_links_one_candidate_and_a_second_link_of_the_company_is_refused(
        client, tokens, engine: sa.Engine, preview_id: int) -> None:  # noqa: ANN001
    sign_in(client, tokens.admin)
    html = client.get(f"/review/onboarding/{preview_id}?category=review").get_data(as_text=True)
    first = _review_row(engine, preview_id, "Northwind Traders", "102")
    answer = client.post(f"/review/onboarding/{preview_id}/candidates/{first}",
                         data={"csrf_token": csrf_from(html), "decision": "confirmed"})
    assert answer.status_code == 303
    decided = {r.id: (r.decision, r.decided_by) for r in _rows(engine, preview_id)}
    assert decided[first] == ("confirmed", "carol")
    # The same customer to another company, or the same company to another customer: refused.
    rivals = [r.id for r in _rows(engine, preview_id) if r.category == "review" and r.id != first
              and (r.company_name == "Northwind Traders" or r.company_id == "102")]
    assert rivals
    for row in rivals:
        refused = client.post(f"/review/onboarding/{preview_id}/candidates/{row}",
                              data={"csrf_token": csrf_from(html), "decision": "confirmed"})
        assert refused.status_code == 409 and "ALREADY_LINKED" in refused.get_data(as_text=True)
    # Without its CSRF token a decision is refused.
    assert client.post(f"/review/onboarding/{preview_id}/candidates/{first}",
                       data={"decision": "rejected"}).status_code in (400, 403)


def test_approval_is_once_by_an_admin_and_only_while_the_preview_is_fresh(
        client, tokens, engine: sa.Engine, preview_id: int) -> None:  # noqa: ANN001
    sign_in(client, tokens.admin)
    html = client.get(f"/review/onboarding/{preview_id}").get_data(as_text=True)
    with engine.begin() as conn:  # pulled 25 hours ago: too old to approve
        conn.execute(sa.text("UPDATE onboarding_previews SET pulled_at = :t WHERE id = :id"),
                     {"t": datetime.now(UTC) - timedelta(hours=25), "id": preview_id})
    stale = client.post(f"/review/onboarding/{preview_id}/approve", data={"csrf_token": csrf_from(html)})
    assert stale.status_code == 409 and "PREVIEW_TOO_OLD" in stale.get_data(as_text=True)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE onboarding_previews SET pulled_at = now() WHERE id = :id"), {"id": preview_id})
    approved = client.post(f"/review/onboarding/{preview_id}/approve",
                           data={"csrf_token": csrf_from(html), "create_missing": "on"})
    assert approved.status_code == 303
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT status, approved_by, approval FROM onboarding_previews WHERE id = :id"),
                           {"id": preview_id}).one()
    assert (row.status, row.approved_by, row.approval) == ("approved", "carol",
                                                           {"create_missing": True, "set_domain": False})
    again = client.post(f"/review/onboarding/{preview_id}/approve", data={"csrf_token": csrf_from(html)})
    assert again.status_code == 409 and "PREVIEW_NOT_OPEN" in again.get_data(as_text=True)


def test_creates_are_refused_where_hubspot_does_not_keep_the_ban_unique(
        client, tokens, engine: sa.Engine, preview_id: int) -> None:  # noqa: ANN001
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE onboarding_previews SET summary = jsonb_set(summary, '{portal,ban_property}', "
                             "'\"not unique\"') WHERE id = :id"), {"id": preview_id})
    sign_in(client, tokens.admin)
    html = client.get(f"/review/onboarding/{preview_id}").get_data(as_text=True)
    refused = client.post(f"/review/onboarding/{preview_id}/approve",
                          data={"csrf_token": csrf_from(html), "create_missing": "on"})
    assert refused.status_code == 409 and "BAN_PROPERTY_NOT_UNIQUE" in refused.get_data(as_text=True)
    # Links alone can still be approved.
    assert client.post(f"/review/onboarding/{preview_id}/approve",
                       data={"csrf_token": csrf_from(html)}).status_code == 303


def test_a_person_labels_the_sample_and_the_preview_reports_measured_precision(
        client, tokens, engine: sa.Engine, preview_id: int) -> None:  # noqa: ANN001
    sign_in(client, tokens.admin)
    with engine.connect() as conn:
        sampled = conn.execute(sa.text("SELECT id, category FROM onboarding_candidates WHERE preview_id = :p "
                                       "AND in_sample ORDER BY id"), {"p": preview_id}).all()
    assert {category for _, category in sampled} == {"linked_by_ban", "review"}  # every pair category drawn
    html = client.get(f"/review/onboarding/{preview_id}/sample").get_data(as_text=True)
    assert all(f'id="row-{row_id}"' in html for row_id, _ in sampled)
    for row_id, category in sampled:
        label = "same" if category == "linked_by_ban" else "different"
        answer = client.post(f"/review/onboarding/{preview_id}/sample/{row_id}",
                             data={"csrf_token": csrf_from(html), "label": label})
        assert answer.status_code == 303
    page = client.get(f"/review/onboarding/{preview_id}").get_data(as_text=True)
    precision = page.split('id="precision"', 1)[1].split("</table>", 1)[0]
    assert "100.0%" in precision and "0.0%" in precision
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM onboarding_candidates WHERE labelled_by = 'carol'")
                            ).scalar_one() == len(sampled)
    # A label links nothing.
    assert client.post(f"/review/onboarding/{preview_id}/sample/999999",
                       data={"csrf_token": csrf_from(html), "label": "same"}).status_code == 404
