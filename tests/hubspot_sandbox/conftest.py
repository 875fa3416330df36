"""Helpers for the sandbox's own tests: an authenticated httpx client, warp-sync's custom
properties, and a small local HTTP server that receives webhook deliveries."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.plugins.sandbox import SandboxHandle

COMPANIES = "/crm/v3/objects/companies"
PROPERTIES = "/crm/v3/properties/companies"
# Shared by the tests' clients: loading CA certificates for each new client is slow.
TLS_CONTEXT = ssl.create_default_context()

# The custom properties warp-sync's client creates (DESIGN.md value sets).
WARP_PROPERTIES: list[dict[str, Any]] = [
    {"name": "warp_ban", "label": "WARP BAN", "type": "string", "fieldType": "text", "hasUniqueValue": True},
    {"name": "warp_status", "label": "WARP status", "type": "enumeration", "fieldType": "select",
     "options": [{"label": v.title(), "value": v} for v in ("PENDING", "ACTIVE", "SUSPENDED", "CLOSED")]},
    {"name": "warp_credit_limit", "label": "WARP credit limit", "type": "number", "fieldType": "number"},
    {"name": "warp_current_balance", "label": "WARP current balance", "type": "number", "fieldType": "number"},
    {"name": "warp_services", "label": "WARP services", "type": "enumeration", "fieldType": "checkbox",
     "options": [{"label": v.title(), "value": v} for v in ("voice", "messaging", "data")]},
    {"name": "warp_payment_terms", "label": "WARP payment terms", "type": "enumeration", "fieldType": "select",
     "options": [{"label": v, "value": v} for v in ("PREPAID", "NET15", "NET30", "NET45", "NET60")]},
    {"name": "warp_contact_email", "label": "WARP contact email", "type": "string", "fieldType": "text"},
]


@pytest.fixture
def api(sandbox: SandboxHandle) -> Iterator[httpx.Client]:
    """Authenticated HTTP client on the sandbox (no retries: tests see every answer)."""
    with httpx.Client(base_url=sandbox.base_url, trust_env=False, timeout=10, verify=TLS_CONTEXT,
                      headers={"Authorization": f"Bearer {sandbox.access_token}"}) as client:
        yield client


@pytest.fixture
def warp_api(api: httpx.Client) -> httpx.Client:
    """`api` on a portal that already has warp-sync's custom properties."""
    response = api.post(f"{PROPERTIES}/batch/create",
                        json={"inputs": [dict(p, groupName="companyinformation") for p in WARP_PROPERTIES]})
    assert response.status_code == 201, response.text
    return api


def create_company(api: httpx.Client, **properties: Any) -> dict[str, Any]:
    response = api.post(COMPANIES, json={"properties": properties})
    assert response.status_code == 201, response.text
    return response.json()


# --- a webhook receiver --------------------------------------------------------------------------
@dataclass
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float

    @property
    def events(self) -> list[dict[str, Any]]:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """Records every delivery. `respond(request_number) -> (status, delay_s)` decides each answer."""

    url: str
    requests: list[ReceivedRequest] = field(default_factory=list)
    respond: Callable[[int], tuple[int, float]] = lambda n: (204, 0.0)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [e for r in self.requests for e in r.events]

    def wait_for(self, predicate: Callable[[WebhookReceiver], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return
            time.sleep(0.02)
        raise AssertionError(f"webhook receiver: condition not met within {timeout}s ({len(self.requests)} requests)")


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver_box: list[WebhookReceiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            receiver = receiver_box[0]
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with receiver.lock:
                number = len(receiver.requests)
                receiver.requests.append(ReceivedRequest(self.path, dict(self.headers.items()), body,
                                                         time.monotonic()))
                receiver.in_flight += 1
                receiver.max_in_flight = max(receiver.max_in_flight, receiver.in_flight)
            try:
                status, delay = receiver.respond(number)
                if delay:
                    time.sleep(delay)
            finally:
                # Counted out before answering: the sender may start its next request the moment the answer
                # arrives, before this thread would get to run again (seen under load as 11 "in flight").
                with receiver.lock:
                    receiver.in_flight -= 1
            try:
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "0.4")
                self.send_header("Content-Length", "0")
                self.end_headers()
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 64  # the default backlog of 5 drops connections of a burst of deliveries

    server = Server(("127.0.0.1", 0), Handler)
    receiver_box.append(WebhookReceiver(url=f"http://127.0.0.1:{server.server_port}/v1/webhooks/hubspot/company"))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield receiver_box[0]
    finally:
        server.shutdown()
        server.server_close()
