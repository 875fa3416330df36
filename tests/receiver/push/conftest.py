"""Fixtures of the manual push tests: the receiver with short budgets (linked customers come from
tests/plugins/outbound.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.plugins.outbound import API_TOKEN, Receiver, running_receiver

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
# Short budgets keep the outage tests fast; the code paths are production's.
PUSH_CONFIG: dict[str, object] = {
    "HUBSPOT_MAX_ATTEMPTS": 2,
    "HUBSPOT_REQUEST_TIMEOUT_SECONDS": 2,
    "WARP_PUSH_TIME_BUDGET_SECONDS": 4,
    "WARP_PUSH_LEASE_WAIT_SECONDS": 0.2,
    "WARP_PUSH_RETRY_DELAY_SECONDS": 0,
}


@pytest.fixture
def push_receiver(database_url: str, sandbox) -> Iterator[Receiver]:  # noqa: ANN001 - the sandbox plugin's handle
    with running_receiver(database_url, sandbox, **PUSH_CONFIG) as running:
        yield running
