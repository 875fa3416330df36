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
    canceled: bool = False
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

    def poll(self, task_id: int, *, polls_before_done: int, cancel: bool, now_ms: int) -> ExportTask | None:
        """One status read of a task, under the lock (status reads may arrive together): after
        `polls_before_done` reads it is done, completed or (with `cancel`) canceled, and its rows are dropped."""
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None:
                return None
            task.polls += 1
            if task.completed_ms is None and not task.canceled and task.polls > polls_before_done:
                if cancel:
                    task.canceled, task.rows = True, []
                else:
                    task.completed_ms = now_ms
            return task

    def by_token(self, token: str) -> ExportTask | None:
        with self._lock:
            return next((t for t in self._tasks.values() if secrets.compare_digest(t.token, token)), None)

    def reset(self) -> None:
        with self._lock:
            self._tasks.clear()
