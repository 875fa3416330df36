"""Fault switches: outages, latency, timeouts, forced 429s, forced validation failures, lost answers.

Set with POST /_sandbox/faults, e.g.
    {"outage": {"calls": 3}}                      next 3 API calls answer 503
    {"outage": {"seconds": 2.5}}                  every API call answers 503 for 2.5 s
    {"outage": {"calls": 1, "status": 423}}       ... or another transient status (423, 477 with Retry-After, 5xx)
    {"latency_ms": 200}                           every API call waits 200 ms first
    {"timeout": {"calls": 1, "hold_seconds": 30}} hold the call (past a client's timeout), then 504
    {"rate_limit": {"calls": 2}}                  next 2 calls answer HubSpot's ten-secondly 429
    {"validation": {"property": "warp_credit_limit", "calls": 1, "code": "INVALID_INTEGER"}}
                                                  the next write carrying that property is refused
    {"omit_result": {"calls": 1}}                 perform the next batch write, and leave its last input
                                                  out of the answer: neither a result nor an error
    {"after_success": {"calls": 1, "mode": "drop"}}   perform the next write, then drop the
                                                  connection ("timeout" mode holds it first)
Each fault but latency and validation takes "endpoint": "POST /crm/v3/objects/companies" (or a
list) to apply to those endpoints only (the names /_sandbox/counters uses). A switch replaces the
fault of the same kind; DELETE /_sandbox/faults clears them all and releases held requests.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from hubspot_sandbox.portal import ForcedFailure
from hubspot_sandbox.wire import bad_request

DEFAULT_HOLD_SECONDS = 30.0
# HubSpot's transient answers (hubspot-api.md, section 12): 423 a record locked (wait at least 2 s), 477 a migration
# in progress (with Retry-After), and 5xx.
TRANSIENT_STATUSES = (423, 477, 500, 502, 503, 504, 524)


@dataclass
class CountedFault:
    calls: int | None = None  # None: unlimited (until `until` or cleared)
    until: float | None = None  # time.monotonic() deadline
    endpoints: tuple[str, ...] = ()
    hold_seconds: float = DEFAULT_HOLD_SECONDS
    mode: str = "timeout"
    status: int = 503  # an outage's answer: 503, or another transient HubSpot status (TRANSIENT_STATUSES)

    def applies(self, endpoint: str) -> bool:
        if self.endpoints and endpoint not in self.endpoints:
            return False
        if self.until is not None and time.monotonic() >= self.until:
            return False
        return self.calls is None or self.calls > 0

    def use(self) -> None:
        if self.calls is not None:
            self.calls -= 1

    def describe(self) -> dict[str, Any]:
        data = asdict(self)
        data["endpoints"] = list(self.endpoints)
        if self.until is not None:
            data["seconds_left"] = max(0.0, round(self.until - time.monotonic(), 3))
        data.pop("until")
        return data


@dataclass
class ValidationFault:
    property: str
    calls: int
    code: str
    message: str | None


class Faults:
    KINDS = ("outage", "latency_ms", "timeout", "rate_limit", "validation", "after_success", "omit_result")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._release = threading.Event()
        self.clear()

    def clear(self) -> None:
        """No faults; requests held by a timeout fault are let go."""
        with self._lock:
            self._outage: CountedFault | None = None
            self._latency_ms = 0
            self._timeout: CountedFault | None = None
            self._rate_limit: CountedFault | None = None
            self._validation: list[ValidationFault] = []
            self._after_success: CountedFault | None = None
            self._omit_result: CountedFault | None = None
            self._release.set()
            self._release = threading.Event()

    def configure(self, spec: Any) -> dict[str, Any]:
        if not isinstance(spec, dict):
            raise bad_request("Faults must be a JSON object.")
        unknown = set(spec) - set(self.KINDS)
        if unknown:
            raise bad_request(f"Unknown fault {sorted(unknown)[0]!r}; known: {', '.join(self.KINDS)}.")
        parsed: dict[str, Any] = {}
        for kind, value in spec.items():
            if kind == "latency_ms":
                if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                    raise bad_request("latency_ms must be a non-negative number.")
                parsed[kind] = float(value)
            elif kind == "validation":
                parsed[kind] = [_validation_fault(v) for v in (value if isinstance(value, list) else [value])]
            else:
                parsed[kind] = None if value is None else _counted_fault(kind, value)
        with self._lock:
            for kind, value in parsed.items():
                if kind == "latency_ms":
                    self._latency_ms = value
                elif kind == "validation":
                    self._validation = value
                else:
                    setattr(self, f"_{kind}", value)
        return self.describe()

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {
                "outage": self._outage.describe() if self._outage else None,
                "latency_ms": self._latency_ms,
                "timeout": self._timeout.describe() if self._timeout else None,
                "rate_limit": self._rate_limit.describe() if self._rate_limit else None,
                "validation": [asdict(v) for v in self._validation if v.calls > 0],
                "after_success": self._after_success.describe() if self._after_success else None,
                "omit_result": self._omit_result.describe() if self._omit_result else None,
            }

    # --- taken by the request pipeline --------------------------------------------------------
    def latency_seconds(self) -> float:
        return self._latency_ms / 1000.0

    def take(self, kind: str, endpoint: str) -> CountedFault | None:
        """The fault of `kind` if it applies to this call (using up one of its calls)."""
        with self._lock:
            fault: CountedFault | None = getattr(self, f"_{kind}")
            if fault is None or not fault.applies(endpoint):
                return None
            fault.use()
            return fault

    def take_validation(self, property_names: set[str]) -> dict[str, ForcedFailure]:
        with self._lock:
            forced: dict[str, ForcedFailure] = {}
            for fault in self._validation:
                if fault.calls > 0 and fault.property in property_names:
                    fault.calls -= 1
                    forced[fault.property] = ForcedFailure(fault.code, fault.message)
            return forced

    def hold(self, seconds: float) -> None:
        """Keep a request waiting (a timeout fault) until `seconds` pass or the faults are cleared."""
        with self._lock:
            release = self._release
        release.wait(seconds)


def _counted_fault(kind: str, value: Any) -> CountedFault:
    if not isinstance(value, dict):
        raise bad_request(f"Fault {kind} must be an object such as {{\"calls\": 3}}.")
    allowed = {"calls", "seconds", "endpoint", "hold_seconds", "mode", "status"}
    if set(value) - allowed:
        raise bad_request(f"Fault {kind} takes only {', '.join(sorted(allowed))}.")
    calls, seconds = value.get("calls"), value.get("seconds")
    if calls is None and seconds is None:
        raise bad_request(f"Fault {kind} needs calls (a count) or seconds (a duration).")
    if calls is not None and (not isinstance(calls, int) or isinstance(calls, bool) or calls < 0):
        raise bad_request(f"Fault {kind}: calls must be a non-negative whole number.")
    if seconds is not None and (not isinstance(seconds, int | float) or seconds < 0):
        raise bad_request(f"Fault {kind}: seconds must be a non-negative number.")
    endpoint = value.get("endpoint")
    endpoints = (endpoint,) if isinstance(endpoint, str) else tuple(endpoint or ())
    if not all(isinstance(e, str) for e in endpoints):
        raise bad_request(f"Fault {kind}: endpoint must be a string or a list of strings.")
    hold = value.get("hold_seconds", DEFAULT_HOLD_SECONDS)
    if not isinstance(hold, int | float) or hold < 0:
        raise bad_request(f"Fault {kind}: hold_seconds must be a non-negative number.")
    mode = value.get("mode", "timeout")
    if kind == "after_success" and mode not in ("timeout", "drop"):
        raise bad_request("Fault after_success: mode must be timeout or drop.")
    status = value.get("status", 503)
    if (kind != "outage" and "status" in value) or status not in TRANSIENT_STATUSES:
        raise bad_request(f"Only the outage fault takes a status, one of {', '.join(map(str, TRANSIENT_STATUSES))}.")
    until = time.monotonic() + float(seconds) if seconds is not None else None
    return CountedFault(calls=calls, until=until, endpoints=endpoints, hold_seconds=float(hold), mode=mode,
                        status=status)


def _validation_fault(value: Any) -> ValidationFault:
    if not isinstance(value, dict) or not isinstance(value.get("property"), str):
        raise bad_request("Fault validation needs an object with a property name.")
    calls = value.get("calls", 1)
    if not isinstance(calls, int) or isinstance(calls, bool) or calls < 0:
        raise bad_request("Fault validation: calls must be a non-negative whole number.")
    return ValidationFault(property=value["property"], calls=calls,
                           code=str(value.get("code") or "INVALID_PROPERTY_VALUE"), message=value.get("message"))
