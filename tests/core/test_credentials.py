from __future__ import annotations

import os
import subprocess
import sys

import pytest
import sqlalchemy as sa
from flask import Blueprint, g, jsonify

from warp_sync_pipeline.core.auth import (
    AuthError,
    Role,
    authenticate,
    authorize,
    hash_token,
    issue,
    list_active,
    revoke,
)
from warp_sync_pipeline.core.errors import Failure
from webhook_receiver import create_app
from webhook_receiver.auth import require


def test_a_token_is_stored_hashed_and_authenticates_with_its_roles(engine: sa.Engine) -> None:
    issued = issue(engine, "portal", ["admin"])
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT token_hash FROM admin_credentials")).scalar()
    assert stored == hash_token(issued.token) and issued.token not in stored
    principal = authenticate(engine, issued.token, bootstrap_token="")
    assert principal is not None and principal.name == "portal" and principal.roles == {Role.ADMIN}
    assert authenticate(engine, issued.token + "x", bootstrap_token="") is None


def test_two_credentials_of_one_name_are_valid_at_once_for_rotation(engine: sa.Engine) -> None:
    old = issue(engine, "portal", ["admin"])
    new = issue(engine, "portal", ["admin"])
    assert authenticate(engine, old.token, bootstrap_token="") is not None
    assert authenticate(engine, new.token, bootstrap_token="") is not None
    assert revoke(engine, credential_id=old.id) == 1
    assert authenticate(engine, old.token, bootstrap_token="") is None
    assert authenticate(engine, new.token, bootstrap_token="") is not None
    assert [row["id"] for row in list_active(engine)] == [new.id]


def test_roles_map_to_permissions(engine: sa.Engine) -> None:
    admin = issue(engine, "ops", ["admin"])
    resolver = issue(engine, "alice", ["resolver"])
    assert authorize(engine, f"Bearer {admin.token}", "customers:create", bootstrap_token="").name == "ops"
    assert authorize(engine, f"Bearer {resolver.token}", "conflicts:resolve", bootstrap_token="").name == "alice"
    assert authorize(engine, f"Bearer {resolver.token}", "conflicts:read", bootstrap_token="").name == "alice"
    with pytest.raises(AuthError) as info:
        authorize(engine, f"Bearer {resolver.token}", "customers:create", bootstrap_token="")
    assert info.value.kind is Failure.FORBIDDEN
    with pytest.raises(AuthError) as info:
        authorize(engine, f"Bearer {admin.token}", "conflicts:resolve", bootstrap_token="")
    assert info.value.kind is Failure.FORBIDDEN


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic abc", "Bearer wrong-token"])
def test_missing_or_wrong_tokens_are_401(engine: sa.Engine, header: str | None) -> None:
    with pytest.raises(AuthError) as info:
        authorize(engine, header, "customers:read", bootstrap_token="bootstrap-secret")
    assert info.value.kind is Failure.UNAUTHENTICATED


def test_the_bootstrap_token_has_every_role(engine: sa.Engine) -> None:
    for permission in ("customers:create", "conflicts:resolve", "sync:reconcile"):
        assert authorize(engine, "Bearer bootstrap-secret", permission,
                         bootstrap_token="bootstrap-secret").name == "bootstrap"


def test_unknown_roles_and_empty_names_are_refused(engine: sa.Engine) -> None:
    with pytest.raises(ValueError, match="unknown role"):
        issue(engine, "x", ["superuser"])
    with pytest.raises(ValueError, match="name"):
        issue(engine, "  ", ["admin"])
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO admin_credentials (name, token_hash, roles) VALUES ('x', 'h', '{root}')"))


def test_the_route_guard_answers_the_json_error_shape(database_url: str, engine: sa.Engine) -> None:
    app = create_app({"DATABASE_URL": database_url, "TESTING": True, "WARP_API_TOKEN": "bootstrap-secret"})
    probe = Blueprint("probe", __name__)

    @probe.post("/probe")
    @require("conflicts:resolve")
    def guarded():  # noqa: ANN202
        return jsonify({"who": g.principal.name})

    app.register_blueprint(probe)
    client = app.test_client()
    admin = issue(engine, "ops", ["admin"])
    assert client.post("/probe").get_json()["error"]["code"] == "UNAUTHORIZED"
    forbidden = client.post("/probe", headers={"Authorization": f"Bearer {admin.token}"})
    assert forbidden.status_code == 403 and forbidden.get_json()["error"]["code"] == "FORBIDDEN"
    ok = client.post("/probe", headers={"Authorization": "Bearer bootstrap-secret"})
    assert ok.status_code == 200 and ok.get_json() == {"who": "bootstrap"}


def test_the_credentials_command_shows_the_token_once(database_url: str, engine: sa.Engine) -> None:
    env = {**os.environ, "WARP_DATABASE_URL": database_url}
    cli = [sys.executable, "-m", "warp_sync_pipeline.cli", "credentials"]
    added = subprocess.run([*cli, "add", "alice", "--role", "resolver"], env=env, capture_output=True, text=True,
                           timeout=60)
    assert added.returncode == 0, added.stderr
    token = added.stdout.split("token (shown once): ")[1].strip()
    assert authenticate(engine, token, bootstrap_token="").name == "alice"
    listed = subprocess.run([*cli, "list"], env=env, capture_output=True, text=True, timeout=60)
    assert "alice" in listed.stdout and token not in listed.stdout
    revoked = subprocess.run([*cli, "revoke", "--name", "alice"], env=env, capture_output=True, text=True, timeout=60)
    assert "revoked 1" in revoked.stdout
    assert authenticate(engine, token, bootstrap_token="") is None
