"""Clients on the suite's sandbox (tests/plugins/sandbox.py), over real HTTP on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from warp_sync_pipeline.core.hubspot import HubSpotClient, RetryPolicy

# Short waits keep retry tests fast; the logic is the one production uses.
FAST_RETRY = RetryPolicy(max_attempts=5, backoff_initial_s=0.05, backoff_max_s=0.4, jitter_s=0.05,
                         rate_limit_wait_s=0.2)


@pytest.fixture
def hubspot(sandbox) -> Iterator[HubSpotClient]:  # noqa: ANN001 - the sandbox plugin's handle
    """A client without a shared budget (the sandbox's rate limit is off by default)."""
    client = HubSpotClient(sandbox.base_url, sandbox.access_token, time_budget_s=10, request_timeout_s=2,
                           retry=FAST_RETRY)
    yield client
    client.close()


@pytest.fixture
def warp_hubspot(hubspot: HubSpotClient) -> HubSpotClient:
    """The client on a portal that has warp-sync's properties."""
    hubspot.ensure_properties()
    return hubspot


def company_values(n: int, **overrides: str | None) -> dict[str, str | None]:
    values: dict[str, str | None] = {
        "name": f"Acme {n}",
        "warp_ban": f"ZT-{n:09d}",
        "warp_status": "ACTIVE",
        "warp_credit_limit": "1000.5",
        "warp_services": "voice;data",
        "warp_payment_terms": "NET30",
        "warp_contact_email": f"billing{n}@acme.example",
    }
    values.update(overrides)
    return values
