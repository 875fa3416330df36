"""The receiver under a real gunicorn: the signature covers the raw request URI as it arrived."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest
import sqlalchemy as sa

from tests.plugins.database import scratch_database
from tests.plugins.gunicorn import running_gunicorn
from tests.plugins.signing import ROUTE, body_of, object_event, property_change, v3_headers
from warp_sync_pipeline.core.db import make_engine


@pytest.fixture(scope="module")
def receiver_db(pg_admin_url: str, template_database: str) -> Iterator[str]:
    with scratch_database(pg_admin_url, "warp_test_gunicorn", template=template_database) as url:
        yield url


@pytest.fixture(scope="module")
def gunicorn_port(receiver_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with running_gunicorn(receiver_db, tmp_path_factory.mktemp("gunicorn") / "receiver.ctl", "--workers", "1") as server:
        yield server.port


def test_the_readmes_two_pools_run_side_by_side_each_with_its_own_control_socket(
    receiver_db: str, tmp_path: Path
) -> None:
    # gunicorn 25.1+ opens a control socket at one default path: two instances with the defaults collide.
    webhooks, admin = tmp_path / "webhooks.ctl", tmp_path / "admin.ctl"
    with running_gunicorn(receiver_db, webhooks, "--workers", "2"), running_gunicorn(receiver_db, admin, "--workers", "1"):
        for socket_path, workers in ((webhooks, 2), (admin, 1)):
            shown = subprocess.run([str(Path(sys.executable).parent / "gunicornc"), "-s", str(socket_path), "-c",
                                    "show workers", "-j"], capture_output=True, text=True, timeout=30)
            assert shown.returncode == 0, shown.stderr
            assert len(json.loads(shown.stdout)["workers"]) == workers  # each socket answers for its own pool


def send(port: int, path: str, body: bytes, headers: dict[str, str | bytes]) -> tuple[int, dict]:
    """POST with the request target exactly as given (http.client does not re-encode it)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("POST", path, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def count(url: str) -> int:
    engine = make_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM hubspot_webhook_events")).scalar_one()
    finally:
        engine.dispose()


def test_raw_uri_signing_and_rejections_under_gunicorn(gunicorn_port: int, receiver_db: str) -> None:
    port = gunicorn_port
    origin = f"http://127.0.0.1:{port}"
    raw_path = ROUTE + "?portal=62515&tag=a%3Ab%2Fc%40d%20e%2C(x)&k=%253A"
    hubspot_signed = origin + ROUTE + "?portal=62515&tag=a:b/c@d%20e,(x)&k=%253A"
    body = body_of([property_change(31, "warp_credit_limit", "10000"), object_event("company.creation", 32)])

    # What a framework's decoded URL would give, and the undecoded URI: neither is what HubSpot signs.
    for wrong in (origin + unquote(raw_path), origin + raw_path):
        status, answer = send(port, raw_path, body, v3_headers(wrong, body))
        assert (status, answer["error"]["code"]) == (401, "SIGNATURE_INVALID")
    assert count(receiver_db) == 0

    status, answer = send(port, raw_path, body, v3_headers(hubspot_signed, body))
    assert status == 200, answer
    assert answer["data"] == {"received": 2, "stored": 2, "duplicates": 0, "ignored": 0}

    # Header bytes outside ASCII reach the app as latin-1 text: still a 401, never a 500.
    headers: dict[str, str | bytes] = dict(v3_headers(hubspot_signed, body))
    headers["X-HubSpot-Signature-v3"] = "sïgnature".encode()
    status, answer = send(port, raw_path, body, headers)
    assert (status, answer["error"]["code"]) == (401, "SIGNATURE_INVALID")
    headers = dict(v3_headers(hubspot_signed, body))
    headers["X-HubSpot-Request-Timestamp"] = "١٧٠٠".encode()
    status, answer = send(port, raw_path, body, headers)
    assert (status, answer["error"]["code"]) == (401, "TIMESTAMP_INVALID")

    big = b"[" + b" " * (1024 * 1024) + b"]"
    status, answer = send(port, ROUTE, big, v3_headers(origin + ROUTE, big))
    assert (status, answer["error"]["code"]) == (413, "PAYLOAD_TOO_LARGE")

    assert count(receiver_db) == 2
