"""Alert conditions read from PostgreSQL, announced once per interval, resolved when they clear, over real SMTP
and a real HTTP webhook (core.alerts)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from pytest_httpserver import HTTPServer

from tests.plugins.alerts import EVERY_CONDITION, clear_every_condition, raise_every_condition
from tests.plugins.smtp import SmtpCatcher
from warp_sync_pipeline.core.alerts import (
    AlertSettings,
    Channels,
    NoticeKind,
    announce,
    observe,
    run_failed,
    run_recovered,
)
from warp_sync_pipeline.core.email import EmailSettings, send_alert

SETTINGS = AlertSettings()
HOOK = "/hooks/alerts"


def _firing(engine: sa.Engine) -> set[str]:
    return {c.key for c in observe(engine, SETTINGS) if c.firing}


def _texts(server: HTTPServer) -> list[str]:
    return [json.loads(request.data)["text"] for request, _ in server.log]


def _channels(smtp: SmtpCatcher | None, server: HTTPServer | None) -> Channels:
    settings = EmailSettings.from_env(smtp.environ()) if smtp else None
    return Channels(send_email=(lambda notice: send_alert(notice, settings)) if settings else None,
                    webhook_url=server.url_for(HOOK) if server else None, timeout_s=2)


def test_a_quiet_database_raises_nothing_and_a_bad_day_raises_every_condition(engine: sa.Engine) -> None:
    assert _firing(engine) == set()
    raise_every_condition(engine)
    assert _firing(engine) == EVERY_CONDITION  # the failed WARN check is not among them
    observed = {c.key: c for c in observe(engine, SETTINGS)}
    assert observed["queue_dead_letters"].title == "1 queue row(s) dead-lettered"
    assert observed["hubspot_paused"].title == "HubSpot flows paused for 60 min"
    assert observed["daily_quota_low"].title == "HubSpot's daily quota nearly spent: 1,000 of 250,000 calls left"
    assert observed["report_unsent"].detail[0] == "Delivery: failed: SMTP_UNAVAILABLE."
    # The thresholds are settings: a longer lag limit or pause limit, a lower quota share, silence them.
    relaxed = AlertSettings(lag=timedelta(hours=2), pause=timedelta(hours=2), quota_share=0.001)
    quiet = {c.key for c in observe(engine, relaxed) if c.firing}
    assert quiet == EVERY_CONDITION - {"queue_lag", "webhook_lag", "hubspot_paused", "daily_quota_low"}


def test_each_condition_is_announced_once_per_interval_and_once_when_it_clears(
    engine: sa.Engine, smtp_server: SmtpCatcher, httpserver: HTTPServer,
) -> None:
    httpserver.expect_request(HOOK, method="POST").respond_with_data("ok")
    channels = _channels(smtp_server, httpserver)
    raise_every_condition(engine)
    now = datetime.now(UTC)

    first = announce(engine, observe(engine, SETTINGS, now=now), channels, repeat=SETTINGS.repeat, now=now)
    assert {n.key for n in first.sent} == EVERY_CONDITION and not first.problems
    mails = smtp_server.wait_for(len(EVERY_CONDITION))
    assert "[warp-sync] ALERT: 1 queue row(s) dead-lettered" in {m["Subject"] for m in mails}
    texts = _texts(httpserver)
    assert len(texts) == len(EVERY_CONDITION)
    assert any(t.startswith("[warp-sync] ALERT: check hubspot_companies.unique_warp_ban failed\n") for t in texts)

    # Within the interval: nothing new, however often the sensor ticks.
    later = now + timedelta(minutes=5)
    assert not announce(engine, observe(engine, SETTINGS, now=later), channels, repeat=SETTINGS.repeat, now=later).sent
    # After it: one reminder each, saying since when.
    after = now + SETTINGS.repeat + timedelta(seconds=1)
    reminders = announce(engine, observe(engine, SETTINGS, now=after), channels, repeat=SETTINGS.repeat, now=after)
    assert {n.kind for n in reminders.sent} == {NoticeKind.REMINDER} and len(reminders.sent) == len(EVERY_CONDITION)
    assert "Firing since " in reminders.sent[0].text()

    clear_every_condition(engine)
    cleared = after + timedelta(minutes=1)
    resolved = announce(engine, observe(engine, SETTINGS, now=cleared), channels, repeat=SETTINGS.repeat, now=cleared)
    assert {n.key for n in resolved.sent} == EVERY_CONDITION
    assert {n.kind for n in resolved.sent} == {NoticeKind.RESOLVED}
    subjects = {m["Subject"] for m in smtp_server.wait_for(3 * len(EVERY_CONDITION))}
    assert "[warp-sync] RESOLVED: 1 queue row(s) dead-lettered" in subjects  # the title it fired with
    assert not announce(engine, observe(engine, SETTINGS, now=cleared), channels, repeat=SETTINGS.repeat,
                        now=cleared).sent


def test_a_notice_no_channel_took_is_tried_again_at_the_next_tick(engine: sa.Engine, httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(HOOK, method="POST").respond_with_data("down", status=500)
    httpserver.expect_request(HOOK, method="POST").respond_with_data("ok")
    channels = _channels(None, httpserver)
    failed = run_failed("hubspot_queue_drain_job", "0123456789abcdef", cancelled=False, reason="boom")

    refused = announce(engine, [failed], channels, repeat=SETTINGS.repeat)
    assert not refused.sent and refused.problems == ["webhook for run_failed:hubspot_queue_drain_job: HTTPStatusError"]
    again = announce(engine, [failed], channels, repeat=SETTINGS.repeat)
    assert [n.kind for n in again.sent] == [NoticeKind.ALERT]
    assert _texts(httpserver)[-1].startswith("[warp-sync] ALERT: hubspot_queue_drain_job failed - run 01234567\n")


def test_without_any_channel_nothing_is_recorded_as_sent(engine: sa.Engine) -> None:
    failed = run_failed("hubspot_queue_drain_job", "0123456789abcdef", cancelled=True, reason="stop")
    outcome = announce(engine, [failed], Channels(), repeat=SETTINGS.repeat)
    assert not outcome.sent and len(outcome.waiting) == 1 and "no alert channel is configured" in outcome.problems[0]


def test_a_jobs_run_alert_fires_once_for_many_failures_and_resolves_when_a_run_succeeds(
    engine: sa.Engine, httpserver: HTTPServer,
) -> None:
    httpserver.expect_request(HOOK, method="POST").respond_with_data("ok")
    channels = _channels(None, httpserver)
    for run in ("run-aaaaaaaa", "run-bbbbbbbb", "run-cccccccc"):  # a drain that fails every minute
        announce(engine, [run_failed("hubspot_queue_drain_job", run, cancelled=False, reason="down")], channels,
                 repeat=SETTINGS.repeat)
    announce(engine, [run_recovered("hubspot_queue_drain_job", "run-dddddddd")], channels, repeat=SETTINGS.repeat)
    assert [t.splitlines()[0] for t in _texts(httpserver)] == [
        "[warp-sync] ALERT: hubspot_queue_drain_job failed - run run-aaaa",
        "[warp-sync] RESOLVED: hubspot_queue_drain_job failed - run run-aaaa",
    ]


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_the_quota_share_bounds(engine: sa.Engine, share: float) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO hubspot_daily_quota (daily_limit, remaining) VALUES (100, 50)"))
    fired = "daily_quota_low" in {c.key for c in observe(engine, AlertSettings(quota_share=share)) if c.firing}
    assert fired is (share == 1.0)
