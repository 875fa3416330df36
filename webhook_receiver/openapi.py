"""`GET /openapi.json`: the receiver's OpenAPI 3.1 document (webhook_receiver/openapi.yaml), served as JSON.

The document is kept true by tests/receiver/openapi/test_schemathesis.py, which fuzzes every operation against the app
(no undocumented status, no response outside its schema, no 500).
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import yaml
from flask import Blueprint, jsonify

bp = Blueprint("openapi", __name__)

SPEC_FILE = "openapi.yaml"


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The parsed document (read once per process)."""
    text = resources.files("webhook_receiver").joinpath(SPEC_FILE).read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    if not isinstance(document, dict) or not str(document.get("openapi", "")).startswith("3."):
        raise ValueError(f"webhook_receiver/{SPEC_FILE} is not an OpenAPI 3 document")
    return document


@bp.get("/openapi.json")
def serve_openapi():  # noqa: ANN201 - Flask response
    return jsonify(openapi_document())
