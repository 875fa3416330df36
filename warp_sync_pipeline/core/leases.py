"""Customer leases: one interactive writer per customer at a time (DESIGN.md, flow 2).

Every path that writes a customer's fields interactively (the queue drain, a webhook apply, a manual push, a
conflict resolution) holds that customer's lease while it writes. A lease is a row with a holder, a token
and an expiry, taken and released in short autocommit transactions on the database's clock, so no row lock
is held across an HTTP call. An expired lease can be taken over; a holder that asks again for a lease it
still holds renews it and keeps the token (the outer `hold_customer` releases it, the inner one does not),
so holder names must be unique per writer (include the run id or process). Release happens only while the
token is still ours.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

import sqlalchemy as sa

DEFAULT_TTL = timedelta(seconds=60)


class CustomerBusy(RuntimeError):
    """Another writer holds the customer's lease."""

    code = "CUSTOMER_BUSY"

    def __init__(self, customer_id: UUID, holder: str | None, expires_at: datetime | None) -> None:
        detail = f" by {holder} until {expires_at.isoformat()}" if holder and expires_at else ""
        super().__init__(f"customer {customer_id} is being written{detail}; try again later")
        self.customer_id = customer_id
        self.holder = holder
        self.expires_at = expires_at


class LeaseLost(RuntimeError):
    """The lease expired and another writer took it over."""

    code = "LEASE_LOST"


_ACQUIRE = """
    INSERT INTO hubspot_customer_leases AS lease (customer_id, holder, token, acquired_at, expires_at)
    SELECT id, :holder, CAST(:token AS uuid), clock_timestamp(), clock_timestamp() + CAST(:ttl AS interval)
    FROM unnest(CAST(:ids AS uuid[])) AS id
    ON CONFLICT (customer_id) DO UPDATE SET
        token = CASE WHEN lease.expires_at > clock_timestamp() THEN lease.token ELSE EXCLUDED.token END,
        acquired_at = CASE WHEN lease.expires_at > clock_timestamp()
                           THEN lease.acquired_at ELSE EXCLUDED.acquired_at END,
        holder = EXCLUDED.holder,
        expires_at = greatest(lease.expires_at, EXCLUDED.expires_at)
    -- Free when expired; renewed when the same holder still has it; otherwise left alone (busy).
    WHERE lease.expires_at <= clock_timestamp() OR lease.holder = EXCLUDED.holder
    RETURNING customer_id, token, expires_at
"""


def _autocommit(engine: sa.Engine) -> sa.Connection:
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")


def _unique_ids(customer_ids: Iterable[UUID | str]) -> list[UUID]:
    seen: dict[UUID, None] = {}
    for customer_id in customer_ids:
        seen.setdefault(UUID(str(customer_id)), None)
    return list(seen)


@dataclass
class CustomerLease:
    engine: sa.Engine
    customer_id: UUID
    holder: str
    token: UUID
    ttl: timedelta
    expires_at: datetime
    taken: bool = field(default=True)  # False when it renewed a lease this holder already held

    def renew(self, ttl: timedelta | None = None) -> datetime:
        """Push the expiry out; raises LeaseLost when the lease is no longer ours."""
        with _autocommit(self.engine) as conn:
            expires_at = conn.execute(
                sa.text(
                    "UPDATE hubspot_customer_leases "
                    "SET expires_at = greatest(expires_at, clock_timestamp() + CAST(:ttl AS interval)) "
                    "WHERE customer_id = :customer_id AND token = CAST(:token AS uuid) "
                    "AND expires_at > clock_timestamp() RETURNING expires_at"
                ),
                {"ttl": ttl or self.ttl, "customer_id": str(self.customer_id), "token": str(self.token)},
            ).scalar_one_or_none()
        if expires_at is None:
            raise LeaseLost(f"the lease on customer {self.customer_id} expired and was lost")
        self.expires_at = expires_at
        return expires_at

    def held(self) -> bool:
        with _autocommit(self.engine) as conn:
            return bool(
                conn.execute(
                    sa.text(
                        "SELECT 1 FROM hubspot_customer_leases WHERE customer_id = :customer_id "
                        "AND token = CAST(:token AS uuid) AND expires_at > clock_timestamp()"
                    ),
                    {"customer_id": str(self.customer_id), "token": str(self.token)},
                ).first()
            )


def acquire_customer(
    engine: sa.Engine, customer_id: UUID | str, holder: str, ttl: timedelta = DEFAULT_TTL
) -> CustomerLease:
    """Take (or, for the same holder, renew) one customer's lease; raises CustomerBusy."""
    customer = UUID(str(customer_id))
    token = uuid.uuid4()
    with _autocommit(engine) as conn:
        for _ in range(2):  # a second try only when the holder released between our two statements
            row = conn.execute(
                sa.text(_ACQUIRE), {"holder": holder, "token": str(token), "ttl": ttl, "ids": [str(customer)]}
            ).first()
            if row is not None:
                held = UUID(str(row.token))
                return CustomerLease(engine, customer, holder, held, ttl, row.expires_at, taken=held == token)
            current = conn.execute(
                sa.text("SELECT holder, expires_at FROM hubspot_customer_leases WHERE customer_id = :c"),
                {"c": str(customer)},
            ).first()
            if current is not None:
                raise CustomerBusy(customer, current.holder, current.expires_at)
    raise CustomerBusy(customer, None, None)


def acquire_customer_waiting(
    engine: sa.Engine, customer_id: UUID | str, holder: str, ttl: timedelta = DEFAULT_TTL, *, wait_s: float
) -> CustomerLease:
    """acquire_customer, waiting up to `wait_s` (with a growing pause) for a busy customer to come free.

    For interactive writers (a manual push, a resolution) that would rather wait a moment than refuse;
    raises the last CustomerBusy when the wait runs out.
    """
    deadline = time.monotonic() + wait_s
    pause = 0.05
    while True:
        try:
            return acquire_customer(engine, customer_id, holder, ttl)
        except CustomerBusy:
            if time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.5)


def release_customer(engine: sa.Engine, customer_id: UUID | str, token: UUID | str) -> bool:
    """Drop the lease if it is still ours (same token); False when it was lost or already gone."""
    return release_customers(engine, [customer_id], token) == 1


@contextmanager
def hold_customer(
    engine: sa.Engine, customer_id: UUID | str, holder: str, ttl: timedelta = DEFAULT_TTL
) -> Iterator[CustomerLease]:
    """Hold a customer's lease for the block; raises CustomerBusy when another writer holds it."""
    lease = acquire_customer(engine, customer_id, holder, ttl)
    try:
        yield lease
    finally:
        if lease.taken:
            release_customer(engine, lease.customer_id, lease.token)


@dataclass(frozen=True)
class BulkLease:
    token: UUID
    acquired: list[UUID]  # taken now under `token`
    already_held: list[UUID]  # this holder held them already (renewed, not taken: release is the other's)
    busy: list[UUID]  # another writer holds them


def acquire_customers(
    engine: sa.Engine, customer_ids: Iterable[UUID | str], holder: str, ttl: timedelta = DEFAULT_TTL
) -> BulkLease:
    """Take the leases of a batch of customers in one statement; reports which were acquired."""
    ids = _unique_ids(customer_ids)
    token = uuid.uuid4()
    if not ids:
        return BulkLease(token, [], [], [])
    with _autocommit(engine) as conn:
        rows = conn.execute(
            sa.text(_ACQUIRE), {"holder": holder, "token": str(token), "ttl": ttl, "ids": [str(i) for i in ids]}
        ).all()
    got = {UUID(str(row.customer_id)): UUID(str(row.token)) for row in rows}
    return BulkLease(
        token=token,
        acquired=[i for i in ids if got.get(i) == token],
        already_held=[i for i in ids if i in got and got[i] != token],
        busy=[i for i in ids if i not in got],
    )


def renew_customers(
    engine: sa.Engine, customer_ids: Iterable[UUID | str], token: UUID | str, ttl: timedelta = DEFAULT_TTL
) -> list[UUID]:
    """Extend the leases still held under `token`; returns those (the others were lost)."""
    ids = [str(i) for i in _unique_ids(customer_ids)]
    with _autocommit(engine) as conn:
        rows = conn.execute(
            sa.text(
                "UPDATE hubspot_customer_leases "
                "SET expires_at = greatest(expires_at, clock_timestamp() + CAST(:ttl AS interval)) "
                "WHERE customer_id = ANY(CAST(:ids AS uuid[])) AND token = CAST(:token AS uuid) "
                "AND expires_at > clock_timestamp() RETURNING customer_id"
            ),
            {"ids": ids, "token": str(token), "ttl": ttl},
        ).scalars()
        return [UUID(str(customer_id)) for customer_id in rows]


def release_customers(engine: sa.Engine, customer_ids: Iterable[UUID | str], token: UUID | str) -> int:
    """Drop the leases still held under `token`; returns how many."""
    ids = [str(i) for i in _unique_ids(customer_ids)]
    if not ids:
        return 0
    with _autocommit(engine) as conn:
        return conn.execute(
            sa.text(
                "DELETE FROM hubspot_customer_leases "
                "WHERE customer_id = ANY(CAST(:ids AS uuid[])) AND token = CAST(:token AS uuid)"
            ),
            {"ids": ids, "token": str(token)},
        ).rowcount


def purge_expired_leases(engine: sa.Engine) -> int:
    """Delete leases that expired (they would be taken over anyway; this keeps the table small)."""
    with _autocommit(engine) as conn:
        return conn.execute(
            sa.text("DELETE FROM hubspot_customer_leases WHERE expires_at <= clock_timestamp()")
        ).rowcount
