"""The one error type core services raise for an answer a caller should see.

`status` is the HTTP status an adapter answers with, `code` a stable name callers can branch on, `message`
for people, and `extra` what lands beside code and message in the receiver's JSON error shape
({"success": false, "error": {"code", "message", **extra}}).
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra
