"""GET /metrics: the figures that page people read from PostgreSQL at scrape time, the receiver's own counts, and
Prometheus' multiprocess mode under a real gunicorn (a pool's folder wiped at start, dead workers marked)."""

from __future__ import annotations

import http.client
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from tests.plugins.alerts import raise_every_condition
from tests.plugins.database import scratch_database
from tests.plugins.gunicorn import running_gunicorn
from tests.plugins.outbound import FAST_RETRY
from warp_sync_pipeline.core.hubspot import HubSpotClient
from warp_sync_pipeline.core.hubspot.budget import BudgetSettings, RequestBudget
from warp_sync_pipeline.devstack.localpg import free_port
from webhook_receiver import create_app
from webhook_receiver.app import close_app


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page: (name, sorted labels) -> value."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _scrape(client) -> dict:  # noqa: ANN001
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    return samples(response.get_data(as_text=True))


@pytest.fixture
def app(database_url: str) -> Iterator:  # noqa: ANN001
    made = create_app({"DATABASE_URL": database_url, "TESTING": True, "WARP_METRICS_CACHE_SECONDS": "60"})
    yield made
    close_app(made)


def test_the_figures_that_page_people_are_read_from_postgres(app, engine: sa.Engine) -> None:  # noqa: ANN001
    client = app.test_client()
    quiet = _scrape(client)
    assert quiet[("warp_metrics_database_up", ())] == 1
    assert quiet[("warp_queue_rows", (("status", "dead"),))] == 0
    assert ("warp_hubspot_daily_quota_limit", ()) not in quiet  # never seen today

    raise_every_condition(engine)
    app.extensions["warp_metrics_cache"]._snapshot = None  # past the cache, as after WARP_METRICS_CACHE_SECONDS
    busy = _scrape(client)
    assert busy[("warp_queue_rows", (("status", "dead"),))] == 1
    assert busy[("warp_queue_rows", (("status", "pending"),))] == 1
    assert 3500 < busy[("warp_queue_oldest_due_seconds", ())] < 3700
    assert busy[("warp_webhook_events", (("state", "given_up"),))] == 1
    assert busy[("warp_webhook_events", (("state", "pending"),))] == 1
    assert 3500 < busy[("warp_webhook_oldest_due_seconds", ())] < 3700
    assert busy[("warp_hubspot_daily_quota_limit", ())] == 250_000
    assert busy[("warp_hubspot_daily_quota_remaining", ())] == 1_000
    assert 3500 < busy[("warp_hubspot_paused_seconds", (("cause", "token_refused"),))] < 3700
    # The receiver's own counts: the first scrape is in them.
    assert busy[("warp_receiver_requests_total", (("method", "GET"), ("route", "/metrics"), ("status", "200")))] >= 1


def test_a_scrape_within_the_cache_period_does_not_read_again(app, engine: sa.Engine) -> None:  # noqa: ANN001
    client = app.test_client()
    assert _scrape(client)[("warp_queue_rows", (("status", "dead"),))] == 0
    raise_every_condition(engine)
    assert _scrape(client)[("warp_queue_rows", (("status", "dead"),))] == 0  # cached for 60 s


def test_with_the_database_down_the_page_still_renders() -> None:
    url = f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/nowhere"
    app = create_app({"DATABASE_URL": url, "TESTING": True})
    try:
        page = _scrape(app.test_client())
    finally:
        close_app(app)
    assert page[("warp_metrics_database_up", ())] == 0
    assert ("warp_queue_rows", (("status", "dead"),)) not in page


def test_hubspots_429s_are_counted_for_every_process(sandbox, database_url: str, app) -> None:  # noqa: ANN001
    sandbox.control.set_faults(rate_limit={"calls": 2})
    client = HubSpotClient(sandbox.base_url, sandbox.access_token, budget=RequestBudget(database_url, BudgetSettings()),
                           time_budget_s=20, retry=FAST_RETRY)
    try:
        client.list_companies(limit=1)  # answered after two 429s
    finally:
        client.close()
    page = _scrape(app.test_client())
    assert page[("warp_hubspot_rate_limited_today", (("kind", "interval"),))] == 2
    assert page[("warp_hubspot_rate_limited_today", (("kind", "daily"),))] == 0
    assert page[("warp_hubspot_budget_in_use", (("priority", "bulk"),))] >= 3


@pytest.fixture
def pool_db(pg_admin_url: str, template_database: str) -> Iterator[str]:
    with scratch_database(pg_admin_url, "warp_test_metrics", template=template_database) as url:
        yield url


def _get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def _healthz_count(port: int) -> float:
    status, text = _get(port, "/metrics")
    assert status == 200
    return samples(text).get(("warp_receiver_requests_total", (("method", "GET"), ("route", "/healthz"),
                                                               ("status", "200"))), 0.0)


def test_under_gunicorn_a_scrape_sums_every_worker_and_survives_a_killed_one(pool_db: str, tmp_path: Path) -> None:
    folder = tmp_path / "metrics-admin"
    folder.mkdir()
    (folder / "counter_999999.db").write_bytes(b"left by a previous master")
    env = {"PROMETHEUS_MULTIPROC_DIR": str(folder)}
    with running_gunicorn(pool_db, tmp_path / "admin.ctl", "-c", "python:webhook_receiver.gunicorn_conf",
                          "--workers", "2", env=env) as server:
        assert not (folder / "counter_999999.db").exists()  # wiped when the master started
        before = _healthz_count(server.port)
        for _ in range(40):
            assert _get(server.port, "/healthz")[0] == 200
        assert _healthz_count(server.port) == before + 40

        # Kill a worker that has counted; its replacement counts on. The scrape sums the dead worker's file with
        # the live ones', and the dead worker's live gauge is gone (child_exit marked it dead).
        counted = {int(p.stem.rsplit("_", 1)[-1]) for p in folder.glob("counter_*.db")}
        [victim, *_] = sorted(counted & set(server.worker_pids()))
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while victim in server.worker_pids() or len(server.worker_pids()) < 2:
            assert time.monotonic() < deadline, "gunicorn did not replace the killed worker"
            time.sleep(0.1)
        for _ in range(10):
            assert _get(server.port, "/healthz")[0] == 200
        assert _healthz_count(server.port) == before + 50
        assert len({p.stem.rsplit("_", 1)[-1] for p in folder.glob("counter_*.db")}) >= 2  # summed over processes
        assert not list(folder.glob(f"gauge_livesum_{victim}.db"))
