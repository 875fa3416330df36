"""The HubSpot sandbox for the suite: one server per session, reset before each test.

`sandbox_server` (session): a SandboxServer on a free loopback port, token "pat-test-token",
client secret "test-client-secret", the rate limit OFF (tests that want it turn it on with
`sandbox.control.configure(rate_limit_per_10s=...)`), fast webhook retries.
`sandbox` (function): resets companies, properties, faults, counters, settings and webhook state,
and yields a `SandboxHandle`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from hubspot_sandbox.control import SandboxControl
from hubspot_sandbox.server import SandboxServer

SANDBOX_ACCESS_TOKEN = "pat-test-token"
SANDBOX_CLIENT_SECRET = "test-client-secret"


@dataclass(frozen=True)
class SandboxHandle:
    base_url: str
    access_token: str
    client_secret: str
    control: SandboxControl


def new_sandbox_server() -> SandboxServer:
    """A sandbox as the suite configures it (not started)."""
    return SandboxServer(
        access_token=SANDBOX_ACCESS_TOKEN,
        client_secret=SANDBOX_CLIENT_SECRET,
        rate_limit_per_10s=None,
        search_per_second=None,
        webhook_retry_initial_seconds=0.02,
        webhook_retry_max_seconds=0.2,
        webhook_batch_window_ms=10,
    )


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxServer]:
    with new_sandbox_server() as server:
        yield server


@pytest.fixture(scope="session")
def _sandbox_control(sandbox_server: SandboxServer) -> Iterator[SandboxControl]:
    # One client for the session: building an httpx client per test costs tens of milliseconds.
    with SandboxControl(sandbox_server.base_url) as control:
        yield control


@pytest.fixture
def sandbox(sandbox_server: SandboxServer, _sandbox_control: SandboxControl) -> Iterator[SandboxHandle]:
    control = _sandbox_control
    control.reset()
    yield SandboxHandle(
        base_url=sandbox_server.base_url,
        access_token=SANDBOX_ACCESS_TOKEN,
        client_secret=SANDBOX_CLIENT_SECRET,
        control=control,
    )
    # Release requests a timeout fault still holds, so no server thread outlives its test.
    control.clear_faults()
