"""`warp-sync sandbox` starts the sandbox with one command and stops cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

WARP_SYNC = str(Path(sys.executable).with_name("warp-sync"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_warp_sync_sandbox_serves_until_terminated() -> None:
    port = free_port()
    env = {**os.environ, "HUBSPOT_ACCESS_TOKEN": "pat-cli-token", "HUBSPOT_CLIENT_SECRET": "cli-secret"}
    env.pop("HUBSPOT_WEBHOOK_TARGET_URL", None)
    process = subprocess.Popen([WARP_SYNC, "sandbox", "--port", str(port)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline()
        assert first_line.strip() == f"HubSpot sandbox listening on http://127.0.0.1:{port}"
        base = f"http://127.0.0.1:{port}"
        created = httpx.post(f"{base}/crm/v3/objects/companies", json={"properties": {"name": "Acme"}},
                             headers={"Authorization": "Bearer pat-cli-token"}, trust_env=False)
        assert created.status_code == 201
        assert created.headers["X-HubSpot-RateLimit-Max"] == "100"  # HubSpot's default budget is on
        unauthorised = httpx.get(f"{base}/crm/v3/objects/companies", trust_env=False)
        assert unauthorised.status_code == 401
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=15)
    assert process.returncode == 0
    assert "HubSpot sandbox stopped" in output
    assert "pat-cli-token" not in output and "cli-secret" not in output
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/_sandbox/counters", trust_env=False, timeout=0.5)
        except httpx.ConnectError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the sandbox still answers after SIGTERM")


def test_missing_token_is_a_clear_error() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUBSPOT_")}
    result = subprocess.run([WARP_SYNC, "sandbox", "--port", "0"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert "HUBSPOT_ACCESS_TOKEN" in result.stderr
