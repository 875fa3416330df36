"""`GET /metrics`: Prometheus text, scraped from the admin pool (never route it to the internet: it needs no token).

Two kinds of figures:
- the receiver's own, counted in process: requests by route, method and status; requests in flight; the latency
  of creates (`POST /v1/customers`, the synchronous call the admin portal waits on). Under gunicorn they are kept
  in Prometheus' multiprocess mode (`webhook_receiver/gunicorn_conf.py` gives each pool its folder, wiped at
  start, and marks dead workers), so a scrape sums every worker;
- the ones that page people, read from PostgreSQL at scrape time (core/metrics.py; most of that work happens in
  Dagster runs), cached WARP_METRICS_CACHE_SECONDS per worker, under a statement timeout. When the database does
  not answer, `warp_metrics_database_up` is 0 and the rest of the page still renders.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator

import sqlalchemy as sa
from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from warp_sync_pipeline.core.hubspot.budget import BudgetSettings
from warp_sync_pipeline.core.metrics import OperationalSnapshot, SnapshotCache, read_snapshot
from webhook_receiver.resources import receiver_resources

log = logging.getLogger(__name__)
bp = Blueprint("metrics", __name__)

# The receiver's own metrics live in a registry of their own; in multiprocess mode their values go to the pool's
# folder and MultiProcessCollector reads them back from every worker.
LOCAL = CollectorRegistry(auto_describe=True)
REQUESTS = Counter("warp_receiver_requests", "Requests answered, by route, method and status.",
                   ["route", "method", "status"], registry=LOCAL)
IN_FLIGHT = Gauge("warp_receiver_requests_in_flight", "Requests being answered now (live workers summed).",
                  multiprocess_mode="livesum", registry=LOCAL)
CREATE_SECONDS = Histogram("warp_customer_create_seconds", "POST /v1/customers latency (the create waits on "
                           "HubSpot), by status class.", ["status"],
                           buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30), registry=LOCAL)
CREATE_ROUTE = "/v1/customers"
CACHE = "warp_metrics_cache"


def install(app: Flask) -> None:
    """Count every request (the /metrics route included), register the route, and keep the app's snapshot cache
    (one per worker: the figures are the same for every request)."""
    resources = receiver_resources(app)
    budget = BudgetSettings.from_settings(resources.settings)
    app.extensions[CACHE] = SnapshotCache(lambda: read_snapshot(resources.db, budget),
                                          resources.settings.metrics_cache_seconds)
    app.before_request(_started)
    app.after_request(_answered)
    app.teardown_request(_finished)
    app.register_blueprint(bp)


def _started() -> None:
    g.metrics_started = time.monotonic()
    IN_FLIGHT.inc()


def _answered(response: Response) -> Response:
    route = request.url_rule.rule if request.url_rule is not None else "(unmatched)"
    REQUESTS.labels(route, request.method, str(response.status_code)).inc()
    if route == CREATE_ROUTE and request.method == "POST" and "metrics_started" in g:
        CREATE_SECONDS.labels(f"{response.status_code // 100}xx").observe(time.monotonic() - g.metrics_started)
    return response


def _finished(_error: BaseException | None) -> None:
    if g.pop("metrics_started", None) is not None:
        IN_FLIGHT.dec()


class OperationalCollector(Collector):
    """The figures read from PostgreSQL, as gauges (each a current value: no multiprocess mode applies)."""

    def __init__(self, cache: SnapshotCache) -> None:
        self._cache = cache

    def collect(self) -> Iterator[Metric]:
        try:
            snapshot = self._cache.get()
        except sa.exc.SQLAlchemyError as exc:
            log.warning("/metrics could not read PostgreSQL: %s", type(exc).__name__)
            yield _gauge("warp_metrics_database_up", "1 when the figures below were read from PostgreSQL.", 0)
            return
        yield _gauge("warp_metrics_database_up", "1 when the figures below were read from PostgreSQL.", 1)
        yield from _families(snapshot)


def _gauge(name: str, documentation: str, value: float | None = None, *, labels: dict[str, float] | None = None,
           label: str = "") -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=[label] if labels is not None else None)
    if labels is not None:
        for key, number in sorted(labels.items()):
            family.add_metric([key], number)
    elif value is not None:
        family.add_metric([], value)
    return family


def _families(s: OperationalSnapshot) -> Iterator[Metric]:
    yield _gauge("warp_queue_rows", "hubspot_sync_queue rows by status (done rows are history, not counted).",
                 labels=dict(s.queue_rows), label="status")
    yield _gauge("warp_queue_oldest_due_seconds", "How long the oldest due queue row has waited (0: none).",
                 s.queue_oldest_due_seconds)
    yield _gauge("warp_webhook_events", "Stored webhook events not yet applied, by state.",
                 labels={"pending": s.webhook_events_pending, "retrying": s.webhook_events_retrying,
                         "given_up": s.webhook_events_given_up}, label="state")
    yield _gauge("warp_webhook_oldest_due_seconds", "How long the oldest due webhook event has waited (0: none).",
                 s.webhook_oldest_due_seconds)
    yield _gauge("warp_hubspot_budget_in_use", "HubSpot request tokens taken in the current 10-second window.",
                 labels=dict(s.budget_in_use), label="priority")
    yield _gauge("warp_hubspot_budget_capacity", "Requests HubSpot allows per 10 seconds (HUBSPOT_REQUESTS_PER_10S).",
                 s.budget_capacity)
    yield _gauge("warp_hubspot_rate_limited_today", "HubSpot's 429 answers since midnight (database time), by kind.",
                 labels=dict(s.rate_limited_today), label="kind")
    if s.daily_quota_limit is not None:
        yield _gauge("warp_hubspot_daily_quota_limit", "The account's daily HubSpot quota, as last seen today.",
                     s.daily_quota_limit)
        yield _gauge("warp_hubspot_daily_quota_remaining", "What is left of it, as last seen.",
                     s.daily_quota_remaining)
    yield _gauge("warp_hubspot_paused_seconds", "How long each open pause of the HubSpot flows has lasted.",
                 labels=dict(s.paused_seconds), label="cause")


class _Local(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from LOCAL.collect()


@bp.get("/metrics")
def metrics() -> Response:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(_Local())
    registry.register(OperationalCollector(current_app.extensions[CACHE]))
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
