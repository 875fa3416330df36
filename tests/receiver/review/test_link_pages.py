"""The link pages: an admin settles a customer's link (re-link, unlink, a new company, stuck queue rows), every
decision audited with who made it, never two customers on one company."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from tests.receiver.review.conftest import csrf_from, sign_in


def _link(engine: sa.Engine, customer: UUID) -> tuple[str, str | None]:
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT hubspot_link_status, external_ids ->> 'hubspot_company_id' "
                                   "FROM customers WHERE id = :c"), {"c": customer}).one()
    return row[0], row[1]


def _audited(engine: sa.Engine, customer: UUID) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT reason, actor FROM hubspot_sync_log WHERE customer_id = :c AND trigger = 'manual' ORDER BY id"),
            {"c": customer}).all()]


def _post(client: Any, customer: UUID, action: str, **form: str) -> Any:  # noqa: ANN401
    html = client.get(f"/review/links/{customer}").get_data(as_text=True)
    return client.post(f"/review/links/{customer}/{action}", data={"csrf_token": csrf_from(html), **form})


def test_a_deleted_companys_customer_is_relinked_or_unlinked_and_given_a_new_company(
        client, tokens, engine: sa.Engine, portal, make_customer: Callable[..., Any]) -> None:  # noqa: ANN001
    gone = portal.create_company({"name": "Gone Ltd"})
    customer = make_customer("Gone Ltd", company_id=gone.id, hubspot_link_status="deleted")
    other = portal.create_company({"name": "Held Ltd"})
    holder = make_customer("Held Ltd", company_id=other.id)
    sign_in(client, tokens.admin)
    listing = client.get("/review/links?status=deleted").get_data(as_text=True)
    assert f"/review/links/{customer}" in listing and f"/review/links/{holder}" not in listing

    taken = _post(client, customer, "relink", company_id=other.id)
    assert taken.status_code == 409 and "COMPANY_TAKEN" in taken.get_data(as_text=True)
    missing = _post(client, customer, "relink", company_id="99999999999")
    assert missing.status_code == 404 and "COMPANY_NOT_FOUND" in missing.get_data(as_text=True)
    assert _post(client, customer, "relink", company_id="\u00b2").status_code == 400  # a digit int() refuses
    assert _link(engine, customer) == ("deleted", gone.id)

    assert _post(client, customer, "unlink").status_code == 303
    assert _link(engine, customer) == ("unlinked", None)
    assert _post(client, customer, "create").status_code == 303
    status, company = _link(engine, customer)
    assert status == "linked" and company not in (None, gone.id, other.id)
    assert portal.get_company(company, properties=["warp_ban"]).properties["warp_ban"]
    assert [reason for reason, _ in _audited(engine, customer)] == ["UNLINKED", "CREATED"]
    assert {actor for _, actor in _audited(engine, customer)} == {"carol"}

    fresh = portal.create_company({"name": "Fresh Ltd"})
    assert _post(client, customer, "relink", company_id=fresh.id).status_code == 303
    assert _link(engine, customer) == ("linked", fresh.id)


def test_stuck_queue_rows_are_sent_again(client, tokens, engine: sa.Engine,
                                         make_customer: Callable[..., Any]) -> None:  # noqa: ANN001
    customer = make_customer("Stuck Ltd")
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO hubspot_sync_queue (customer_id, fields, reasons, status, attempts, last_error_code, "
            "last_error) VALUES (:c, ARRAY['credit_limit'], ARRAY['warp_change'], 'dead', 3, 'HUBSPOT_FAILED', 'x')"
        ), {"c": customer})
    sign_in(client, tokens.admin)
    assert _post(client, customer, "retry").status_code == 303
    with engine.connect() as conn:
        statuses = conn.execute(sa.text("SELECT status FROM hubspot_sync_queue WHERE customer_id = :c"),
                                {"c": customer}).scalars().all()
    assert statuses == ["pending"]
    assert _audited(engine, customer) == [("QUEUE_RETRIED", "carol")]


def test_only_an_admin_settles_links(client, tokens, make_customer: Callable[..., Any]) -> None:  # noqa: ANN001
    customer = make_customer("Someone Ltd")
    sign_in(client, tokens.resolver)
    assert client.get(f"/review/links/{customer}").status_code == 403
    assert client.get("/review/links").status_code == 403
