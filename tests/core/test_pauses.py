"""The shared pause of the HubSpot flows (core.pauses): which failures open it, one probe at a time, closing."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from tests.plugins.outbound import api_calls
from warp_sync_pipeline.core.hubspot import (
    AuthFailed,
    HubSpotClient,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    ServiceUnavailable,
    ValidationFailed,
)
from warp_sync_pipeline.core.hubspot.errors import PropertyError
from warp_sync_pipeline.core.pauses import (
    PauseCause,
    PauseSettings,
    admit,
    open_pause,
    open_pauses,
    pause_cause,
)

SETTINGS = PauseSettings(probe_after_s=30, probe_max_s=300, probe_timeout_s=2)


@pytest.mark.parametrize(("error", "cause"), [
    (AuthFailed("401", status=401), PauseCause.TOKEN_REFUSED),
    (RateLimited("429", daily=True), PauseCause.DAILY_QUOTA),
    (RateLimited("429"), PauseCause.OUTAGE),
    (ServiceUnavailable("503", status=503), PauseCause.OUTAGE),
    (OutcomeUnknown("no answer"), PauseCause.OUTAGE),
    (OutcomeUnknown("500", property_errors=[PropertyError("warp_status", "INVALID_OPTION", "bad")]), None),
    (ValidationFailed("400", status=400), None),
    (NotFound("404", status=404), None),
])
def test_only_failures_of_hubspot_as_a_whole_call_for_a_pause(error: Exception, cause: PauseCause | None) -> None:
    assert pause_cause(error) is cause


def _due_now(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE hubspot_pauses SET next_probe_at = now()"))


def test_a_pause_opened_twice_keeps_its_start_and_probe_time(engine: sa.Engine) -> None:
    first = open_pause(engine, PauseCause.OUTAGE, "503s", opened_by="drain:a", settings=SETTINGS)
    again = open_pause(engine, PauseCause.OUTAGE, "still 503s", opened_by="drain:b", settings=SETTINGS)
    assert (again.opened_at, again.next_probe_at, again.opened_by) == (first.opened_at, first.next_probe_at, "drain:a")
    assert again.reason == "still 503s" and not again.probe_due
    assert (first.next_probe_at - first.opened_at).total_seconds() == pytest.approx(30, abs=1)


def test_one_process_probes_a_due_pause_and_a_good_answer_closes_every_pause(
    engine: sa.Engine, sandbox, warp_hubspot: HubSpotClient,  # noqa: ANN001
) -> None:
    before = api_calls(sandbox)
    assert admit(engine, warp_hubspot, flow="drain:x", settings=SETTINGS) is None  # no pause: no call
    assert api_calls(sandbox) == before
    open_pause(engine, PauseCause.OUTAGE, "503s", opened_by="drain:a", settings=SETTINGS)
    open_pause(engine, PauseCause.TOKEN_REFUSED, "401", opened_by="drain:a", settings=SETTINGS)
    blocked = admit(engine, warp_hubspot, flow="drain:x", settings=SETTINGS)  # not due: no probe
    assert blocked is not None and api_calls(sandbox) == before

    _due_now(engine)
    with ThreadPoolExecutor(4) as pool:
        verdicts = list(pool.map(lambda n: admit(engine, warp_hubspot, flow=f"run:{n}", settings=SETTINGS),
                                 range(4)))
    assert api_calls(sandbox) == before + 1  # the probe was claimed once
    assert None in verdicts and open_pauses(engine) == []


def test_a_failed_probe_keeps_the_pause_and_doubles_the_wait(
    engine: sa.Engine, sandbox, warp_hubspot: HubSpotClient,  # noqa: ANN001
) -> None:
    open_pause(engine, PauseCause.OUTAGE, "503s", opened_by="drain:a", settings=SETTINGS)
    sandbox.control.set_faults(outage={"seconds": 30})
    waits = []
    for _ in range(3):
        _due_now(engine)
        pause = admit(engine, warp_hubspot, flow="drain:x", settings=SETTINGS)
        assert pause is not None and "the probe failed" in pause.reason
        with engine.connect() as conn:
            waits.append(float(conn.execute(sa.text(
                "SELECT extract(epoch FROM next_probe_at - clock_timestamp()) FROM hubspot_pauses")).scalar_one()))
    # Measured a moment after each probe (which itself takes a while on a loaded machine).
    assert waits == pytest.approx([60, 120, 240], abs=3)
