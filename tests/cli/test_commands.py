"""The shell side: every command explains itself, the version is shown, `db status` follows WARP_DATABASE_URL."""

from __future__ import annotations

import json
from importlib.metadata import version

import click
from click.testing import CliRunner

from warp_sync_pipeline.cli import main


def _commands(command: click.Command, path: str = "warp-sync") -> list[tuple[str, click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            found += _commands(sub, f"{path} {name}")
    return found


def test_every_command_and_option_has_help_text() -> None:
    missing = [path for path, command in _commands(main) if not (command.help or command.short_help)]
    missing += [f"{path} {param.opts[0]}" for path, command in _commands(main) for param in command.params
                if isinstance(param, click.Option) and not param.help and not param.hidden
                and param.opts[0] not in ("--version", "--help")]
    assert missing == []


def test_the_version_is_the_installed_packages() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"warp-sync, version {version('warp-sync')}"


def test_db_status_follows_warp_database_url(database_url: str) -> None:
    reachable = CliRunner().invoke(main, ["db", "status"], env={"WARP_DATABASE_URL": database_url})
    assert reachable.exit_code == 0, reachable.output
    status = json.loads(reachable.output)
    assert status["kind"] == "WARP_DATABASE_URL" and status["reachable"] is True
    assert status["migrations_applied"] > 0 and status["migrations_pending"] == []
    assert "@" not in status["url"] or ":" not in status["url"].split("@")[0].split("//")[1]  # no password shown
    away = CliRunner().invoke(main, ["db", "status"],
                              env={"WARP_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/nothing"})
    assert away.exit_code == 1 and json.loads(away.output)["reachable"] is False
