"""One JSON error shape for every error the receiver answers."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from warp_sync_pipeline.core.db import database_unreachable
from warp_sync_pipeline.core.errors import Failure, ServiceError

log = logging.getLogger(__name__)

# Stable codes for the HTTP errors Flask/werkzeug raise on their own.
HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "UNPROCESSABLE",
    429: "TOO_MANY_REQUESTS",
    500: "INTERNAL_ERROR",
    502: "BAD_GATEWAY",
    503: "SERVICE_UNAVAILABLE",
}


# The HTTP answer of each kind of core failure (core/errors.py): the core says what went wrong, the receiver
# which status says it.
HTTP_STATUS: dict[Failure, int] = {
    Failure.INVALID: 400,
    Failure.UNAUTHENTICATED: 401,
    Failure.FORBIDDEN: 403,
    Failure.NOT_FOUND: 404,
    Failure.CONFLICT: 409,
    Failure.CONTRADICTS_EARLIER: 422,
    Failure.REJECTED_BY_HUBSPOT: 422,
    Failure.HUBSPOT_FAILED: 502,
    Failure.UNAVAILABLE: 503,
    Failure.INTERNAL: 500,
}


class ApiError(Exception):
    """A refusal of the receiver's own (a bad header, a missing body), with its HTTP status. Core services raise
    ServiceError instead; both are answered in the one JSON error shape."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def answer_of(exc: ApiError | ServiceError) -> tuple[int, str, str, dict[str, Any]]:
    """(HTTP status, code, message, extra) of a refusal, the receiver's own or a core service's."""
    status = exc.status if isinstance(exc, ApiError) else HTTP_STATUS[exc.kind]
    return status, exc.code, exc.message, exc.extra


def error_response(status: int, code: str, message: str, **extra: Any):  # noqa: ANN201 - Flask response
    body = {"success": False, "error": {"code": code, "message": message, **extra}}
    response = jsonify(body)
    response.status_code = status
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    @app.errorhandler(ServiceError)
    def _api_error(exc: ApiError | ServiceError):  # noqa: ANN202
        status, code, message, extra = answer_of(exc)
        return error_response(status, code, message, **extra)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):  # noqa: ANN202
        status = exc.code or 500
        response = error_response(status, HTTP_CODES.get(status, "HTTP_ERROR"), exc.description or exc.name)
        if status == 405 and exc.get_response().headers.get("Allow"):
            response.headers["Allow"] = exc.get_response().headers["Allow"]
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):  # noqa: ANN202
        unreachable = database_unreachable(exc)
        if unreachable is not None:
            # Not a bug to page about: the database is away (a restart, a failover); the caller may retry.
            log.warning("database unreachable: %s", unreachable)
            return error_response(503, "DATABASE_UNAVAILABLE", "The database cannot be reached; try again shortly.")
        # The exception text can hold SQL or values; log the type and traceback, answer generically.
        log.exception("unhandled error: %s", exc.__class__.__name__)
        return error_response(500, "INTERNAL_ERROR", "An unexpected error occurred.")
