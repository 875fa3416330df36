"""Helpers for the sandbox's own tests: an httpx client that speaks to it as an integration would."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.plugins.sandbox import SandboxHandle


@pytest.fixture
def api(sandbox: SandboxHandle) -> Iterator[httpx.Client]:
    """Authenticated HTTP client on the sandbox (no retries: tests see every answer)."""
    with httpx.Client(base_url=sandbox.base_url, trust_env=False, timeout=10,
                      headers={"Authorization": f"Bearer {sandbox.access_token}"}) as client:
        yield client
