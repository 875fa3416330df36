"""`/livez`: the process answers (liveness: touches nothing else, so a database outage never gets the receiver
restarted). `/healthz`: it can serve, its database answers (readiness)."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, jsonify

from webhook_receiver.errors import error_response
from webhook_receiver.resources import receiver_resources

bp = Blueprint("health", __name__)


@bp.get("/livez")
def livez():  # noqa: ANN201
    return jsonify({"success": True, "data": {"status": "alive"}})


@bp.get("/healthz")
def healthz():  # noqa: ANN201
    engine: sa.Engine = receiver_resources().db
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        return error_response(503, "DATABASE_UNAVAILABLE", f"database unreachable ({exc.__class__.__name__})")
    return jsonify({"success": True, "data": {"status": "ok", "database": "ok"}})
