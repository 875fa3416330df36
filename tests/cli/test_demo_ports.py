"""The demo stack's ports: chosen by flag or environment and kept; one taken by another program is one line."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from warp_sync_pipeline.cli import main
from warp_sync_pipeline.cli_stack import demo_settings
from warp_sync_pipeline.devstack.localpg import free_port


def test_ports_come_from_flags_then_the_environment_then_the_kept_ones(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARP_STATE_DIR", str(tmp_path))
    first = demo_settings()
    assert demo_settings() == first  # kept
    monkeypatch.setenv("WARP_DEMO_SANDBOX_PORT", "18123")
    chosen = demo_settings({"smtp_port": 18124})
    assert (chosen["sandbox_port"], chosen["smtp_port"]) == ("18123", "18124")
    assert chosen["receiver_port"] == first["receiver_port"] and chosen["WARP_API_TOKEN"] == first["WARP_API_TOKEN"]
    assert json.loads((tmp_path / "demo-env.json").read_text())["sandbox_port"] == "18123"


def test_a_port_another_program_holds_stops_the_demo_with_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARP_STATE_DIR", str(tmp_path))
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        result = CliRunner().invoke(main, ["demo", "--sandbox-port", str(port)])
    assert result.exit_code != 0
    assert result.output.strip().splitlines()[-1] == (
        f"Error: port {port} for the sandbox is in use by another program: choose another with --sandbox-port or "
        "WARP_DEMO_SANDBOX_PORT")
    # Stopped before anything started: no database, no service (only the settings and the empty run folder).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo-env.json", "run"]
    assert list((tmp_path / "run").iterdir()) == []
