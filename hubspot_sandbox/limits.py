"""Request budgets (HubSpot's rolling 10-second and search per-second windows) and request counters."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from datetime import UTC, datetime


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
    """Requests per key and UTC day, for the X-HubSpot-RateLimit-Daily-Remaining header."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._day = ""
        self._counts: Counter[str] = Counter()

    def add(self, key: str) -> int:
        today = datetime.now(UTC).date().isoformat()
        with self._lock:
            if today != self._day:
                self._day, self._counts = today, Counter()
            self._counts[key] += 1
            return self._counts[key]

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


class RequestCounters:
    """API requests by endpoint ("POST /crm/v3/objects/companies/batch/update"), for benchmarks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, endpoint: str) -> None:
        with self._lock:
            self._counts[endpoint] += 1

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {"total": sum(self._counts.values()), "by_endpoint": dict(sorted(self._counts.items()))}

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
