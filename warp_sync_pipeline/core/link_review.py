"""Links a person settles (the link pages): customers whose company was deleted in HubSpot, customers marked for
review (a merge put two of them on one company), and customers without a company. A person re-links one to a
chosen company, unlinks it, has a company created for it, or sends its parked and dead queue rows again. Each
decision is audited with who made it; a customer is never put on a company another customer holds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from uuid import UUID

import sqlalchemy as sa

from warp_sync_pipeline.core.audit import Outcome, SyncLogEntry, Trigger, log_sync
from warp_sync_pipeline.core.company_creates import CreateRequest, CreateStatus, create_companies
from warp_sync_pipeline.core.errors import Failure, ServiceError
from warp_sync_pipeline.core.failures import error_code
from warp_sync_pipeline.core.fields import FieldRules
from warp_sync_pipeline.core.hubspot import HubSpotClient, HubSpotError, NotFound
from warp_sync_pipeline.core.links import LinkStatus, linked_to, set_link, unlink
from warp_sync_pipeline.core.outbound import QueueStatus, retry_stopped
from warp_sync_pipeline.core.sync_tables import customers

PAGE_SIZE = 50
NEEDS_A_PERSON = (LinkStatus.DELETED.value, LinkStatus.REVIEW.value, LinkStatus.UNLINKED.value)


class LinkReviewError(ServiceError):
    """A link decision that cannot be carried out as asked; `code` is stable."""


@dataclass(frozen=True)
class LinkCase:
    id: UUID
    ban: str
    company_name: str
    contact_email: str | None
    link_status: str
    company_id: str | None
    stuck_rows: int  # parked and dead queue rows


@dataclass(frozen=True)
class LinkPage:
    rows: list[LinkCase]
    next_after: str | None


def cases(engine: sa.Engine, status: str, *, after: str | None = None, limit: int = PAGE_SIZE) -> LinkPage:
    """A page of the customers with this link status (deleted, review or unlinked), by BAN."""
    if status not in NEEDS_A_PERSON:
        raise LinkReviewError(Failure.INVALID, "VALIDATION_ERROR", f"{status!r} is not a link status a person settles.")
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"{_SELECT_CASE} WHERE c.hubspot_link_status = :status AND c.ban > :after "
                                    "ORDER BY c.ban LIMIT :limit"),
                            {"status": status, "after": after or "", "limit": limit + 1}).all()
    page = [LinkCase(*row) for row in rows[:limit]]
    return LinkPage(page, page[-1].ban if len(rows) > limit else None)


def case(engine: sa.Engine, customer_id: UUID) -> LinkCase | None:
    with engine.connect() as conn:
        row = conn.execute(sa.text(f"{_SELECT_CASE} WHERE c.id = :id"), {"id": customer_id}).first()
    return LinkCase(*row) if row else None


def relink(engine: sa.Engine, client: HubSpotClient, customer_id: UUID, company_id: str, *, actor: str) -> None:
    """Link the customer to a company a person chose: it must exist in HubSpot and be nobody else's."""
    if not re.fullmatch(r"[0-9]{1,20}", company_id.strip()):
        raise LinkReviewError(Failure.INVALID, "VALIDATION_ERROR", "A HubSpot company id is a number.")
    try:
        # A merged-away id answers with the company it became: that one is linked.
        company_id = client.get_company(company_id.strip(), properties=["name"]).id
    except NotFound:
        raise LinkReviewError(Failure.NOT_FOUND, "COMPANY_NOT_FOUND",
                              f"HubSpot has no company {company_id} (deleted).") from None
    except HubSpotError as exc:
        raise LinkReviewError(Failure.HUBSPOT_FAILED, error_code(exc), f"HubSpot did not answer: {exc}") from None
    with engine.begin() as conn:
        before = _locked(conn, customer_id)
        holders = [h for h in linked_to(conn, [company_id]) if h.id != customer_id]
        if holders:
            raise LinkReviewError(Failure.CONFLICT, "COMPANY_TAKEN",
                                  f"Company {company_id} is linked to customer {holders[0].ban}: unlink it there first.")
        try:
            with conn.begin_nested():
                set_link(conn, customer_id, status=LinkStatus.LINKED.value, company_id=company_id)
        except sa.exc.IntegrityError:  # another person linked it to someone else a moment ago
            raise LinkReviewError(Failure.CONFLICT, "COMPANY_TAKEN",
                                  f"Company {company_id} was just linked to another customer.") from None
        _audit(conn, customer_id, before, "RELINKED", company_id, actor)


def unlink_customer(engine: sa.Engine, customer_id: UUID, *, actor: str) -> None:
    with engine.begin() as conn:
        before = _locked(conn, customer_id)
        unlink(conn, customer_id)
        _audit(conn, customer_id, before, "UNLINKED", None, actor)


def create_company(engine: sa.Engine, client: HubSpotClient, rules: FieldRules, customer_id: UUID, *,
                   actor: str) -> str:
    """A new company for an unlinked customer (the create step every flow shares); returns its id."""
    with engine.connect() as conn:
        current = _locked(conn, customer_id, lock=False)
    if current["hubspot_link_status"] != LinkStatus.UNLINKED.value:
        raise LinkReviewError(Failure.CONFLICT, "CUSTOMER_LINKED",
                              "Only an unlinked customer gets a new company: unlink it first.")
    try:
        outcomes = create_companies(engine, client, [str(customer_id)], rules,
                                    CreateRequest(Trigger.MANUAL, None, actor=actor))
    except HubSpotError as exc:
        raise LinkReviewError(Failure.HUBSPOT_FAILED, error_code(exc), f"HubSpot did not answer: {exc}") from None
    if not outcomes:
        raise LinkReviewError(Failure.NOT_FOUND, "NOT_FOUND", f"No customer {customer_id}.")
    outcome = outcomes[0]
    if outcome.status in (CreateStatus.CREATED, CreateStatus.ADOPTED) and outcome.company_id:
        return outcome.company_id
    raise LinkReviewError(Failure.HUBSPOT_FAILED, outcome.code or "CREATE_FAILED",
                          outcome.message or f"The company was not made ({outcome.status.value}); try again.")


def retry_stuck_rows(engine: sa.Engine, customer_id: UUID, *, actor: str) -> int:
    """Send the customer's parked and dead queue rows again, once their cause is settled."""
    retried = retry_stopped(engine, statuses=(QueueStatus.DEAD, QueueStatus.PARKED), customer_ids=[customer_id])
    with engine.begin() as conn:
        log_sync(conn, SyncLogEntry(trigger=Trigger.MANUAL, outcome=Outcome.APPLIED, customer_id=customer_id,
                                    actor=actor, reason="QUEUE_RETRIED", details={"rows": retried}))
    return retried


def _locked(conn: sa.Connection, customer_id: UUID, *, lock: bool = True) -> sa.RowMapping:
    query = (sa.select(customers.c.ban, customers.c.hubspot_link_status, customers.c.external_ids)
             .where(customers.c.id == customer_id))
    row = conn.execute(query.with_for_update() if lock else query).mappings().first()
    if row is None:
        raise LinkReviewError(Failure.NOT_FOUND, "NOT_FOUND", f"No customer {customer_id}.")
    return row


def _audit(conn: sa.Connection, customer_id: UUID, before: sa.RowMapping, reason: str, company_id: str | None,
           actor: str) -> None:
    log_sync(conn, SyncLogEntry(
        trigger=Trigger.MANUAL, outcome=Outcome.APPLIED, customer_id=customer_id, ban=before["ban"], actor=actor,
        reason=reason, old_value=(before["external_ids"] or {}).get("hubspot_company_id"), new_value=company_id,
        details={"link_status_before": before["hubspot_link_status"]}))


_SELECT_CASE = (
    "SELECT c.id, c.ban, c.company_name, c.contact_email, c.hubspot_link_status, "
    "c.external_ids ->> 'hubspot_company_id', "
    "(SELECT count(*) FROM hubspot_sync_queue q WHERE q.customer_id = c.id AND q.status IN ('parked', 'dead')) "
    "FROM customers c"
)
