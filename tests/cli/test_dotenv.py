"""One .env story (issue 14): `dg` and `dagster dev` load ./.env, and so do the CLI and the receiver, with the same
precedence (the file's values win over the environment), so one checkout runs every process with one
configuration."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.plugins.outbound import receiver_config
from warp_sync_pipeline.core.settings import SettingsError, load_dotenv
from webhook_receiver.app import create_app


@pytest.fixture
def restored_environ() -> Iterator[None]:
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_the_file_wins_over_the_environment_as_in_dagsters_loader(tmp_path: Path, restored_environ: None) -> None:
    (tmp_path / ".env").write_text("WARP_DOTENV_PROBE=from-file\nHUBSPOT_API_VERSION='v3'\n# a comment\n")
    os.environ["WARP_DOTENV_PROBE"] = "from-shell"
    assert load_dotenv(tmp_path) == ["HUBSPOT_API_VERSION", "WARP_DOTENV_PROBE"]
    assert (os.environ["WARP_DOTENV_PROBE"], os.environ["HUBSPOT_API_VERSION"]) == ("from-file", "v3")
    assert load_dotenv(tmp_path / "elsewhere") == []


def test_the_receiver_reads_the_working_directorys_env(
    tmp_path: Path, restored_environ: None, monkeypatch: pytest.MonkeyPatch, database_url: str, sandbox,  # noqa: ANN001
) -> None:
    (tmp_path / ".env").write_text("HUBSPOT_API_VERSION=2099-01\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SettingsError, match="HUBSPOT_API_VERSION"):
        create_app(receiver_config(database_url, sandbox))


def test_the_cli_reads_the_working_directorys_env_over_the_shells(tmp_path: Path, database_url: str) -> None:
    command = [str(Path(sys.executable).with_name("warp-sync")), "queue", "status"]
    environ = {**os.environ, "WARP_DATABASE_URL": database_url}
    assert subprocess.run(command, cwd=tmp_path, env=environ, capture_output=True, text=True,
                          timeout=60).returncode == 0
    # The same shell, but ./.env names a database nobody serves: the file wins, as in Dagster's loader.
    (tmp_path / ".env").write_text("WARP_DATABASE_URL=postgresql://warp@127.0.0.1:1/nowhere\n")
    done = subprocess.run(command, cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "DATABASE_UNAVAILABLE" in done.stderr, done.stderr
