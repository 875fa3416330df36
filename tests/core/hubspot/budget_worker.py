"""A separate process calling the sandbox through the shared budget (used by test_rate_limits).

python -m tests.core.hubspot.budget_worker BASE_URL TOKEN DATABASE_URL REQUESTS LIMIT START_AT WINDOW_S
Starts at the epoch time START_AT (so two workers begin together), sends REQUESTS list calls from
4 threads under a budget of LIMIT per WINDOW_S seconds, and prints {"ok": n, "errors": [...]} as JSON.
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from warp_sync_pipeline.core.hubspot import BudgetSettings, HubSpotClient, HubSpotError, RequestBudget


def main(argv: list[str]) -> int:
    base_url, token, database_url, requests, limit, start_at, window_s = argv
    budget = RequestBudget(database_url, BudgetSettings(requests_per_window=int(limit), window_seconds=float(window_s),
                                                        reserved_share=0.0))
    client = HubSpotClient(base_url, token, budget=budget, time_budget_s=60)
    time.sleep(max(0.0, float(start_at) - time.time()))

    def one(_: int) -> str | None:
        try:
            client.list_companies(limit=1)
            return None
        except HubSpotError as exc:
            return f"{type(exc).__name__}: {exc}"

    with ThreadPoolExecutor(max_workers=4) as pool:
        errors = [e for e in pool.map(one, range(int(requests))) if e]
    client.close()
    print(json.dumps({"ok": int(requests) - len(errors), "errors": errors}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
