"""Customer leases: one interactive writer per customer."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

from warp_sync_pipeline.core.leases import (
    CustomerBusy,
    LeaseLost,
    acquire_customer_waiting,
    acquire_customers,
    hold_customer,
    purge_expired_leases,
    release_customer,
    release_customers,
    renew_customers,
)


def _expire(engine: sa.Engine, customer_id: uuid.UUID) -> None:
    # Move the expiry into the past rather than sleeping through a TTL.
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE hubspot_customer_leases SET expires_at = clock_timestamp() - interval '1 second' "
                    "WHERE customer_id = :c"),
            {"c": customer_id},
        )


def _leases(engine: sa.Engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text("SELECT customer_id, holder FROM hubspot_customer_leases"))]


def test_a_second_writer_is_told_the_customer_is_busy(engine: sa.Engine) -> None:
    customer = uuid.uuid4()
    with hold_customer(engine, customer, "drain:run-1") as lease:
        assert lease.taken and lease.held()
        with pytest.raises(CustomerBusy) as caught, hold_customer(engine, customer, "webhook:worker-2"):
            pass
        assert caught.value.code == "CUSTOMER_BUSY"
        assert caught.value.holder == "drain:run-1"
        assert "drain:run-1" in str(caught.value)
    assert _leases(engine) == []  # released on exit
    with hold_customer(engine, customer, "webhook:worker-2"):
        pass


def test_the_same_holder_renews_and_the_outer_block_releases(engine: sa.Engine) -> None:
    customer = uuid.uuid4()
    with hold_customer(engine, customer, "drain:run-1") as outer:
        with hold_customer(engine, customer, "drain:run-1", ttl=timedelta(minutes=5)) as inner:
            assert not inner.taken and inner.token == outer.token
            assert inner.expires_at > outer.expires_at
        assert outer.held()  # the inner block did not release it
    assert _leases(engine) == []


def test_an_expired_lease_is_taken_over_and_the_old_holder_cannot_release_it(engine: sa.Engine) -> None:
    customer = uuid.uuid4()
    with hold_customer(engine, customer, "drain:run-1") as stale:
        _expire(engine, customer)
        assert not stale.held()
        with hold_customer(engine, customer, "resolution:kim") as fresh:
            assert fresh.taken and fresh.token != stale.token
            with pytest.raises(LeaseLost):
                stale.renew()
            assert release_customer(engine, customer, stale.token) is False
            assert fresh.held()
            assert fresh.renew() >= fresh.expires_at
        # The stale block exits after: it must not drop anything (it is not its lease any more).
    assert _leases(engine) == []


def test_bulk_acquire_reports_what_it_got(engine: sa.Engine) -> None:
    free, busy, mine, expired = (uuid.uuid4() for _ in range(4))
    with hold_customer(engine, busy, "webhook:worker-2"), hold_customer(engine, mine, "drain:run-1"):
        with hold_customer(engine, expired, "manual:ops"):
            _expire(engine, expired)
        batch = acquire_customers(engine, [free, busy, mine, expired, free], "drain:run-1")
        assert batch.acquired == [free, expired]
        assert batch.already_held == [mine]
        assert batch.busy == [busy]
        assert sorted(renew_customers(engine, [free, expired, busy], batch.token)) == sorted([free, expired])
        assert release_customers(engine, [free, busy, mine, expired], batch.token) == 2
        assert sorted(c for c, _ in _leases(engine)) == sorted([busy, mine])


def test_concurrent_writers_get_the_lease_one_at_a_time(engine: sa.Engine) -> None:
    customer = uuid.uuid4()
    barrier = threading.Barrier(8)
    winners: list[str] = []
    busy: list[str] = []
    done = threading.Event()

    def writer(name: str) -> None:
        barrier.wait()
        try:
            with hold_customer(engine, customer, name):
                winners.append(name)
                done.wait(5)
        except CustomerBusy:
            busy.append(name)
            if len(busy) == 7:
                done.set()

    threads = [threading.Thread(target=writer, args=(f"worker-{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(winners) == 1 and len(busy) == 7


def test_expired_leases_are_purged(engine: sa.Engine) -> None:
    kept, gone = uuid.uuid4(), uuid.uuid4()
    with hold_customer(engine, kept, "a"), hold_customer(engine, gone, "b"):
        _expire(engine, gone)
        assert purge_expired_leases(engine) == 1
        assert [c for c, _ in _leases(engine)] == [kept]


def test_an_interactive_writer_waits_a_moment_for_a_busy_customer(engine: sa.Engine) -> None:
    customer = uuid.uuid4()
    with hold_customer(engine, customer, "drain:run-1"):
        with pytest.raises(CustomerBusy) as caught:
            acquire_customer_waiting(engine, customer, "push:ops", wait_s=0.3)
        assert caught.value.holder == "drain:run-1"
    # Freed while the second writer waits: it gets the lease instead of a refusal.
    with hold_customer(engine, customer, "drain:run-2") as first:
        threading.Timer(0.2, release_customer, args=(engine, customer, first.token)).start()
        lease = acquire_customer_waiting(engine, customer, "push:ops", wait_s=5)
        assert lease.taken and lease.holder == "push:ops"
        assert release_customer(engine, customer, lease.token)
