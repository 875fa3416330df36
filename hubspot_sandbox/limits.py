"""Request budgets (HubSpot's rolling 10-second and search per-second windows) and request counters."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Admission:
    allowed: bool
    remaining: int
    secondly_remaining: int


class RollingWindow:
    """Per-key request times over a rolling window; a refused request does not use up budget."""

    def __init__(self, window_seconds: float) -> None:
        self.window_seconds = window_seconds
        self._lock = threading.Lock()
        self._hits: dict[str, deque[float]] = {}

    def admit(self, key: str, limit: int, *, secondly_limit: int | None = None,
              window_seconds: float | None = None) -> Admission:
        """Admit one request under `limit` per window (`window_seconds` overrides the window set at start)."""
        now = time.monotonic()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            cutoff = now - (self.window_seconds if window_seconds is None else window_seconds)
            while hits and hits[0] <= cutoff:
                hits.popleft()
            allowed = len(hits) < limit
            if allowed:
                hits.append(now)
            in_last_second = sum(1 for t in hits if t > now - 1.0)
            secondly = max(0, (secondly_limit or limit) - in_last_second)
            return Admission(allowed, max(0, limit - len(hits)), secondly)

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()


class DailyCounter:
    """The account's requests today, as HubSpot counts its daily quota: per account (every app of it, not one
    token), reset at midnight in the account's time zone. `spend()` stands for other apps' calls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._day: date | None = None
        self._used = 0

    def add(self, time_zone: str, calls: int = 1) -> int:
        """Count `calls` (HubSpot counts a call refused for the quota too); the day's total so far."""
        today = datetime.now(ZoneInfo(time_zone)).date()
        with self._lock:
            if today != self._day:
                self._day, self._used = today, 0
            self._used += calls
            return self._used

    def used(self, time_zone: str) -> int:
        return self.add(time_zone, 0)

    def reset(self) -> None:
        with self._lock:
            self._used = 0


def next_midnight(time_zone: str) -> datetime:
    """When the account's daily quota resets: the next midnight in its time zone."""
    zone = ZoneInfo(time_zone)
    tomorrow = datetime.now(zone).date() + timedelta(days=1)
    return datetime.combine(tomorrow, datetime.min.time(), tzinfo=zone)


class RequestCounters:
    """API requests by endpoint ("POST /crm/v3/objects/companies/batch/update", whichever version's path was
    called) and by API version ("v3", "2026-09"), for benchmarks and tests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._versions: Counter[str] = Counter()

    def add(self, endpoint: str, version: str) -> None:
        with self._lock:
            self._counts[endpoint] += 1
            self._versions[version] += 1

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {"total": sum(self._counts.values()), "by_endpoint": dict(sorted(self._counts.items())),
                    "by_version": dict(sorted(self._versions.items()))}

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._versions.clear()
