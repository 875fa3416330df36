"""The portal's export tasks (api_exports.py serves them): what each will hand out, and the token of its file."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ExportTask:
    id: int
    name: str
    requested_ms: int
    header: list[str]
    rows: list[list[str]]
    polls: int = 0
    completed_ms: int | None = None
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))


class ExportTasks:
    """The portal's export tasks, by id, and their files' tokens."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tasks: dict[int, ExportTask] = {}
        self._next_id = 3_100_000

    def add(self, **fields: Any) -> ExportTask:
        with self._lock:
            self._next_id += 1
            task = ExportTask(id=self._next_id, **fields)
            self._tasks[task.id] = task
            return task

    def get(self, task_id: int) -> ExportTask | None:
        with self._lock:
            return self._tasks.get(task_id)

    def by_token(self, token: str) -> ExportTask | None:
        with self._lock:
            return next((t for t in self._tasks.values() if secrets.compare_digest(t.token, token)), None)

    def reset(self) -> None:
        with self._lock:
            self._tasks.clear()
