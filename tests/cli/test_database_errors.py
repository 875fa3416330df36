"""`warp-sync` commands against a PostgreSQL that is down or a database that does not exist: one line naming
the cause and the server, exit status 2; the traceback only with --debug (issue 12, item 8)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy.engine import make_url

from tests.plugins.database import PrivatePostgres
from warp_sync_pipeline.core.db import with_database

WARP_SYNC = str(Path(sys.executable).parent / "warp-sync")


def _run(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("WARP_")}, "WARP_DATABASE_URL": database_url}
    return subprocess.run([WARP_SYNC, *args], env=env, capture_output=True, text=True, timeout=120)


def test_a_stopped_server_and_a_missing_database_are_one_line_each(private_postgres: PrivatePostgres) -> None:
    port = make_url(private_postgres.database_url).port
    missing = _run(with_database(private_postgres.admin_url, "no_such_database"), "db", "upgrade")
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1 and "Traceback" not in missing.stderr
    assert "DATABASE_UNAVAILABLE" in missing.stderr and 'database "no_such_database" does not exist' in missing.stderr

    private_postgres.stop()
    down = _run(private_postgres.database_url, "queue", "status")
    assert down.returncode == 2, down.stdout + down.stderr
    [line] = down.stderr.splitlines()
    assert line.startswith("error: DATABASE_UNAVAILABLE: ") and f"port {port}" in line

    debug = _run(private_postgres.database_url, "--debug", "queue", "status")
    assert debug.returncode != 0 and "Traceback" in debug.stderr
