"""CRM v3 properties of companies: properties, their batch endpoints, and property groups."""

from __future__ import annotations

from flask import Blueprint, Response

from hubspot_sandbox.app import (
    answers_multi_status,
    json_response,
    partial_status,
    query_bool,
    read_json_object,
    sandbox_state,
)
from hubspot_sandbox.wire import bad_request, iso_ms, no_content, now_ms

BASE = "/crm/v3/properties/<company_type:object_type>"
BATCH_LIMIT = 100

properties = Blueprint("properties", __name__)


def _inputs(body: dict) -> list:
    inputs = body.get("inputs")
    if not isinstance(inputs, list):
        raise bad_request("inputs must be a list.")
    if len(inputs) > BATCH_LIMIT:
        raise bad_request(f"Batch input size {len(inputs)} is over the limit: at most {BATCH_LIMIT} inputs per request.")
    return inputs


@properties.get("/crm/v3/property-validations/<company_type:object_type>")
def property_validations(object_type: str) -> Response:
    """The account's validation rules on company properties (shape: see warp_sync_pipeline/core/field_properties)."""
    rules = sandbox_state().config.property_validations
    return json_response({"results": [{"propertyName": name, "propertyValidationRules": list(items)}
                                      for name, items in sorted(rules.items())]})


@properties.get(BASE)
def list_properties(object_type: str) -> Response:
    return json_response({"results": sandbox_state().portal.list_properties(query_bool("archived"))})


@properties.post(BASE)
def create_property(object_type: str) -> Response:
    return json_response(sandbox_state().portal.create_property(read_json_object()), 201)


@properties.get(f"{BASE}/<property_name>")
def get_property(object_type: str, property_name: str) -> Response:
    return json_response(sandbox_state().portal.get_property(property_name, query_bool("archived")))


@properties.patch(f"{BASE}/<property_name>")
def update_property(object_type: str, property_name: str) -> Response:
    return json_response(sandbox_state().portal.update_property(property_name, read_json_object()))


@properties.delete(f"{BASE}/<property_name>")
def archive_property(object_type: str, property_name: str) -> Response:
    sandbox_state().portal.archive_property(property_name)
    return no_content()


@properties.post(f"{BASE}/batch/create")
def batch_create(object_type: str) -> Response:
    started = now_ms()
    created, failures = sandbox_state().portal.create_properties(_inputs(read_json_object()))
    body: dict = {"status": "COMPLETE", "results": created}
    if failures:
        body["numErrors"] = len(failures)
        body["errors"] = [f.standard_error() for f in failures]
    body["startedAt"] = iso_ms(started)
    body["completedAt"] = iso_ms(now_ms())
    # 201 up to 2026-03; the 2026-09 document declares a 200 (and no 207).
    success = 201 if answers_multi_status() else 200
    return json_response(body, partial_status(success) if failures else success)


@properties.post(f"{BASE}/batch/read")
def batch_read(object_type: str) -> Response:
    started = now_ms()
    body = read_json_object()
    archived = bool(body.get("archived", False))
    portal = sandbox_state().portal
    results, missing = [], []
    for entry in _inputs(body):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            raise bad_request("Each input needs a property name.")
        source = portal.archived_properties if archived else portal.properties
        with portal.lock:
            definition = source.get(name)
            if definition is None:
                missing.append(name)
            else:
                results.append(definition.to_wire())
    answer: dict = {"status": "COMPLETE", "results": results}
    if missing:
        answer["numErrors"] = 1
        answer["errors"] = [{"status": "error", "category": "OBJECT_NOT_FOUND",
                             "message": "Could not find some properties.", "context": {"names": missing}}]
    answer["startedAt"] = iso_ms(started)
    answer["completedAt"] = iso_ms(now_ms())
    return json_response(answer, partial_status(200) if missing else 200)


@properties.post(f"{BASE}/batch/archive")
def batch_archive(object_type: str) -> Response:
    portal = sandbox_state().portal
    names = []
    for entry in _inputs(read_json_object()):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise bad_request("Each input needs a property name.")
        names.append(entry["name"])
    with portal.lock:
        # HubSpot answers 204 even for names that do not exist; HubSpot-defined ones still cannot go.
        for name in names:
            definition = portal.properties.get(name)
            if definition is not None and definition.hubspot_defined:
                raise bad_request(f"{name} is a HubSpot-defined property and cannot be archived.")
        for name in names:
            portal.archive_property(name, missing_ok=True)
    return no_content()


@properties.get(f"{BASE}/groups")
def list_groups(object_type: str) -> Response:
    return json_response({"results": sandbox_state().portal.list_groups()})


@properties.post(f"{BASE}/groups")
def create_group(object_type: str) -> Response:
    return json_response(sandbox_state().portal.create_group(read_json_object()), 201)


@properties.get(f"{BASE}/groups/<group_name>")
def get_group(object_type: str, group_name: str) -> Response:
    return json_response(sandbox_state().portal.get_group(group_name))


@properties.patch(f"{BASE}/groups/<group_name>")
def update_group(object_type: str, group_name: str) -> Response:
    return json_response(sandbox_state().portal.update_group(group_name, read_json_object()))


@properties.delete(f"{BASE}/groups/<group_name>")
def archive_group(object_type: str, group_name: str) -> Response:
    sandbox_state().portal.archive_group(group_name)
    return no_content()
