"""HubSpot failing as a whole (issue 12, item 6), on the real sandbox over HTTP: an outage longer than every
retry schedule, a 429 storm, a refused token, and an answer lost after HubSpot applied a batch.

Each case drives the flows as Dagster would: every tick the real sensors are evaluated, and what they request is
run (the drain, the webhook processor) in this process. Probe waits come from settings (a fraction of a second
here, 30 s doubling to 300 s by default), so a case takes seconds. Asserted: no attempt spent and nothing dead or
failed while HubSpot is away, the sensors naming the pause, and both flows resuming on their own soon after it
comes back (within the longest probe wait plus a tick).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from tests.plugins.inbound import event_rows
from tests.plugins.outbound import FAST_RETRY, api_calls, company_values, fast_drain, queue_rows
from tests.plugins.signing import object_event
from warp_sync_pipeline.core.customers import create_customer, validate_customer
from warp_sync_pipeline.core.hubspot import BudgetSettings, HubSpotClient, RequestBudget
from warp_sync_pipeline.core.inbound import InboundSettings, process_events
from warp_sync_pipeline.core.outbound import drain_queue
from warp_sync_pipeline.core.pauses import PauseSettings, open_pauses
from warp_sync_pipeline.defs.inbound import hubspot_webhook_events_sensor
from warp_sync_pipeline.defs.outbound import hubspot_sync_queue_sensor
from warp_sync_pipeline.resources.database import DatabaseResource

PAUSE = PauseSettings(probe_after_s=0.3, probe_max_s=1.0, probe_timeout_s=1.0)
TICK_S = 0.2
# The longest a flow can stay paused after HubSpot is back: one probe wait, the probe itself, two ticks, and the
# runs' own work (a few seconds on a loaded 2-core machine).
RESUME_WITHIN_S = PAUSE.probe_max_s + PAUSE.probe_timeout_s + 2 * TICK_S + 3.0


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


@dataclass
class Flows:
    """The two flows' sensors and runs, ticked by hand."""

    engine: sa.Engine
    hubspot: HubSpotClient
    instance: dg.DagsterInstance
    database_url: str
    skips: list[str] = field(default_factory=list)
    paused_runs: int = 0

    def tick(self) -> None:
        with dg.build_sensor_context(instance=self.instance,
                                     resources={"db": DatabaseResource(url=self.database_url)}) as context:
            drain_wanted = hubspot_sync_queue_sensor(context)
            events_wanted = hubspot_webhook_events_sensor(context)
        for wanted in (drain_wanted, events_wanted):
            if isinstance(wanted, dg.SkipReason):
                self.skips.append(wanted.skip_message or "")
        if isinstance(drain_wanted, dg.RunRequest):
            # A short HTTP budget: the outage outlasts the client's own retries.
            report = drain_queue(self.engine, self.hubspot,
                                 settings=fast_drain(http_budget_s=1.0, lease_s=10.0, pause=PAUSE))
            self.paused_runs += report.paused
        if isinstance(events_wanted, dg.RunRequest):
            summary = process_events(self.engine, hubspot=self.hubspot.with_deadline(1.0), settings=InboundSettings(),
                                     run_id="fault-run", pause=PAUSE)
            self.paused_runs += bool(summary.paused)

    def run_until(self, done: Callable[[], bool], *, within_s: float, check: Callable[[], None]) -> float:
        """Tick until `done`; `check` holds after every tick. Returns when it was done (time.monotonic())."""
        deadline = time.monotonic() + within_s
        while not done():
            assert time.monotonic() < deadline, f"the flows did not finish (skips: {self.skips[-3:]})"
            self.tick()
            check()
            time.sleep(TICK_S)
        return time.monotonic()


@pytest.fixture
def flows(engine: sa.Engine, warp_hubspot: HubSpotClient, instance: dg.DagsterInstance,
          database_url: str) -> Flows:
    return Flows(engine, warp_hubspot, instance, database_url)


@pytest.fixture
def work(engine: sa.Engine, make_linked: Callable, make_customer: Callable, warp_hubspot: HubSpotClient,
         store: Callable) -> dict[str, Any]:
    """Two queued changes, and a company.creation event whose company must be read from HubSpot to link it."""
    (first, second) = make_linked(2)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE customers SET current_balance = 21 WHERE id = :id"), {"id": first[0]})
        conn.execute(sa.text("UPDATE customers SET status = 'SUSPENDED' WHERE id = :id"), {"id": second[0]})
    unlinked = make_customer("Late Link Ltd", ban="ZT-777000777")
    company = warp_hubspot.create_company({"name": "Late Link Ltd", "warp_ban": "ZT-777000777"})
    store([object_event("company.creation", int(company.id))])
    return {"first": first, "second": second, "unlinked": unlinked, "company": company.id}


def _nothing_spent(engine: sa.Engine) -> None:
    """The invariant while HubSpot is away: no attempt spent, nothing dead, no event failed."""
    rows = queue_rows(engine)
    assert all(r["attempts"] == 0 and r["status"] != "dead" for r in rows), rows
    assert all(e["status"] != "failed" for e in event_rows(engine)), event_rows(engine)


def _all_done(engine: sa.Engine) -> Callable[[], bool]:
    def done() -> bool:
        return (all(r["status"] == "done" for r in queue_rows(engine))
                and all(e["status"] == "processed" for e in event_rows(engine)))
    return done


def _everything_arrived(engine: sa.Engine, sandbox, work: dict[str, Any]) -> None:  # noqa: ANN001
    assert Decimal(company_values(sandbox, work["first"][1])["warp_current_balance"]) == 21
    assert company_values(sandbox, work["second"][1])["warp_status"] == "SUSPENDED"
    with engine.connect() as conn:
        link = conn.execute(sa.text("SELECT external_ids ->> 'hubspot_company_id' FROM customers WHERE id = :id"),
                            {"id": work["unlinked"]}).scalar_one()
    assert link == work["company"]
    assert open_pauses(engine) == []


@pytest.mark.parametrize("fault", ["outage", "rate_limit"])
def test_hubspot_away_longer_than_every_retry_schedule_pauses_both_flows_and_they_resume_on_their_own(
    flows: Flows, engine: sa.Engine, sandbox, work: dict[str, Any], fault: str,  # noqa: ANN001
) -> None:
    away_s = 4.0
    sandbox.control.set_faults(**{fault: {"seconds": away_s}})
    back_at = time.monotonic() + away_s
    calls_before = api_calls(sandbox)
    # Before: each drain spent an attempt (3 in all), so an outage of ~90 s dead-lettered every row, and each
    # webhook run spent one of the event's 5 attempts.
    flows.run_until(lambda: time.monotonic() >= back_at, within_s=away_s + 5, check=lambda: _nothing_spent(engine))
    assert flows.paused_runs >= 2
    assert any(("hubspot_outage" in s and "next probe at" in s) for s in flows.skips), flows.skips
    # Paused flows do not hammer HubSpot: the first runs' retries, then one probe per wait.
    # 12-20 measured: the first runs' calls with the client's retries, then one probe (with its retries) per wait.
    during = api_calls(sandbox) - calls_before
    assert during <= 30, during

    done_at = flows.run_until(_all_done(engine), within_s=RESUME_WITHIN_S + 5, check=lambda: None)
    assert done_at - back_at <= RESUME_WITHIN_S
    _nothing_spent(engine)
    _everything_arrived(engine, sandbox, work)


def test_a_revoked_token_pauses_both_flows_until_it_is_fixed_with_no_attempt_spent(
    flows: Flows, engine: sa.Engine, sandbox, work: dict[str, Any],  # noqa: ANN001
) -> None:
    sandbox.control.configure(access_token="revoked-token")
    # Before: the drain waited a fixed 300 s; the webhook processor spent all 5 attempts (~43 min), then failed.
    end = time.monotonic() + 3.0
    flows.run_until(lambda: time.monotonic() >= end, within_s=8, check=lambda: _nothing_spent(engine))
    (pause,) = open_pauses(engine)
    assert pause.cause.value == "token_refused" and pause.probes >= 1
    assert any("token_refused" in s for s in flows.skips)

    sandbox.control.configure(access_token=sandbox.access_token)  # the operator fixes the token
    fixed_at = time.monotonic()
    done_at = flows.run_until(_all_done(engine), within_s=RESUME_WITHIN_S + 5, check=lambda: None)
    assert done_at - fixed_at <= RESUME_WITHIN_S
    _everything_arrived(engine, sandbox, work)


def test_an_answer_lost_after_hubspot_applied_a_batch_is_sent_again_and_recorded_once(
    flows: Flows, engine: sa.Engine, sandbox, work: dict[str, Any],  # noqa: ANN001
) -> None:
    sandbox.control.set_faults(after_success={"calls": 1, "mode": "drop",
                                              "endpoint": "POST /crm/v3/objects/companies/batch/update"})
    flows.run_until(_all_done(engine), within_s=15, check=lambda: None)
    _nothing_spent(engine)
    _everything_arrived(engine, sandbox, work)
    assert api_calls(sandbox, "POST /crm/v3/objects/companies/batch/update") == 2  # applied, unanswered, sent again
    with engine.connect() as conn:
        applied = conn.execute(sa.text(
            "SELECT warp_field, count(*) FROM hubspot_sync_log WHERE outcome = 'applied' AND trigger = 'queue' "
            "GROUP BY warp_field ORDER BY warp_field")).all()
    assert [tuple(r) for r in applied] == [("current_balance", 1), ("status", 1)]  # recorded once each


def test_another_app_spending_the_daily_quota_mid_run_pauses_the_flows_until_it_resets(
    flows: Flows, engine: sa.Engine, sandbox, work: dict[str, Any], warp_hubspot: HubSpotClient,  # noqa: ANN001
) -> None:
    # The quota is the account's, shared with every other app of it, and resets at midnight in its time zone.
    sandbox.control.configure(time_zone="Asia/Tokyo")
    usage = sandbox.control.spend_daily_quota(0)
    # Other apps spend all but one call of the day's quota: the flows' first call passes, the next meets the cap.
    sandbox.control.spend_daily_quota(usage["usageLimit"] - usage["currentUsage"] - 1)
    end = time.monotonic() + 3.0
    flows.run_until(lambda: time.monotonic() >= end, within_s=8, check=lambda: _nothing_spent(engine))

    (pause,) = open_pauses(engine)
    assert pause.cause.value == "daily_quota" and "resets at" in pause.reason
    quota = warp_hubspot.daily_quota()
    assert quota is not None and quota.resets_at.tzinfo is not None
    # No probe before HubSpot's reset: midnight in Tokyo, as the account's usage says.
    assert pause.next_probe_at == quota.resets_at and not pause.probe_due
    assert any("daily_quota" in s and "resets at" in s for s in flows.skips), flows.skips[-3:]

    # Midnight in Tokyo: a new day's quota (the test moves the probe time instead of the clock).
    sandbox.control.spend_daily_quota(0, new_day=True)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE hubspot_pauses SET next_probe_at = now()"))
    flows.run_until(_all_done(engine), within_s=RESUME_WITHIN_S + 5, check=lambda: None)
    _nothing_spent(engine)
    _everything_arrived(engine, sandbox, work)


def test_the_share_of_the_daily_quota_kept_for_creates_pauses_bulk_flows_and_leaves_creates_working(
    engine: sa.Engine, sandbox, warp_hubspot: HubSpotClient, make_linked: Callable, rules,  # noqa: ANN001
) -> None:
    budget = RequestBudget(engine, BudgetSettings(daily_reserved_share=0.1))
    bulk = HubSpotClient(sandbox.base_url, sandbox.access_token, budget=budget, time_budget_s=5,
                         request_timeout_s=3, retry=FAST_RETRY)
    try:
        linked = make_linked(2)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE customers SET current_balance = 31"))
        # Other apps of the account have used all but the last 10% (the share kept for creates) and one call.
        usage = sandbox.control.spend_daily_quota(0)
        sandbox.control.spend_daily_quota(int(usage["usageLimit"] * 0.9) - usage["currentUsage"] - 1)
        bulk.list_companies(limit=1)  # a bulk call still passes, and HubSpot's answer says what is left

        report = drain_queue(engine, bulk, settings=fast_drain(pause=PAUSE))

        assert report.paused and report.pause_cause == "daily_quota" and report.claimed == len(linked)
        (pause,) = open_pauses(engine)
        assert "kept for creates" in pause.reason and not pause.probe_due  # until HubSpot's reset
        _nothing_spent(engine)
        # A create (sync priority) still goes through on the same budget.
        created = create_customer(engine, bulk, validate_customer({"company_name": "Still Open Ltd"}, rules,
                                                                  for_update=False))
        assert created.hubspot_company_id
    finally:
        bulk.close()
