"""CRM v3 companies: basic, batch, merge and search endpoints."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, g, request

from hubspot_sandbox import search
from hubspot_sandbox.app import (
    json_response,
    partial_status,
    query_bool,
    query_int,
    query_list,
    read_json_object,
    sandbox_state,
)
from hubspot_sandbox.portal import WriteInput, WriteResult
from hubspot_sandbox.wire import ApiFailure, bad_request, iso_ms, no_content, not_found, now_ms, record_id

BATCH_LIMIT = 100
LIST_DEFAULT_LIMIT = 10
LIST_MAX_LIMIT = 100
HISTORY_MAX_LIMIT = 50
BASE = "/crm/v3/objects/<company_type:object_type>"

companies = Blueprint("companies", __name__)


# --- basic --------------------------------------------------------------------------------------
@companies.post(BASE)
def create(object_type: str) -> Response:
    state = sandbox_state()
    body = read_json_object()
    properties = body.get("properties") or {}
    forced = state.faults.take_validation(set(properties) if isinstance(properties, dict) else set())
    [result] = state.portal.write_batch("create", [WriteInput(properties)], state.api_source(), partial=False,
                                        forced=forced)
    assert isinstance(result, WriteResult)
    return json_response(state.portal.render_written(result), 201)


@companies.get(f"{BASE}/<company_id>")
def get(object_type: str, company_id: str) -> Response:
    state = sandbox_state()
    id_property = state.portal.check_id_property(request.args.get("idProperty"), verb="get")
    company = state.portal.find(company_id, id_property, archived=query_bool("archived"))
    if company is None:
        raise not_found("resource not found", id=[company_id])
    return json_response(state.portal.render(company, query_list("properties"), query_list("propertiesWithHistory")))


@companies.patch(f"{BASE}/<company_id>")
def update(object_type: str, company_id: str) -> Response:
    state = sandbox_state()
    id_property = state.portal.check_id_property(request.args.get("idProperty"), verb="update")
    body = read_json_object()
    properties = body.get("properties") or {}
    forced = state.faults.take_validation(set(properties) if isinstance(properties, dict) else set())
    write = WriteInput(properties, id=company_id, id_property=id_property)
    [result] = state.portal.write_batch("update", [write], state.api_source(), partial=False, forced=forced)
    assert isinstance(result, WriteResult)
    return json_response(state.portal.render_written(result))


@companies.delete(f"{BASE}/<company_id>")
def archive(object_type: str, company_id: str) -> Response:
    state = sandbox_state()
    state.portal.archive([company_id], state.api_source())
    return no_content()


@companies.get(BASE)
def list_page(object_type: str) -> Response:
    state = sandbox_state()
    history = query_list("propertiesWithHistory")
    limit = query_int("limit", LIST_DEFAULT_LIMIT)
    maximum = HISTORY_MAX_LIMIT if history else LIST_MAX_LIMIT
    if limit < 1 or limit > maximum:
        detail = " when propertiesWithHistory is requested" if history else ""
        raise bad_request(f"limit must be between 1 and {maximum}{detail}; got {limit}.")
    after_raw = request.args.get("after")
    if after_raw not in (None, "") and record_id(after_raw) is None:
        raise bad_request(f"after {after_raw!r} is not a paging cursor this endpoint returned.")
    after = int(after_raw) if after_raw else None
    page, next_id = state.portal.page(after, limit, archived=query_bool("archived"))
    properties = query_list("properties")
    body: dict[str, Any] = {"results": [state.portal.render(c, properties, history) for c in page]}
    if next_id is not None:
        body["paging"] = {"next": {"after": str(next_id), "link": f"?after={next_id}"}}
    return json_response(body)


# --- batch --------------------------------------------------------------------------------------
def _batch_inputs(body: dict[str, Any], limit: int = BATCH_LIMIT) -> list[dict[str, Any]]:
    inputs = body.get("inputs")
    if not isinstance(inputs, list):
        raise bad_request("inputs must be a list.")
    if len(inputs) > limit:
        raise bad_request(f"Batch input size {len(inputs)} is over the limit: at most {limit} inputs per request.",
                          inputSize=[str(len(inputs))])
    for position, entry in enumerate(inputs):
        if not isinstance(entry, dict):
            raise bad_request(f"inputs[{position}] must be an object.")
    return inputs


def _trace_ids(inputs: list[dict[str, Any]]) -> tuple[list[str | None], bool]:
    """Each input's objectWriteTraceId, and whether every input has one (the opt-in to 207 answers)."""
    traces = [e.get("objectWriteTraceId") if isinstance(e.get("objectWriteTraceId"), str) else None for e in inputs]
    given = [t for t in traces if t]
    if len(given) != len(set(given)):
        raise bad_request("objectWriteTraceId values must be unique within a batch.")
    return traces, bool(inputs) and len(given) == len(inputs)


def _batch_body(results: list[dict[str, Any]], errors: list[dict[str, Any]], started_ms: int,
                success_status: int) -> Response:
    body: dict[str, Any] = {"status": "COMPLETE", "results": results}
    if errors:
        body["numErrors"] = len(errors)
        body["errors"] = errors
    body["startedAt"] = iso_ms(started_ms)
    body["completedAt"] = iso_ms(now_ms())
    return json_response(body, partial_status(success_status) if errors else success_status)


def _write_batch(kind: str, writes: list[WriteInput], partial: bool, success_status: int,
                 render: Callable[[WriteResult], dict[str, Any]]) -> Response:
    state = sandbox_state()
    started = now_ms()
    names = {name for w in writes if isinstance(w.properties, dict) for name in w.properties}
    forced = state.faults.take_validation(names)
    outcomes = state.portal.write_batch(kind, writes, state.api_source(), partial=partial, forced=forced)
    results, errors = [], []
    for write, outcome in zip(writes, outcomes, strict=True):
        if isinstance(outcome, ApiFailure):
            errors.append(outcome.standard_error({"objectWriteTraceId": [write.trace_id or ""]}))
        else:
            results.append(render(outcome))
    if results and state.faults.take("omit_result", g.get("endpoint", "")):
        results.pop()  # written, but named in the answer neither as a result nor as an error
    return _batch_body(results, errors, started, success_status)


@companies.post(f"{BASE}/batch/create")
def batch_create(object_type: str) -> Response:
    inputs = _batch_inputs(read_json_object())
    traces, partial = _trace_ids(inputs)
    writes = [WriteInput(e.get("properties") or {}, trace_id=t) for e, t in zip(inputs, traces, strict=True)]
    return _write_batch("create", writes, partial, 201, sandbox_state().portal.render_written)


def _targeted_writes(inputs: list[dict[str, Any]], traces: list[str | None], verb: str) -> list[WriteInput]:
    portal = sandbox_state().portal
    writes, seen = [], set()
    for position, (entry, trace) in enumerate(zip(inputs, traces, strict=True)):
        if entry.get("id") in (None, ""):
            raise bad_request(f"inputs[{position}].id is required.")
        id_property = portal.check_id_property(entry.get("idProperty"), verb=verb)
        key = (id_property, str(entry["id"]))
        if key in seen:
            raise bad_request(f"Duplicate IDs found in batch input: [{entry['id']}]. IDs must be unique.",
                              ids=[str(entry["id"])])
        seen.add(key)
        writes.append(WriteInput(entry.get("properties") or {}, id=str(entry["id"]), id_property=id_property,
                                 trace_id=trace))
    return writes


@companies.post(f"{BASE}/batch/update")
def batch_update(object_type: str) -> Response:
    inputs = _batch_inputs(read_json_object())
    traces, partial = _trace_ids(inputs)
    partial = partial and sandbox_state().config.batch_write_errors != "whole_batch"
    writes = _targeted_writes(inputs, traces, "update")
    return _write_batch("update", writes, partial, 200, sandbox_state().portal.render_written)


@companies.post(f"{BASE}/batch/upsert")
def batch_upsert(object_type: str) -> Response:
    inputs = _batch_inputs(read_json_object())
    traces, partial = _trace_ids(inputs)
    partial = partial and sandbox_state().config.batch_write_errors != "whole_batch"
    writes = _targeted_writes(inputs, traces, "upsert")
    portal = sandbox_state().portal

    def render(result: WriteResult) -> dict[str, Any]:
        return {**portal.render_written(result), "new": result.new}

    return _write_batch("upsert", writes, partial, 200, render)


def _property_names(body: dict[str, Any], key: str) -> list[str]:
    names = body.get(key)
    if names is None:
        return []
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise bad_request(f"{key} must be a list of property names.")
    return names


@companies.post(f"{BASE}/batch/read")
def batch_read(object_type: str) -> Response:
    state = sandbox_state()
    started = now_ms()
    body = read_json_object()
    history = _property_names(body, "propertiesWithHistory")
    inputs = _batch_inputs(body, HISTORY_MAX_LIMIT if history else BATCH_LIMIT)
    properties = _property_names(body, "properties")
    id_property = state.portal.check_id_property(body.get("idProperty"), verb="read")
    archived = query_bool("archived")
    results, missing, seen = [], [], set()
    for position, entry in enumerate(inputs):
        if entry.get("id") in (None, ""):
            raise bad_request(f"inputs[{position}].id is required.")
        id_value = str(entry["id"])
        if id_value in seen:
            continue
        seen.add(id_value)
        company = state.portal.find(id_value, id_property, archived=archived)
        if company is None:
            missing.append(id_value)
        else:
            results.append(state.portal.render(company, properties, history))
    errors = []
    if missing:
        errors.append({"status": "error", "category": "OBJECT_NOT_FOUND",
                       "message": "Could not get some COMPANY objects, they may be deleted or not exist. "
                                  "Check that ids are valid.",
                       "context": {"ids": missing}})
    return _batch_body(results, errors, started, 200)


@companies.post(f"{BASE}/batch/archive")
def batch_archive(object_type: str) -> Response:
    state = sandbox_state()
    inputs = _batch_inputs(read_json_object())
    state.portal.archive([str(e.get("id")) for e in inputs if e.get("id") not in (None, "")], state.api_source())
    return no_content()


@companies.post(f"{BASE}/merge")
def merge(object_type: str) -> Response:
    state = sandbox_state()
    body = read_json_object()
    if body.get("primaryObjectId") in (None, "") or body.get("objectIdToMerge") in (None, ""):
        raise bad_request("primaryObjectId and objectIdToMerge are required.")
    primary = state.portal.merge(body["primaryObjectId"], body["objectIdToMerge"], state.api_source())
    return json_response(state.portal.render(primary))


# --- search -------------------------------------------------------------------------------------
@companies.post(f"{BASE}/search")
def search_companies(object_type: str) -> Response:
    portal = sandbox_state().portal
    body = read_json_object()
    with portal.lock:
        parsed = search.parse_request(body, portal.properties)
        page, total = search.run(parsed, portal.active_companies(), portal.properties)
        results = [portal.render(c, parsed.properties or None, nulls=True) for c in page]
    answer: dict[str, Any] = {"total": total, "results": results}
    next_offset = parsed.offset + parsed.limit
    if parsed.limit and next_offset < total:
        answer["paging"] = {"next": {"after": str(next_offset)}}
    return json_response(answer)
