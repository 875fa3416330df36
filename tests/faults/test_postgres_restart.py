"""PostgreSQL restarted for real (a cluster of the test's own) in the middle of a queue drain: the change the
drain was sending is neither lost nor left stuck nor sent twice once recorded."""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa

from tests.plugins.database import PrivatePostgres
from tests.plugins.outbound import fast_drain
from tests.plugins.sandbox import SandboxHandle
from warp_sync_pipeline.core.db import make_engine
from warp_sync_pipeline.core.hubspot import HubSpotClient
from warp_sync_pipeline.core.outbound import drain_queue

BATCH_UPDATE = "POST /crm/v3/objects/companies/batch/update"
BAN = "ZT-510000001"


def test_a_restart_mid_drain_loses_nothing_and_the_next_drain_finishes(
    private_postgres: PrivatePostgres, sandbox: SandboxHandle, warp_hubspot: HubSpotClient
) -> None:
    [company] = sandbox.control.seed([{"name": "Restart Ltd", "warp_ban": BAN, "warp_status": "ACTIVE"}])
    engine = make_engine(private_postgres.database_url, pool_size=2)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO customers (ban, company_name, status, external_ids, hubspot_link_status) VALUES "
            "(:ban, 'Restart Ltd', 'ACTIVE', jsonb_build_object('hubspot_company_id', CAST(:c AS text)), 'linked')"),
            {"ban": BAN, "c": company})
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE customers SET status = 'SUSPENDED'"))  # queued by the trigger
    # HubSpot answers the batch update slowly: the server goes down while the drain waits on it.
    sandbox.control.set_faults(latency_ms=1500)
    settings = fast_drain(lease_s=3.0, http_budget_s=2.5, run_budget_s=5.0)
    outcome: dict[str, object] = {}

    def first_drain() -> None:
        try:
            outcome["report"] = drain_queue(engine, warp_hubspot, settings=settings, run_id="before-restart")
        except Exception as exc:  # noqa: BLE001 - whatever the lost connection raises is what is checked
            outcome["error"] = exc

    thread = threading.Thread(target=first_drain)
    thread.start()
    deadline = time.monotonic() + 20
    while sandbox.control.counters()["by_endpoint"].get(BATCH_UPDATE, 0) < 1:
        assert time.monotonic() < deadline, "the drain never reached HubSpot"
        time.sleep(0.05)
    private_postgres.restart()
    thread.join(30)
    assert not thread.is_alive()
    sandbox.control.clear_faults()

    # The drain's pooled connections died with the server. Either the pool's pre-ping gave it new ones and it
    # recorded its send, or it failed and its claim lapses; either way the next drain leaves the row done.
    first = outcome.get("report")
    time.sleep(settings.lease_s)
    report = drain_queue(engine, warp_hubspot, settings=settings, run_id="after-restart")

    if first is not None and first.succeeded == 1:  # type: ignore[union-attr]
        assert report.sent == 0  # nothing sent twice
    else:
        assert report.succeeded == 1, outcome
    [values] = [c["properties"] for c in sandbox.control.all_companies() if c["id"] == company]
    assert values["warp_status"] == "SUSPENDED"
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT status FROM hubspot_sync_queue")).scalars().all() == ["done"]
    engine.dispose()
