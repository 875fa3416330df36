"""The nightly pull does not start when its calls would eat into the share of HubSpot's daily quota kept for
creates (issue 13)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa

from warp_sync_pipeline.core.hubspot import BudgetSettings, RequestBudget
from warp_sync_pipeline.core.reconcile.pull import PULL_MARGIN_CALLS, DailyQuotaTooLow, check_daily_headroom


def test_a_pull_that_would_eat_into_the_creates_share_is_refused(engine: sa.Engine, make_customer: Callable) -> None:
    for n in range(150):
        make_customer(f"Customer {n}")
    budget = RequestBudget(engine, BudgetSettings(daily_reserved_share=0.1))
    try:
        check_daily_headroom(engine, budget)  # the quota not seen today: the budget's per-call stop applies
        needed = 2 + PULL_MARGIN_CALLS  # 150 customers: two pages of 100
        budget.note_daily(1000, 100 + needed + 1)  # another process saw this, shared through PostgreSQL
        check_daily_headroom(engine, RequestBudget(engine, BudgetSettings(daily_reserved_share=0.1)))
        budget.note_daily(1000, 100 + needed)
        with pytest.raises(DailyQuotaTooLow, match=f"needs about {needed}"):
            check_daily_headroom(engine, RequestBudget(engine, BudgetSettings(daily_reserved_share=0.1)))
    finally:
        budget.close()
