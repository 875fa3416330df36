"""Following a HubSpot merge to the company it made: one function for the merge webhook (core.inbound) and for a
merge found any other way (a batch read that answers a merged-away id with the merged record, in core.outbound).

HubSpot's merges make a new company with a new id, and both old ids resolve to it (hubspot-api.md, section 12). The
customers linked to any of the merged ids follow it:
- none linked: nothing to do;
- one customer linked to a merged-away id, and nobody to the survivor: that customer's link moves to the survivor
  (`LINK_REPOINTED`);
- already linked to the survivor, and nobody else: nothing moves;
- otherwise (two customers would share one company): every one of them is marked `review` for a person
  (`LINK_REVIEW`). A customer is never put on a company another customer holds.
Link writes carry the no-echo marker, so the outbox does not queue them back to HubSpot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from uuid import UUID

import sqlalchemy as sa

from warp_sync_pipeline.core.sync_tables import customer_company_id, customers, mark_from_hubspot


class LinkStatus(StrEnum):
    """`customers.hubspot_link_status` (sql/001): the one place its values are spelled."""

    UNLINKED = "unlinked"  # no company yet (a create that failed, or data from before warp-sync)
    LINKED = "linked"
    DELETED = "deleted"  # the company was deleted in HubSpot: a person decides; never re-created
    REVIEW = "review"  # a merge or a duplicate: a person decides



@dataclass(frozen=True)
class LinkChange:
    """One customer's link as a merge changed it, for the audit log."""

    customer_id: UUID
    ban: str
    action: str  # LINK_REPOINTED or LINK_REVIEW
    old: str | None
    new: str | None


@dataclass(frozen=True)
class MergeFollowed:
    # NO_CUSTOMER, MERGE_NOTHING_TO_MOVE, LINK_REPOINTED or LINK_REVIEW
    action: str
    survivor: str
    merged: list[str]
    customer_ids: list[str] = field(default_factory=list)
    changes: list[LinkChange] = field(default_factory=list)


@dataclass(frozen=True)
class _Linked:
    id: UUID
    ban: str
    company_id: str | None
    link_status: str


def linked_to_companies(company_ids: Iterable[str]) -> sa.ColumnElement[bool]:
    """Customers linked to any of these companies."""
    # `external_ids ? ...` lets PostgreSQL use the partial unique index on the company id.
    return sa.and_(customers.c.external_ids.has_key("hubspot_company_id"),
                   customer_company_id.in_([str(c) for c in company_ids]))


def linked_to(conn: sa.Connection, company_ids: Iterable[str], *, lock: bool = True) -> list[_Linked]:
    """The customers linked to these companies, locked in one order (id) when `lock`."""
    query = (sa.select(customers.c.id, customers.c.ban, customers.c.external_ids, customers.c.hubspot_link_status)
             .where(linked_to_companies(company_ids))
             .order_by(customers.c.id))
    if lock:
        query = query.with_for_update(of=customers)
    return [_Linked(UUID(str(r.id)), r.ban, (r.external_ids or {}).get("hubspot_company_id"), r.hubspot_link_status)
            for r in conn.execute(query)]


def update_from_hubspot(conn: sa.Connection, customer_id: UUID, values: Mapping[str, object]) -> None:
    """Write values that came from HubSpot: the transaction's no-echo marker makes the outbox trigger skip them."""
    mark_from_hubspot(conn)
    conn.execute(sa.update(customers).where(customers.c.id == customer_id).values(dict(values)))


def _link_values(status: str, company_id: str | None) -> dict[str, object]:
    values: dict[str, object] = {"hubspot_link_status": str(status)}
    if company_id is not None:
        values["external_ids"] = customers.c.external_ids.op("||")(
            sa.func.jsonb_build_object("hubspot_company_id", sa.cast(str(company_id), sa.Text)))
    return values


def set_link(conn: sa.Connection, customer_id: UUID, *, status: str, company_id: str | None = None) -> None:
    """A customer's HubSpot link (re-linked after a merge, marked deleted or for review), written as HubSpot's (the
    outbox trigger skips it)."""
    update_from_hubspot(conn, customer_id, _link_values(status, company_id))


def unlink(conn: sa.Connection, customer_id: UUID) -> None:
    """Drop a customer's link (a person's decision on the link pages): unlinked, no company id."""
    update_from_hubspot(conn, customer_id, {
        "hubspot_link_status": LinkStatus.UNLINKED.value,
        "external_ids": customers.c.external_ids.op("-")("hubspot_company_id"),
    })


def link_created(conn: sa.Connection, customer_id: UUID, company_id: str) -> sa.RowMapping:
    """Link a customer to the company its create just made, in the create's transaction; returns the row."""
    return conn.execute(
        sa.update(customers).where(customers.c.id == customer_id)
        .values(_link_values(LinkStatus.LINKED, company_id)).returning(*customers.c)
    ).mappings().one()


_LINK_BY_BAN = sa.text(
    """
    UPDATE customers AS c
    SET external_ids = c.external_ids || jsonb_build_object('hubspot_company_id', v.company_id),
        hubspot_link_status = :linked
    FROM unnest(CAST(:ids AS uuid[]), CAST(:companies AS text[])) AS v(id, company_id)
    WHERE c.id = v.id
      AND NOT (c.external_ids ? 'hubspot_company_id')
      AND c.hubspot_link_status = :unlinked
      -- The predicate of the partial unique index, repeated, so this probe uses it instead of scanning customers.
      AND NOT EXISTS (SELECT 1 FROM customers o
                      WHERE o.external_ids ? 'hubspot_company_id' AND o.external_ids ->> 'hubspot_company_id' = v.company_id)
    RETURNING c.id::text
    """
)


def link_unlinked(conn: sa.Connection, pairs: Sequence[tuple[str, str]]) -> set[str]:
    """Link customers to companies found for them (customer id, company id), only where the customer is still
    unlinked and no customer holds the company; returns the ids linked. Raises IntegrityError when another writer
    linked one of the companies meanwhile (the caller's savepoint then undoes the statement whole)."""
    if not pairs:
        return set()
    mark_from_hubspot(conn)  # the link is HubSpot's news: the outbox trigger must not queue it back
    return set(conn.execute(_LINK_BY_BAN, {
        "ids": [str(customer) for customer, _ in pairs], "companies": [str(company) for _, company in pairs],
        "linked": LinkStatus.LINKED.value, "unlinked": LinkStatus.UNLINKED.value,
    }).scalars())


def follow_merge(conn: sa.Connection, survivor: str, merged: Sequence[str], *,
                 hold: Callable[[list[UUID]], None]) -> MergeFollowed:
    """Move the links of companies merged into `survivor` (see the module docstring). `hold` takes the involved
    customers' leases (raising if another writer holds one) before anything is written."""
    gone = sorted({str(m) for m in merged} - {str(survivor)}, key=int)
    involved = linked_to(conn, [survivor, *gone])
    if not involved:
        return MergeFollowed("NO_CUSTOMER", survivor, gone)
    hold([c.id for c in involved])
    holder = next((c for c in involved if c.company_id == survivor), None)
    movers = [c for c in involved if c.company_id != survivor]
    if not movers:
        return MergeFollowed("MERGE_NOTHING_TO_MOVE", survivor, gone, [str(holder.id)] if holder else [])
    if holder is None and len(movers) == 1:
        mover = movers[0]
        set_link(conn, mover.id, company_id=survivor,
                 status=LinkStatus.DELETED if mover.link_status == LinkStatus.DELETED else LinkStatus.LINKED)
        return MergeFollowed("LINK_REPOINTED", survivor, gone, [str(mover.id)],
                             [LinkChange(mover.id, mover.ban, "LINK_REPOINTED", mover.company_id, survivor)])
    changes = []
    for customer in ([holder] if holder else []) + movers:
        if customer.link_status != LinkStatus.REVIEW:
            set_link(conn, customer.id, status=LinkStatus.REVIEW)
            changes.append(LinkChange(customer.id, customer.ban, "LINK_REVIEW", customer.link_status,
                                      LinkStatus.REVIEW))
    return MergeFollowed("LINK_REVIEW", survivor, gone, [str(c.id) for c in involved], changes)
