"""Webhook delivery as HubSpot does it: JSON arrays of up to 100 events, at most 10 requests in
flight, v1 and v3 signatures (each attempt re-signed with a fresh timestamp), retries with
jittered exponential backoff on a connection failure, a non-2xx answer or one slower than the
timeout (5 s by default)."""

from __future__ import annotations

import json
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from hubspot_sandbox.config import MAX_IN_FLIGHT_CEILING, SandboxConfig
from hubspot_sandbox.portal import WebhookEvent
from hubspot_sandbox.properties import UNSUBSCRIBABLE
from hubspot_sandbox.signing import v1_signature, v3_signature
from hubspot_sandbox.wire import iso_ms, now_ms

USER_AGENT = "HubSpot Connect 2.0 (http://dev.hubspot.com/) (namespace: webhooks-nio-http-client) - sandbox"
SUBSCRIPTION_IDS = {"company.creation": 1001, "company.deletion": 1002, "company.merge": 1003}
CHANGE_FLAGS = {"company.creation": "NEW", "company.deletion": "DELETED", "company.merge": "MERGED"}
MAX_LOGGED_ATTEMPTS = 5000


class DeliveryFailed(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class DeliveryCancelled(Exception):
    """The sandbox was reset or stopped while a batch waited for its next attempt."""


def subscription_id(event: WebhookEvent) -> int:
    if event.subscription_type == "company.propertyChange":
        # HubSpot has one subscription per subscribed property: a stable id per property name.
        return 200_000 + zlib.crc32((event.property_name or "").encode()) % 100_000
    return SUBSCRIPTION_IDS[event.subscription_type]


class WebhookDispatcher:
    def __init__(self, config: Callable[[], SandboxConfig]) -> None:
        self._config = config
        self._cond = threading.Condition()
        self._pending: deque[dict[str, Any]] = deque()
        self._in_flight = 0  # batches handed to a worker (in a request or waiting to retry)
        self._in_flight_event_count = 0
        self._requests_in_flight = 0
        self._max_in_flight_seen = 0
        self._attempts: deque[dict[str, Any]] = deque(maxlen=MAX_LOGGED_ATTEMPTS)
        self._next_event_id = 1
        self._next_batch_id = 1
        self._cancel = threading.Event()
        self._stopping = False
        self._pool = ThreadPoolExecutor(max_workers=MAX_IN_FLIGHT_CEILING, thread_name_prefix="sandbox-webhook")
        self._http = httpx.Client(trust_env=False, limits=httpx.Limits(max_connections=MAX_IN_FLIGHT_CEILING,
                                                      max_keepalive_connections=MAX_IN_FLIGHT_CEILING))
        self._thread = threading.Thread(target=self._run, name="sandbox-webhook-dispatcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cancel.set()
            self._cond.notify_all()
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._http.close()

    # --- intake ------------------------------------------------------------------------------
    def enqueue(self, events: list[WebhookEvent]) -> None:
        """Queue events as HubSpot would send them (nothing is queued while no target URL is set)."""
        if not events:
            return
        config = self._config()
        if not config.webhook_target_url:
            return
        subscribed = config.webhook_subscribed_properties
        with self._cond:
            for event in events:
                if event.subscription_type == "company.propertyChange" and (
                    event.property_name in UNSUBSCRIBABLE
                    or (subscribed is not None and event.property_name not in subscribed)
                ):
                    continue
                self._pending.append(self._payload(event, config))
            self._cond.notify_all()

    def _payload(self, event: WebhookEvent, config: SandboxConfig) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "eventId": self._next_event_id,
            "subscriptionId": subscription_id(event),
            "portalId": config.portal_id,
            "appId": config.app_id,
            "occurredAt": event.occurred_ms,
            "subscriptionType": event.subscription_type,
            "attemptNumber": 0,
            "objectId": event.object_id,
        }
        if not config.webhook_repeat_event_ids:
            # HubSpot warns that eventId is not guaranteed unique: by switch, every event shares one id.
            self._next_event_id += 1
        if event.property_name is not None:
            payload["propertyName"] = event.property_name
            payload["propertyValue"] = event.property_value
        payload["changeSource"] = event.source.source_type
        if event.source.source_id is not None:
            payload["sourceId"] = event.source.source_id
        if event.subscription_type in CHANGE_FLAGS:
            payload["changeFlag"] = CHANGE_FLAGS[event.subscription_type]
        if event.subscription_type == "company.propertyChange":
            payload["isSensitive"] = False
        payload.update(event.extra)
        return payload

    # --- state for tests -----------------------------------------------------------------------
    def pending(self) -> int:
        """Events not yet delivered for good: queued, in a request, or waiting for a retry."""
        with self._cond:
            return len(self._pending) + self._in_flight_event_count

    def flush(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.05))
            return len(self._pending) + self._in_flight_event_count

    def attempts(self) -> dict[str, Any]:
        with self._cond:
            return {"results": list(self._attempts), "pending": len(self._pending) + self._in_flight_event_count,
                    "max_in_flight": self._max_in_flight_seen}

    def reset(self) -> None:
        """Drop queued events and abandon batches waiting for a retry; clear the attempt log."""
        with self._cond:
            self._pending.clear()
            self._cancel.set()
            self._cancel = threading.Event()
            self._attempts.clear()
            self._max_in_flight_seen = 0
            self._cond.notify_all()

    # --- delivery ----------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (
                    not self._pending or self._in_flight >= self._config().webhook_max_in_flight
                ):
                    self._cond.wait(0.5)
                if self._stopping:
                    return
                config = self._config()
                size = config.webhook_max_events_per_request
                short = len(self._pending) < size
            if short and config.webhook_batch_window_ms:
                time.sleep(config.webhook_batch_window_ms / 1000)  # let events of one change arrive together
            with self._cond:
                if self._stopping:
                    return
                if not self._pending:
                    continue
                batch = [self._pending.popleft() for _ in range(min(size, len(self._pending)))]
                target = self._config().webhook_target_url
                if not target:
                    continue
                self._in_flight += 1
                self._in_flight_event_count += len(batch)
                batch_id = self._next_batch_id
                self._next_batch_id += 1
                cancel = self._cancel
            self._pool.submit(self._deliver, batch_id, batch, target, cancel)

    def _deliver(self, batch_id: int, batch: list[dict[str, Any]], target: str, cancel: threading.Event) -> None:
        config = self._config()
        base_wait = wait_exponential_jitter(initial=config.webhook_retry_initial_seconds,
                                            max=config.webhook_retry_max_seconds,
                                            jitter=config.webhook_retry_initial_seconds)

        def wait(state: RetryCallState) -> float:
            delay = base_wait(state)
            failure = state.outcome.exception() if state.outcome else None
            if isinstance(failure, DeliveryFailed) and failure.retry_after:
                delay = max(delay, failure.retry_after)  # a 429's Retry-After is honoured
            return delay

        retrying = Retrying(
            stop=stop_after_attempt(config.webhook_max_retries + 1),
            wait=wait,
            retry=retry_if_exception_type(DeliveryFailed),
            sleep=cancel.wait,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    if cancel.is_set():
                        raise DeliveryCancelled()
                    self._attempt(batch_id, batch, attempt.retry_state.attempt_number - 1, target, cancel)
        except (DeliveryFailed, DeliveryCancelled):
            pass  # given up (logged per attempt), as HubSpot drops a batch after its last retry
        finally:
            with self._cond:
                self._in_flight -= 1
                self._in_flight_event_count -= len(batch)
                self._cond.notify_all()

    def _attempt(self, batch_id: int, batch: list[dict[str, Any]], attempt_number: int, target: str,
                 cancel: threading.Event) -> None:
        config = self._config()
        body = json.dumps([dict(e, attemptNumber=attempt_number) for e in batch], separators=(",", ":")).encode()
        timestamp = now_ms()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-HubSpot-Signature": v1_signature(config.client_secret, body),
            "X-HubSpot-Signature-Version": "v1",
            "X-HubSpot-Signature-v3": v3_signature(config.client_secret, "POST", target, body, timestamp),
            "X-HubSpot-Request-Timestamp": str(timestamp),
            "X-HubSpot-Timeout-Millis": str(int(config.webhook_timeout_seconds * 1000)),
        }
        record: dict[str, Any] = {
            "batch_id": batch_id, "attempt_number": attempt_number, "url": target, "started_at": iso_ms(timestamp),
            "event_ids": [e["eventId"] for e in batch], "event_count": len(batch),
            "subscription_types": sorted({e["subscriptionType"] for e in batch}),
            "request_timestamp": timestamp, "status": None, "error": None, "outcome": "failed",
        }
        with self._cond:
            self._requests_in_flight += 1
            self._max_in_flight_seen = max(self._max_in_flight_seen, self._requests_in_flight)
        started = time.monotonic()
        try:
            response = self._http.post(target, content=body, headers=headers,
                                       timeout=config.webhook_timeout_seconds)
        except httpx.HTTPError as exc:
            self._request_done()
            record["error"] = f"{type(exc).__name__}: {exc}"
            self._log(record, started, cancel)
            raise DeliveryFailed(record["error"]) from None
        self._request_done()
        record["status"] = response.status_code
        elapsed = time.monotonic() - started
        if not 200 <= response.status_code < 300:
            record["error"] = f"HTTP {response.status_code}"
            self._log(record, started, cancel)
            raise DeliveryFailed(record["error"], _retry_after(response))
        if elapsed > config.webhook_timeout_seconds:
            record["error"] = f"answered after {elapsed:.2f}s (timeout {config.webhook_timeout_seconds}s)"
            self._log(record, started, cancel)
            raise DeliveryFailed(record["error"])
        record["outcome"] = "delivered"
        self._log(record, started, cancel)

    def _request_done(self) -> None:
        with self._cond:
            self._requests_in_flight -= 1

    def _log(self, record: dict[str, Any], started: float, cancel: threading.Event) -> None:
        record["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
        with self._cond:
            if cancel is self._cancel:  # attempts of a batch from before a reset stay out of the new log
                self._attempts.append(record)


def _retry_after(response: httpx.Response) -> float | None:
    if response.status_code != 429:
        return None
    try:
        return float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
