"""HubSpot's wire: one httpx client, the bearer token, the shared request budget, the daily quota's headers,
retries of 429s, 5xx answers, timeouts and connection errors within the caller's time budget, and error bodies
parsed into types. Everything above it (client.py, batch_reads.py, batch_writes.py, property_schema.py) sends
through `Transport.call`.
"""

from __future__ import annotations

import copy
import email.utils
import functools
import logging
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any
from urllib.parse import quote

import httpx
import tenacity

from warp_sync_pipeline.core.hubspot.budget import Bucket, Priority, RequestBudget
from warp_sync_pipeline.core.hubspot.errors import (
    BudgetExhausted,
    HubSpotError,
    OutcomeUnknown,
    RateLimited,
    ServiceUnavailable,
    error_from_payload,
)

log = logging.getLogger("warp_sync.hubspot")


class Effect(Enum):
    """What a request does, which decides whether an unanswered attempt may be sent again."""

    READ = "read"  # repeating it is harmless; a lost answer changed nothing
    IDEMPOTENT_WRITE = "idempotent"  # repeating it gives the same state (update, upsert, archive)
    WRITE = "write"  # repeating it could do it twice (create): never resent after a lost answer


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    backoff_initial_s: float = 0.25
    backoff_max_s: float = 8.0
    jitter_s: float = 0.25
    # First wait after a 429 that names no Retry-After; doubles per attempt up to the interval.
    rate_limit_wait_s: float = 1.0


@dataclass(frozen=True)
class TransportSettings:
    """The transport's tuning (HubSpotClient's keyword arguments of the same names)."""

    time_budget_s: float  # each call's budget, retries included, unless a deadline is set (with_deadline)
    request_timeout_s: float  # one request's timeout (capped by what is left of the budget)
    retry: RetryPolicy
    unique_properties: frozenset[str]  # a conflict on one of these is a UniqueValueConflict


class _BearerToken(httpx.Auth):
    """Adds the token per request; it is in no client-wide header and no repr."""

    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request

    def __repr__(self) -> str:
        return "_BearerToken(<redacted>)"


@dataclass(frozen=True)
class _Request:
    """One call as the retries see it: what to send and what it does."""

    method: str
    path: str
    params: Mapping[str, str] | None
    body: Any
    effect: Effect
    bucket: Bucket

    def __str__(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def kind(self) -> str:
        """The endpoint as a count's key: ids in the path become `{id}`, and a batch read asking for property
        history is its own kind (it pages 50, not 100, and answers a different question)."""
        path = _PATH_ID.sub("/{id}", self.path)
        if isinstance(self.body, Mapping) and self.body.get("propertiesWithHistory"):
            path += " (history)"
        return f"{self.method} {path}"


_PATH_ID = re.compile(r"/\d+(?=/|$)")


class RequestTally:
    """Requests sent to HubSpot by kind, every attempt counted (a retried request costs HubSpot's budget twice).
    Shared by a transport and its views; a step reads it before and after to report what it cost."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, kind: str) -> None:
        with self._lock:
            self._counts[kind] += 1

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self._counts)


class Transport:
    """HTTP to HubSpot with retries, the request budget and typed errors. Thread-safe.

    `with_deadline()` and `with_priority()` return views sharing the connection pool and the budget; only the
    transport that made them closes those.
    """

    def __init__(
        self,
        base_url: str,
        access_token: str,
        *,
        budget: RequestBudget | None,
        priority: Priority,
        settings: TransportSettings,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.priority = Priority(priority)
        self.settings = settings
        self.budget = budget
        self._deadline: float | None = None
        self._owner = True
        self.tally = RequestTally()
        self._http = httpx.Client(
            base_url=self.base_url,
            auth=_BearerToken(access_token),
            headers={"Accept": "application/json", "User-Agent": "warp-sync"},
            timeout=settings.request_timeout_s,
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
        )

    def with_deadline(self, seconds: float) -> Transport:
        """A view whose calls all end within `seconds` from now."""
        view = self._view()
        view._deadline = time.monotonic() + seconds
        return view

    def with_priority(self, priority: Priority) -> Transport:
        view = self._view()
        view.priority = Priority(priority)
        return view

    def _view(self) -> Transport:
        view = copy.copy(self)
        view._owner = False
        return view

    def close(self) -> None:
        if self._owner:
            self._http.close()
            if self.budget is not None:
                self.budget.close()

    # --- a call --------------------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        effect: Effect = Effect.READ,
        bucket: Bucket = Bucket.BURST,
    ) -> Any:
        """Send with retries within the time budget; return the JSON body (None for 204)."""
        request = _Request(method, path, params, json, effect, bucket)
        deadline = self._deadline if self._deadline is not None else time.monotonic() + self.settings.time_budget_s
        attempts = _Attempts()
        retrying = _RetrySchedule(self.settings.retry, request, deadline).retrying()
        try:
            response = retrying(attempts.run, functools.partial(self._send_once, request, deadline))
        except HubSpotError as exc:
            exc.attempts = retrying.statistics.get("attempt_number", 1)
            unknown = attempts.unknown_outcome(request, exc)
            if unknown is not None:
                raise unknown from exc
            raise
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def record_error(self, entry: Mapping[str, Any]) -> HubSpotError:
        """One entry of a batch answer's `errors[]` (a 207's, or a 200's on 2026-09 paths) as a typed error."""
        status = entry.get("status")
        return error_from_payload(
            entry, status=int(status) if isinstance(status, int | str) and str(status).isdigit() else None,
            unique_properties=self.settings.unique_properties,
        )

    # --- one attempt -----------------------------------------------------------------------------------

    def _send_once(self, request: _Request, deadline: float) -> httpx.Response:
        response = self._exchange(request, deadline)
        self._note_daily(response)
        if response.is_success:
            return response
        failure = self._failure(request, response)
        if isinstance(failure, RateLimited) and self.budget is not None:
            self.budget.note_rate_limited(daily=failure.daily)
        raise failure

    def _exchange(self, request: _Request, deadline: float) -> httpx.Response:
        """Take a token from the budget and send; a request that never reached HubSpot, or whose answer was lost,
        becomes a typed error."""
        if self.budget is not None:
            self.budget.acquire(request.bucket, self.priority, deadline=deadline)
        remaining = deadline - time.monotonic()
        if remaining <= 0.01:
            raise BudgetExhausted(f"{request}: the time budget ran out before the request was sent")
        started = time.monotonic()
        self.tally.add(request.kind)
        try:
            response = self._http.request(
                request.method, request.path, params=request.params, json=request.body,
                timeout=min(self.settings.request_timeout_s, remaining),
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # The request never reached HubSpot.
            raise ServiceUnavailable(f"{request}: could not connect ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            # Sent, but the answer was lost (timeout, reset, closed connection).
            if request.effect is Effect.READ:
                raise ServiceUnavailable(f"{request}: no answer ({type(exc).__name__})") from exc
            raise OutcomeUnknown(
                f"{request}: no answer ({type(exc).__name__}); the write may have been applied"
            ) from exc
        log.debug("HubSpot %s %s -> %d in %.0f ms", request.method, request.path, response.status_code,
                  (time.monotonic() - started) * 1000)
        return response

    def _note_daily(self, response: httpx.Response) -> None:
        """Tell the shared budget what HubSpot says is left of the daily quota."""
        daily = _int_header(response.headers.get("X-HubSpot-RateLimit-Daily"))
        left = _int_header(response.headers.get("X-HubSpot-RateLimit-Daily-Remaining"))
        if self.budget is not None and daily is not None and left is not None:
            self.budget.note_daily(daily, left)

    def _failure(self, request: _Request, response: httpx.Response) -> HubSpotError:
        """The typed error of an unsuccessful answer."""
        error = self._response_error(response)
        if isinstance(error, ServiceUnavailable) and request.effect is Effect.WRITE and response.status_code >= 500 \
                and response.status_code != 503:
            # A 500/502/504 on a create may come after the write happened; a 503, 423 or 477 says it did not.
            return OutcomeUnknown(
                f"{request}: HubSpot answered {response.status_code}; the write may have been applied",
                status=error.status, category=error.category, correlation_id=error.correlation_id,
            )
        return error

    def _response_error(self, response: httpx.Response) -> HubSpotError:
        try:
            payload = response.json()
        except ValueError:
            payload = None
        return error_from_payload(
            payload if isinstance(payload, dict) else None,
            status=response.status_code,
            correlation_id=response.headers.get("X-HubSpot-Correlation-Id"),
            unique_properties=self.settings.unique_properties,
            retry_after_s=_retry_after(response.headers.get("Retry-After")),
            interval_s=_milliseconds(response.headers.get("X-HubSpot-RateLimit-Interval-Milliseconds")),
            fallback_message=f"HubSpot answered {response.status_code} {response.reason_phrase}",
        )


@dataclass
class _Attempts:
    """What the attempts of one call have seen: the last failure, and whether any attempt went unanswered."""

    lost_answer: bool = False  # did any attempt of this write go unanswered?
    last_failure: HubSpotError | None = None

    def run(self, send: Callable[[], httpx.Response]) -> httpx.Response:
        try:
            return send()
        except BudgetExhausted:
            # The time ran out while waiting to retry: the failure that made us wait is the caller's answer.
            if self.last_failure is not None:
                raise self.last_failure from None
            raise
        except OutcomeUnknown as exc:
            self.lost_answer, self.last_failure = True, exc
            raise
        except HubSpotError as exc:
            self.last_failure = exc
            raise

    def unknown_outcome(self, request: _Request, final: HubSpotError) -> OutcomeUnknown | None:
        """The OutcomeUnknown to raise instead of `final` when an earlier attempt went unanswered and `final`
        says nothing of it; None when `final` stands."""
        if not self.lost_answer or isinstance(final, OutcomeUnknown) or not _not_applied(final):
            return None
        return OutcomeUnknown(
            f"{request}: an earlier attempt went unanswered and the retries failed "
            f"({type(final).__name__}: {final.message}); the write may have been applied",
            status=final.status, category=final.category, correlation_id=final.correlation_id,
            attempts=final.attempts,
        )


@dataclass(frozen=True)
class _RetrySchedule:
    """Which failures of one call are retried, how long each wait is, and when to stop."""

    policy: RetryPolicy
    request: _Request
    deadline: float
    backoff: tenacity.wait_exponential_jitter = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "backoff", tenacity.wait_exponential_jitter(
            initial=self.policy.backoff_initial_s, max=self.policy.backoff_max_s, jitter=self.policy.jitter_s,
        ))

    def retrying(self) -> tenacity.Retrying:
        return tenacity.Retrying(
            retry=tenacity.retry_if_exception(self.retryable), wait=self.wait, stop=self.stop,
            before_sleep=self.before_sleep, sleep=time.sleep, reraise=True,
        )

    def retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, RateLimited):
            return not exc.daily
        if isinstance(exc, ServiceUnavailable):
            return True
        return isinstance(exc, OutcomeUnknown) and self.request.effect is Effect.IDEMPOTENT_WRITE

    def wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, ServiceUnavailable) and exc.retry_after_s is not None:
            return max(exc.retry_after_s, self.backoff(state))
        if isinstance(exc, RateLimited):
            if exc.retry_after_s is not None:
                return exc.retry_after_s
            ceiling = exc.interval_s or 10.0
            first = self.policy.rate_limit_wait_s
            return min(first * 2 ** (state.attempt_number - 1), ceiling) + random.uniform(0, 0.1)
        return self.backoff(state)

    def stop(self, state: tenacity.RetryCallState) -> bool:
        return (
            state.attempt_number >= self.policy.max_attempts
            or time.monotonic() + state.upcoming_sleep >= self.deadline
        )

    def before_sleep(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "HubSpot %s %s: %s (attempt %d); retrying in %.2fs",
            self.request.method, self.request.path, type(exc).__name__, state.attempt_number, state.upcoming_sleep,
        )


# --- wire formats --------------------------------------------------------------------------------


def query_bool(value: bool) -> str:
    return "true" if value else "false"


def path_segment(value: str) -> str:
    return quote(str(value), safe="")


def _int_header(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _milliseconds(value: str | None) -> float | None:
    return int(value) / 1000 if value and value.isdigit() else None


def _not_applied(exc: HubSpotError) -> bool:
    """Failures that prove nothing about an earlier unanswered attempt."""
    return isinstance(exc, ServiceUnavailable | RateLimited | BudgetExhausted)
