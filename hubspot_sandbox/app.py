"""The sandbox's Flask app: HubSpot's request pipeline around the CRM blueprints, plus /_sandbox.

Every /crm request passes, in order: counting, added latency, outage, forced 429, timeout hold,
Bearer auth, then the budgets: search's per-second one, or the account's daily quota (429 DAILY once spent)
and the rolling 10-second one. /account-info answers with the token alone (no budget: it is how a client
learns when a spent quota resets). Errors leave
in HubSpot's shape with a correlation id mirrored in X-HubSpot-Correlation-Id.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import re
import socket
import time
from typing import Any

from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter, ValidationError

from hubspot_sandbox.config import SandboxConfig
from hubspot_sandbox.state import SandboxState
from hubspot_sandbox.wire import JSON_CONTENT_TYPE, ApiFailure, bad_request, new_correlation_id

log = logging.getLogger(__name__)

# HubSpot's date versions (hubspot-api.md, section 12) and whether each answers a batch's partial failures with a
# 207 (like v3) or, from 2026-09, with the operation's own success status (200; 201 for batch create: the 2026-09
# documents declare no 207) carrying errors[]. /crm/objects/{version}/... and /crm/properties/{version}/... serve
# the same views as /crm/v3/...; an unknown version is a 404, as on HubSpot.
DATE_VERSIONS = {"2026-03": True, "2026-09": False}  # version -> partial failures in a 207
LEGACY_VERSION = "v3"
_API_VERSION_KEY = "hubspot_sandbox.api_version"
_DATED_PATH = re.compile(r"^/crm/(objects|properties|exports)/(\d{4}-\d{2})(/.*)?$")
SEARCH_ENDPOINT = "POST /crm/v3/objects/companies/search"
WRITE_ENDPOINTS = frozenset({
    "POST /crm/v3/objects/companies",
    "PATCH /crm/v3/objects/companies/{companyId}",
    "DELETE /crm/v3/objects/companies/{companyId}",
    "POST /crm/v3/objects/companies/batch/create",
    "POST /crm/v3/objects/companies/batch/update",
    "POST /crm/v3/objects/companies/batch/upsert",
    "POST /crm/v3/objects/companies/batch/archive",
    "POST /crm/v3/objects/companies/merge",
})
AUTH_FAILURE_MESSAGE = (
    "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more "
    "details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)
_RULE_PARTS = re.compile(r"<(?:[a-z_]+:)?([a-z_]+)>")
_RULE_NAMES = {"object_type": "companies", "company_id": "{companyId}", "property_name": "{propertyName}",
               "group_name": "{groupName}"}


class CompanyTypeConverter(BaseConverter):
    """The object-type path segment: `companies`, `company`/`COMPANY` and `0-2` all mean companies."""

    def to_python(self, value: str) -> str:
        if value.lower() not in ("companies", "company", "0-2"):
            raise ValidationError()
        return "companies"

    def to_url(self, value: Any) -> str:
        return "companies"


def create_sandbox_app(state: SandboxState) -> Flask:
    from hubspot_sandbox.api_account import account
    from hubspot_sandbox.api_companies import companies
    from hubspot_sandbox.api_exports import exports, files
    from hubspot_sandbox.api_properties import properties
    from hubspot_sandbox.control_api import control

    app = Flask("hubspot_sandbox")
    app.url_map.converters["company_type"] = CompanyTypeConverter
    app.url_map.strict_slashes = False
    app.extensions["hubspot_sandbox"] = state
    app.register_blueprint(companies)
    app.register_blueprint(properties)
    app.register_blueprint(account)
    app.register_blueprint(exports)
    app.register_blueprint(files)
    app.register_blueprint(control)
    app.before_request(_api_gate)
    app.after_request(_api_finish)
    app.register_error_handler(ApiFailure, _render_failure)
    app.register_error_handler(HTTPException, _render_http_exception)
    app.register_error_handler(Exception, _render_unexpected)
    app.wsgi_app = _DatedPaths(app.wsgi_app)  # type: ignore[method-assign]
    return app


class _DatedPaths:
    """Routes /crm/{objects|properties}/{date version}/... to the v3 views, noting the version for them."""

    def __init__(self, wsgi_app: Any) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        match = _DATED_PATH.match(environ.get("PATH_INFO", ""))
        if match and match.group(2) in DATE_VERSIONS:
            environ["PATH_INFO"] = f"/crm/v3/{match.group(1)}{match.group(3) or ''}"
            environ[_API_VERSION_KEY] = match.group(2)
        return self.wsgi_app(environ, start_response)


def api_version() -> str:
    """The API version of the path this request called: "v3" or a date version."""
    return request.environ.get(_API_VERSION_KEY, LEGACY_VERSION)


def answers_multi_status() -> bool:
    """Whether this request's API version answers a batch's partial failures with a 207 (v3, 2026-03)."""
    return DATE_VERSIONS.get(api_version(), True)


def partial_status(success_status: int) -> int:
    """The status of a batch answer carrying errors[]: 207, or the success status in the 2026-09 API (or on every
    path when `batch_write_errors` is multi_status_200)."""
    if sandbox_state().config.batch_write_errors == "multi_status_200":
        return success_status
    return 207 if answers_multi_status() else success_status


def sandbox_state() -> SandboxState:
    return current_app.extensions["hubspot_sandbox"]


# --- request helpers for the views --------------------------------------------------------------
def json_response(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload, separators=(",", ":")), status=status, content_type=JSON_CONTENT_TYPE)


def read_json() -> Any:
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise bad_request("A JSON request body is required.")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f" on line {exc.lineno}, column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise bad_request(f"Invalid input JSON{where}: {getattr(exc, 'msg', str(exc))}") from None


def read_json_object() -> dict[str, Any]:
    body = read_json()
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return body


def query_list(name: str) -> list[str]:
    """A list parameter sent as repeated keys (the official client) or comma-separated (HubSpot's docs)."""
    return [part.strip() for value in request.args.getlist(name) for part in value.split(",") if part.strip()]


def query_bool(name: str, default: bool = False) -> bool:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered not in ("true", "false"):
        raise bad_request(f"{name} must be true or false; got {raw!r}.")
    return lowered == "true"


def query_int(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise bad_request(f"{name} must be a whole number; got {raw!r}.") from None


def endpoint_key() -> str:
    """The endpoint as counters and fault switches name it: "PATCH /crm/v3/objects/companies/{companyId}"."""
    rule = request.url_rule
    if rule is None:
        return f"{request.method} {request.path}"
    return f"{request.method} " + _RULE_PARTS.sub(lambda m: _RULE_NAMES.get(m.group(1), "{" + m.group(1) + "}"),
                                                  rule.rule).rstrip("/")


# --- the pipeline -----------------------------------------------------------------------------
def _api_gate() -> None:
    if not request.path.startswith("/crm/"):
        return
    state = sandbox_state()
    g.correlation_id = new_correlation_id()
    endpoint = g.endpoint = endpoint_key()
    state.counters.add(endpoint, api_version())
    faults = state.faults
    latency = faults.latency_seconds()
    if latency:
        time.sleep(latency)
    outage = faults.take("outage", endpoint)
    if outage:
        raise _transient_failure(outage.status)
    if faults.take("rate_limit", endpoint):
        raise _ten_secondly_failure(state, 0)
    held = faults.take("timeout", endpoint)
    if held:
        faults.hold(held.hold_seconds)
        raise ApiFailure(504, "GATEWAY_TIMEOUT", "The request timed out (sandbox timeout fault).")
    token = authenticate(state)
    config = state.config
    if endpoint == SEARCH_ENDPOINT:
        # Search has its own per-second limit, no burst headers, and does not use the 10 s budget.
        if config.search_per_second is not None and not state.search_window.admit(token,
                                                                                 config.search_per_second).allowed:
            raise ApiFailure(429, "RATE_LIMITS", "You have reached your secondly limit.")
        return
    used_today = state.daily.add(config.time_zone)
    headers = {"X-HubSpot-RateLimit-Daily": str(config.daily_limit),
               "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, config.daily_limit - used_today))}
    if used_today > config.daily_limit:
        # The account's quota is spent (by us or any other app of the account) until midnight in its time zone.
        raise ApiFailure(
            429, "RATE_LIMITS", "You have reached your daily limit.",
            extra={"errorType": "RATE_LIMIT", "policyName": "DAILY",
                   "groupName": f"publicapi:private-app-api-daily:{config.app_id}:{config.portal_id}"},
            headers=headers,
        )
    if config.rate_limit_per_10s is not None:
        limit = config.rate_limit_per_10s
        admission = state.burst_window.admit(token, limit, secondly_limit=max(1, limit // 10),
                                             window_seconds=config.rate_limit_window_seconds)
        headers.update(_burst_headers(config, admission.remaining, admission.secondly_remaining))
        g.rate_headers = headers
        if not admission.allowed:
            raise _ten_secondly_failure(state, 0)
    g.rate_headers = headers


def _transient_failure(status: int) -> ApiFailure:
    if status == 423:
        return ApiFailure(423, "LOCKED", "The record is locked by another request; retry after at least 2 seconds.")
    if status == 477:
        return ApiFailure(477, "MIGRATION_IN_PROGRESS", "This portal is being migrated; retry later.",
                          headers={"Retry-After": "1"})
    if status == 503:
        return ApiFailure(503, "SERVICE_UNAVAILABLE", "The service is temporarily unavailable (sandbox outage).")
    return ApiFailure(status, "INTERNAL_ERROR", f"HubSpot answered {status} (sandbox outage).")


def _burst_headers(config: SandboxConfig, remaining: int, secondly_remaining: int) -> dict[str, str]:
    limit = config.rate_limit_per_10s or 100
    return {
        "X-HubSpot-RateLimit-Interval-Milliseconds": str(round(config.rate_limit_window_seconds * 1000)),
        "X-HubSpot-RateLimit-Max": str(limit),
        "X-HubSpot-RateLimit-Remaining": str(remaining),
        "X-HubSpot-RateLimit-Secondly": str(max(1, limit // 10)),
        "X-HubSpot-RateLimit-Secondly-Remaining": str(secondly_remaining),
    }


def _ten_secondly_failure(state: SandboxState, remaining: int) -> ApiFailure:
    config = state.config
    return ApiFailure(
        429, "RATE_LIMITS", "You have reached your ten_secondly_rolling limit.",
        extra={"errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING",
               "groupName": f"publicapi:private-app-api-ten-secondly:{config.app_id}:{config.portal_id}"},
        headers=_burst_headers(config, remaining, 0),
    )


def authenticate(state: SandboxState) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    expected = state.config.access_token
    if scheme.lower() != "bearer" or not token or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise ApiFailure(401, "INVALID_AUTHENTICATION", AUTH_FAILURE_MESSAGE,
                         headers={"X-HubSpot-Auth-Failure": "401 Unauthorized"})
    return token.strip()


def _api_finish(response: Response) -> Response:
    if not request.path.startswith("/crm/"):
        return response
    correlation_id = g.get("correlation_id")
    if correlation_id and "X-HubSpot-Correlation-Id" not in response.headers:
        response.headers["X-HubSpot-Correlation-Id"] = correlation_id
    for name, value in (g.get("rate_headers") or {}).items():
        response.headers.setdefault(name, value)
    endpoint = g.get("endpoint")
    if 200 <= response.status_code < 300 and endpoint in WRITE_ENDPOINTS:
        state = sandbox_state()
        lost = state.faults.take("after_success", endpoint)
        if lost:
            if lost.mode == "timeout":
                state.faults.hold(lost.hold_seconds)
            _drop_connection()
    return response


def _drop_connection() -> None:
    """Close the socket under the answer: the write happened, the caller never hears of it."""
    connection = request.environ.get("werkzeug.socket")
    if connection is not None:
        with contextlib.suppress(OSError):
            connection.shutdown(socket.SHUT_RDWR)


# --- errors -----------------------------------------------------------------------------------
def _render_failure(failure: ApiFailure) -> Response:
    correlation_id = g.get("correlation_id") or new_correlation_id()
    response = json_response(failure.body(correlation_id), failure.status)
    response.headers["X-HubSpot-Correlation-Id"] = correlation_id
    for name, value in failure.headers.items():
        response.headers[name] = value
    return response


def _render_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    if status == 404:
        failure = ApiFailure(404, "OBJECT_NOT_FOUND",
                             f"No such endpoint: {request.method} {request.path} (the sandbox serves CRM v3 "
                             "companies and properties).")
    elif status == 405:
        failure = ApiFailure(405, "METHOD_NOT_ALLOWED", f"{request.method} is not allowed on {request.path}.")
    elif status == 413:
        failure = ApiFailure(413, "VALIDATION_ERROR", "The request body is too large.")
    else:
        failure = ApiFailure(status, "VALIDATION_ERROR" if status < 500 else "INTERNAL_ERROR",
                             exc.description or exc.name)
    return _render_failure(failure)


def _render_unexpected(exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return _render_http_exception(exc)
    log.exception("sandbox error on %s %s", request.method, request.path)
    return _render_failure(ApiFailure(500, "INTERNAL_ERROR", f"Internal error in the sandbox: {type(exc).__name__}"))
