"""The one error type core services raise for an answer a caller should see.

`kind` says what went wrong in the domain's terms (an adapter picks its own answer: the receiver maps kinds to
HTTP statuses in webhook_receiver/errors.py), `code` is a stable name callers can branch on, `message` is for
people, and `extra` lands beside code and message in the receiver's JSON error shape
({"success": false, "error": {"code", "message", **extra}}).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Failure(StrEnum):
    INVALID = "invalid"  # the request or a value in it is not acceptable
    UNAUTHENTICATED = "unauthenticated"  # no valid credential
    FORBIDDEN = "forbidden"  # a valid credential without the permission
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"  # the current state does not allow it (busy, in use, not linked)
    CONTRADICTS_EARLIER = "contradicts_earlier"  # well formed, but at odds with an earlier request (a reused key)
    REJECTED_BY_HUBSPOT = "rejected_by_hubspot"  # HubSpot refused the values
    HUBSPOT_FAILED = "hubspot_failed"  # HubSpot failed, refused us, or never answered
    UNAVAILABLE = "unavailable"  # a dependency is away (the database); retrying later may succeed
    INTERNAL = "internal"  # a failure of ours


class ServiceError(Exception):
    def __init__(self, kind: Failure, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.kind = Failure(kind)
        self.code = code
        self.message = message
        self.extra = extra
