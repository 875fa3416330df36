"""The shared request budget on a real PostgreSQL (no HTTP here)."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from warp_sync_pipeline.core.hubspot import Bucket, BudgetExhausted, BudgetSettings, Priority, RequestBudget
from warp_sync_pipeline.core.migrations import upgrade


@pytest.fixture
def budget(database_url: str):
    # A short window keeps these tests fast; the logic is the same as for 10 s.
    settings = BudgetSettings(requests_per_window=10, window_seconds=1.0, search_per_second=3,
                              reserved_share=0.2, margin_ms=0)
    made = RequestBudget(database_url, settings)
    yield made
    made.close()


def test_the_migration_creates_the_budget_and_a_second_upgrade_changes_nothing(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        buckets = set(conn.execute(sa.text("SELECT bucket FROM hubspot_rate_budget_buckets")).scalars())
        assert buckets == {"burst", "search"}
    assert upgrade(engine) == []


def test_tokens_are_granted_up_to_capacity_then_the_wait_is_named(budget: RequestBudget) -> None:
    assert [budget.try_take(Bucket.BURST, Priority.SYNC) for _ in range(10)] == [0.0] * 10
    wait = budget.try_take(Bucket.BURST, Priority.SYNC)
    assert 0.8 < wait <= 1.0  # the first token leaves the 1 s window in a little under a second
    assert budget.in_use(Bucket.BURST) == 10


def test_bulk_callers_cannot_take_the_reserved_share_but_sync_callers_can(budget: RequestBudget) -> None:
    granted_bulk = sum(budget.try_take(Bucket.BURST, Priority.BULK) == 0.0 for _ in range(12))
    assert granted_bulk == 8  # 10 per window, 20 % reserved
    assert budget.try_take(Bucket.BURST, Priority.BULK) > 0
    assert budget.try_take(Bucket.BURST, Priority.SYNC) == 0.0
    assert budget.try_take(Bucket.BURST, Priority.SYNC) == 0.0
    assert budget.try_take(Bucket.BURST, Priority.SYNC) > 0  # the whole window is used now


def test_search_has_its_own_bucket(budget: RequestBudget) -> None:
    for _ in range(10):
        budget.try_take(Bucket.BURST, Priority.SYNC)
    assert [budget.try_take(Bucket.SEARCH, Priority.SYNC) for _ in range(3)] == [0.0] * 3
    assert budget.try_take(Bucket.SEARCH, Priority.SYNC) > 0


def test_acquire_waits_for_a_token_and_gives_up_at_the_deadline(budget: RequestBudget) -> None:
    for _ in range(10):
        budget.try_take(Bucket.BURST, Priority.SYNC)
    started = time.monotonic()
    with pytest.raises(BudgetExhausted):
        budget.acquire(Bucket.BURST, Priority.SYNC, deadline=started + 0.3)
    assert time.monotonic() - started < 0.3 + 0.1
    waited = budget.acquire(Bucket.BURST, Priority.SYNC, deadline=time.monotonic() + 3)
    assert 0.3 < waited < 1.2


def test_a_token_survives_the_callers_rollback(budget: RequestBudget, engine: sa.Engine) -> None:
    # The budget takes tokens on its own autocommit connection, never inside the caller's work.
    with engine.connect() as conn:
        tx = conn.begin()
        conn.execute(sa.text("SELECT 1"))
        budget.acquire(Bucket.BURST, Priority.SYNC, deadline=time.monotonic() + 1)
        tx.rollback()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM hubspot_rate_budget")).scalar_one() == 1


def test_old_tokens_are_removed_as_the_window_moves(budget: RequestBudget, engine: sa.Engine) -> None:
    for _ in range(5):
        budget.try_take(Bucket.BURST, Priority.BULK)
    time.sleep(1.05)
    assert budget.try_take(Bucket.BURST, Priority.BULK) == 0.0
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM hubspot_rate_budget")).scalar_one() == 1


def test_settings_come_from_the_environment_with_errors_naming_the_variable() -> None:
    from warp_sync_pipeline.core.settings import SettingsError

    settings = BudgetSettings.from_env({"HUBSPOT_REQUESTS_PER_10S": "190", "HUBSPOT_RESERVED_SHARE": "0.25"})
    assert settings.capacity(Bucket.BURST, Priority.SYNC) == 190
    assert settings.capacity(Bucket.BURST, Priority.BULK) == 142
    with pytest.raises(SettingsError, match="HUBSPOT_RESERVED_SHARE"):
        BudgetSettings.from_env({"HUBSPOT_RESERVED_SHARE": "1.5"})
