"""The receiver's OpenAPI document is true: schemathesis fuzzes every operation against the Flask app on a
fresh database and the sandbox, with the bootstrap token, and checks each answer: no 5xx it did not document
(never a 500), no undocumented status, no body, content type or header outside the document.

Examples in the document name seeded rows, so the success paths run as well as the refusals; webhook cases
are sent twice, as generated (unsigned) and signed as HubSpot would sign them.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.receiver.openapi.conftest import BOOTSTRAP_TOKEN, EXAMPLE_CUSTOMER_ID, SIGN_ME, Api
from webhook_receiver.openapi import openapi_document

# Bounded so the whole run stays well under a minute: examples and the coverage phase, then this many
# generated cases per operation (positive and negative); no stateful phase.
MAX_EXAMPLES = 25
CONFIG = schemathesis.Config.from_dict({
    "generation": {"mode": "all", "max-examples": MAX_EXAMPLES},
    "phases": {"stateful": {"enabled": False}},
    "auth": {"openapi": {"bearerAuth": {"bearer": BOOTSTRAP_TOKEN}}},
})
schema = schemathesis.openapi.from_dict(openapi_document(), config=CONFIG)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
WEBHOOK_OPERATION = "POST /v1/webhooks/hubspot/company"


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)
def test_every_answer_is_documented(case: schemathesis.Case, api: Api) -> None:
    response = case.call(app=api.app)
    case.validate_response(response, checks=CHECKS)
    if case.operation.label == WEBHOOK_OPERATION:
        case.headers = {**(case.headers or {}), "X-HubSpot-Signature-v3": SIGN_ME}
        signed = case.call(app=api.app)
        case.validate_response(signed, checks=CHECKS)


def test_the_served_document_is_the_file_and_names_every_json_route(api: Api) -> None:
    served = schemathesis.openapi.from_wsgi("/openapi.json", api.app, config=CONFIG)
    assert served.raw_schema == openapi_document()
    documented = {
        (path, method.upper())
        for path, item in openapi_document()["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }
    routed = {
        (rule.rule.replace("<int:", "<").replace("<", "{").replace(">", "}"), method)
        for rule in api.app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
        # The review pages are HTML for people (forms, session cookie, CSRF), not part of the JSON API.
        if not rule.rule.startswith(("/review", "/static"))
    }
    assert routed == documented


def test_every_admin_operation_documents_and_answers_its_auth_refusals(api: Api) -> None:
    client = api.app.test_client()
    for path, item in openapi_document()["paths"].items():
        for method, operation in item.items():
            if method == "parameters" or operation.get("security", [{"bearerAuth": []}]) != [{"bearerAuth": []}]:
                continue
            assert {"401", "403"} <= set(operation["responses"]), (method, path)
            url = path.format(customer_id=EXAMPLE_CUSTOMER_ID, conflict_id=1, request_id=1)
            response = client.open(url, method=method.upper())
            assert (response.status_code, response.json["error"]["code"]) == (401, "UNAUTHORIZED"), (method, path)


def test_a_nul_in_the_conflicts_customer_filter_matches_nothing_rather_than_failing(api: Api) -> None:
    # Found by fuzzing: PostgreSQL refuses NUL in a text parameter, which answered 500.
    operation = schema["/v1/conflicts"]["GET"]
    case = operation.Case(query={"customer": "Example\x00"}, headers={"Authorization": f"Bearer {BOOTSTRAP_TOKEN}"})
    response = case.call(app=api.app)
    case.validate_response(response, checks=CHECKS)
    assert response.status_code == 200
    assert response.json()["data"] == {"conflicts": [], "total": 0, "next_after": None}


def test_a_body_over_the_size_limit_answers_the_documented_413(api: Api) -> None:
    api.app.config["MAX_CONTENT_LENGTH"] = 2048
    oversized: dict[str, object] = {"company_name": "x" * 4096}
    bodies = {
        ("/v1/customers", "POST"): oversized,
        ("/v1/customers/{customer_id}", "PATCH"): oversized,
        ("/v1/sync/reconcile", "POST"): {"dry_run": True, "padding": "x" * 4096},
        ("/v1/conflicts/{conflict_id}/resolve", "POST"): {"choice": "value", "value": "x" * 4096,
                                                          "expected_version": 1},
        ("/v1/webhooks/hubspot/company", "POST"): [{"propertyValue": "x" * 4096}],
    }
    for (path, method), body in bodies.items():
        case = schema[path][method].Case(
            body=body, path_parameters={"customer_id": str(EXAMPLE_CUSTOMER_ID), "conflict_id": 1},
            headers={"Authorization": f"Bearer {BOOTSTRAP_TOKEN}"},
        )
        response = case.call(app=api.app)
        case.validate_response(response, checks=CHECKS)
        assert (response.status_code, response.json()["error"]["code"]) == (413, "PAYLOAD_TOO_LARGE"), path
