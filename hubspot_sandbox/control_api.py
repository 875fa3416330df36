"""The /_sandbox switches (not HubSpot paths): reset, faults, settings, seeding, a sales rep's
edits, counters and webhook delivery. No token needed; answered only to loopback callers."""

from __future__ import annotations

import ipaddress
from typing import Any

from flask import Blueprint, Response, request

from hubspot_sandbox.app import json_response, query_bool, read_json, read_json_object, sandbox_state
from hubspot_sandbox.portal import WriteInput, WriteResult, WriteSource
from hubspot_sandbox.state import SEED_SOURCE
from hubspot_sandbox.wire import ApiFailure, bad_request, not_found, parse_time_ms

control = Blueprint("sandbox_control", __name__, url_prefix="/_sandbox")


@control.before_request
def loopback_only() -> None:
    try:
        loopback = ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ApiFailure(403, "FORBIDDEN", "The /_sandbox switches answer loopback callers only.")


@control.post("/reset")
def reset() -> Response:
    sandbox_state().reset()
    return json_response({"reset": True})


@control.get("/faults")
def get_faults() -> Response:
    return json_response(sandbox_state().faults.describe())


@control.post("/faults")
def set_faults() -> Response:
    return json_response(sandbox_state().faults.configure(read_json_object()))


@control.delete("/faults")
def clear_faults() -> Response:
    sandbox_state().faults.clear()
    return json_response(sandbox_state().faults.describe())


@control.get("/config")
def get_config() -> Response:
    return json_response(sandbox_state().config.public())


@control.post("/config")
def set_config() -> Response:
    return json_response(sandbox_state().configure(read_json_object()).public())


@control.post("/companies/seed")
def seed() -> Response:
    body = read_json()
    entries = body.get("companies") if isinstance(body, dict) else body
    if not isinstance(entries, list):
        raise bad_request('Send {"companies": [{"properties": {...}, "createdAt"?, "updatedAt"?, "archived"?}]}.')
    return json_response({"ids": sandbox_state().portal.seed(entries, SEED_SOURCE)}, 201)


@control.get("/companies")
def all_companies() -> Response:
    return json_response({"results": sandbox_state().portal.snapshot(include_history=query_bool("history"))})


# --- a sales rep in HubSpot's UI (fires webhooks with changeSource CRM_UI) -----------------------------
def _user_id(body: dict[str, Any]) -> int | None:
    user_id = body.get("userId")
    if user_id is not None and (not isinstance(user_id, int) or isinstance(user_id, bool)):
        raise bad_request("userId must be a whole number.")
    return user_id


def _timestamp(body: dict[str, Any]) -> int | None:
    if body.get("timestamp") is None:
        return None
    try:
        return parse_time_ms(body["timestamp"])
    except (ValueError, TypeError):
        raise bad_request("timestamp must be ISO-8601 or epoch milliseconds.") from None


@control.post("/rep/edit")
def rep_edit() -> Response:
    state = sandbox_state()
    body = read_json_object()
    if body.get("companyId") in (None, "") or not isinstance(body.get("properties"), dict):
        raise bad_request("companyId and a properties object are required.")
    write = WriteInput(body["properties"], id=str(body["companyId"]))
    [result] = state.portal.write_batch("update", [write], state.rep_source(_user_id(body)), partial=False,
                                        timestamp=_timestamp(body))
    assert isinstance(result, WriteResult)
    company = state.portal.find(str(result.company_id))
    assert company is not None
    return json_response(state.portal.render(company, sorted(company.values)))


@control.post("/integration/edit")
def integration_edit() -> Response:
    """Another integration of the portal updates a company (its history shows that app's sourceId)."""
    state = sandbox_state()
    body = read_json_object()
    if body.get("companyId") in (None, "") or not isinstance(body.get("properties"), dict) or not body.get("appId"):
        raise bad_request("companyId, appId and a properties object are required.")
    write = WriteInput(body["properties"], id=str(body["companyId"]))
    [result] = state.portal.write_batch("update", [write], state.integration_source(str(body["appId"])),
                                        partial=False, timestamp=_timestamp(body))
    assert isinstance(result, WriteResult)
    company = state.portal.find(str(result.company_id))
    assert company is not None
    return json_response(state.portal.render(company, sorted(company.values)))


# Free mail domains HubSpot's automatic company creation skips (a few; HubSpot keeps a longer list).
FREE_MAIL = frozenset({"gmail.com", "googlemail.com", "yahoo.com", "hotmail.com", "outlook.com", "aol.com",
                       "icloud.com", "gmx.de", "web.de"})


@control.post("/contacts/company")
def contact_company() -> Response:
    """A rep adds a contact: with "create and associate companies with contacts" on, HubSpot makes a company for
    the email's domain unless it is free mail or a company already has the domain; named from HubSpot's own data
    (here: the domain's first label, capitalised), record source CRM_SETTING."""
    state = sandbox_state()
    body = read_json_object()
    email = str(body.get("email") or "")
    if "@" not in email:
        raise bad_request("An email address is required.")
    domain = email.rsplit("@", 1)[1].strip().lower().removeprefix("www.")
    if domain in FREE_MAIL:
        return json_response({"created": False, "reason": "free mail"})
    holder = state.portal.find_by_value("domain", domain)
    if holder is not None:
        return json_response({"created": False, "companyId": str(holder.id)})
    name = str(body.get("name") or domain.split(".")[0].capitalize())
    [result] = state.portal.write_batch("create", [WriteInput({"name": name, "domain": domain})],
                                        WriteSource("CRM_SETTING", "company-auto-creation"), partial=False)
    assert isinstance(result, WriteResult)
    return json_response({"created": True, **state.portal.render_written(result)}, 201)


@control.post("/rep/create")
def rep_create() -> Response:
    state = sandbox_state()
    body = read_json_object()
    if not isinstance(body.get("properties"), dict):
        raise bad_request("A properties object is required.")
    [result] = state.portal.write_batch("create", [WriteInput(body["properties"])], state.rep_source(_user_id(body)),
                                        partial=False, timestamp=_timestamp(body))
    assert isinstance(result, WriteResult)
    return json_response(state.portal.render_written(result), 201)


@control.post("/rep/merge")
def rep_merge() -> Response:
    state = sandbox_state()
    body = read_json_object()
    if body.get("primaryObjectId") in (None, "") or body.get("objectIdToMerge") in (None, ""):
        raise bad_request("primaryObjectId and objectIdToMerge are required.")
    primary = state.portal.merge(body["primaryObjectId"], body["objectIdToMerge"], state.rep_source(_user_id(body)))
    return json_response(state.portal.render(primary, sorted(primary.values)))


@control.post("/rep/delete")
def rep_delete() -> Response:
    state = sandbox_state()
    body = read_json_object()
    if body.get("companyId") in (None, ""):
        raise bad_request("companyId is required.")
    archived = state.portal.archive([str(body["companyId"])], state.rep_source(_user_id(body)))
    if not archived:
        raise not_found("resource not found", id=[str(body["companyId"])])
    return json_response({"archived": [str(i) for i in archived]})


# --- the daily quota -----------------------------------------------------------------------------------------
@control.post("/daily-usage")
def spend_daily_quota() -> Response:
    """{"spend": n}: other apps of the account make n calls (the quota is the account's); {"reset": true}: a new
    day. Answers the day's usage."""
    body = read_json_object()
    state = sandbox_state()
    zone = state.config.time_zone
    if body.get("reset"):
        state.daily.reset()
    spend = body.get("spend", 0)
    if not isinstance(spend, int) or isinstance(spend, bool) or spend < 0:
        raise bad_request("spend must be a whole number of calls, 0 or more.")
    used = state.daily.add(zone, spend)
    return json_response({"currentUsage": used, "usageLimit": state.config.daily_limit})


# --- counters and webhooks ------------------------------------------------------------------------------
@control.get("/counters")
def counters() -> Response:
    return json_response(sandbox_state().counters.snapshot())


@control.post("/counters/reset")
def reset_counters() -> Response:
    sandbox_state().counters.reset()
    return json_response(sandbox_state().counters.snapshot())


@control.get("/webhooks/deliveries")
def deliveries() -> Response:
    return json_response(sandbox_state().webhooks.attempts())


@control.post("/webhooks/flush")
def flush_webhooks() -> Response:
    try:
        timeout = float(request.args.get("timeout", "10"))
    except ValueError:
        raise bad_request("timeout must be a number of seconds.") from None
    if timeout < 0 or timeout > 600:
        raise bad_request("timeout must be between 0 and 600 seconds.")
    return json_response({"pending": sandbox_state().webhooks.flush(timeout)})
