"""HubSpot's rate limits with the sandbox enforcing them (rolling window, search per second).

HubSpot's window is 10 s; here the sandbox and the budget both use a 2-second one (the same code,
told a shorter window), so a test waits a window out in 2 s instead of 10.

With the shared budget no request goes over the limit (the sandbox counts every request it
receives, 429s included, so "requests received == requests made" means none was refused), also
when two processes share it through PostgreSQL. Without a budget, 429s are waited out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from tests import REPO
from tests.core.hubspot.conftest import FAST_RETRY
from warp_sync_pipeline.core.hubspot import (
    BudgetExhausted,
    BudgetSettings,
    Filter,
    HubSpotClient,
    Priority,
    RequestBudget,
    RetryPolicy,
)

LIST = "GET /crm/v3/objects/companies"
SEARCH = "POST /crm/v3/objects/companies/search"
LIMIT = 20  # per rolling window, so a test needs one window and a bit
WINDOW_S = 2.0


def _count(sandbox, endpoint: str) -> int:  # noqa: ANN001
    return sandbox.control.counters()["by_endpoint"].get(endpoint, 0)


def test_two_processes_sharing_the_budget_never_go_over_the_limit(sandbox, database_url: str) -> None:  # noqa: ANN001
    sandbox.control.configure(rate_limit_per_10s=LIMIT, rate_limit_window_seconds=WINDOW_S)
    sandbox.control.reset_counters()
    start_at = time.time() + 2.0  # both interpreters are up by then
    command = [sys.executable, "-m", "tests.core.hubspot.budget_worker", sandbox.base_url,
               sandbox.access_token, database_url, "15", str(LIMIT), str(start_at), str(WINDOW_S)]
    workers = [subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": str(REPO)}) for _ in range(2)]
    reports = []
    for worker in workers:
        out, err = worker.communicate(timeout=90)
        assert worker.returncode == 0, err
        reports.append(json.loads(out.strip().splitlines()[-1]))
    elapsed = time.time() - start_at
    assert [r["errors"] for r in reports] == [[], []]
    assert sum(r["ok"] for r in reports) == 30
    assert _count(sandbox, LIST) == 30  # not one request refused with a 429
    assert elapsed > WINDOW_S  # 30 requests at 20 a window: the budget held the last 10 back a window


def test_without_a_budget_a_429_storm_is_waited_out(sandbox) -> None:  # noqa: ANN001
    sandbox.control.configure(rate_limit_per_10s=LIMIT, rate_limit_window_seconds=WINDOW_S)
    sandbox.control.reset_counters()
    client = HubSpotClient(sandbox.base_url, sandbox.access_token, time_budget_s=40,
                           retry=RetryPolicy(max_attempts=10, rate_limit_wait_s=WINDOW_S * 0.07))
    with ThreadPoolExecutor(max_workers=8) as pool:
        pages = list(pool.map(lambda _: client.list_companies(limit=1), range(30)))
    client.close()
    assert len(pages) == 30
    assert _count(sandbox, LIST) > 30  # the storm happened: some were refused and sent again


def test_search_keeps_to_its_own_per_second_limit(sandbox, database_url: str) -> None:  # noqa: ANN001
    sandbox.control.configure(search_per_second=5, rate_limit_per_10s=LIMIT)
    sandbox.control.reset_counters()
    budget = RequestBudget(database_url, BudgetSettings(requests_per_window=LIMIT, search_per_second=5,
                                                        reserved_share=0.0))
    client = HubSpotClient(sandbox.base_url, sandbox.access_token, budget=budget, time_budget_s=20,
                           retry=FAST_RETRY)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(lambda _: client.search_companies(filter_groups=[[Filter("name", "HAS_PROPERTY")]]),
                      range(12)))
    # Search is outside the 10-second budget: a list call right after goes straight through.
    client.list_companies(limit=1)
    client.close()
    assert _count(sandbox, SEARCH) == 12
    assert 1.5 < time.monotonic() - started < 6


def test_bulk_callers_leave_the_reserved_share_to_sync_callers(sandbox, database_url: str) -> None:  # noqa: ANN001
    sandbox.control.configure(rate_limit_per_10s=LIMIT)
    sandbox.control.reset_counters()
    settings = BudgetSettings(requests_per_window=LIMIT, reserved_share=0.2)
    budget = RequestBudget(database_url, settings)
    bulk = HubSpotClient(sandbox.base_url, sandbox.access_token, budget=budget, priority=Priority.BULK,
                         time_budget_s=0.5, retry=FAST_RETRY)
    sync = bulk.with_priority(Priority.SYNC)

    sent = refused = 0
    for _ in range(LIMIT):
        try:
            bulk.list_companies(limit=1)
            sent += 1
        except BudgetExhausted:
            refused += 1
    assert (sent, refused) == (16, 4)  # bulk stops at 80 % of the window

    started = time.monotonic()
    for _ in range(4):
        sync.list_companies(limit=1)  # the reserved 20 % is there for a synchronous caller
    assert time.monotonic() - started < 1.0
    bulk.close()
    assert _count(sandbox, LIST) == LIMIT  # and nobody went over HubSpot's limit
