"""One Dagster webserver for every browser test of the Dagster UI (session scope).

It runs the project's own instance template (dagster.yaml: dagster-postgres storage) on a
database of its own on the test server, and loads the code location through workspace.yaml,
so the test exercises what `make dev` runs.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.plugins.database import create_database, drop_database
from warp_sync_pipeline.core.localpg import free_port

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class DagsterWebserver:
    url: str
    dagster_home: Path
    environment: dict[str, str]  # what the test process needs to open the same instance


@pytest.fixture(scope="session")
def dagster_webserver(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterWebserver]:
    name = f"warp_test_dagster_{uuid.uuid4().hex[:8]}"
    storage = make_url(create_database(pg_admin_url, name))
    home = tmp_path_factory.mktemp("dagster-home")
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    environment = {
        "DAGSTER_HOME": str(home),
        "WARP_DAGSTER_PG_HOST": storage.host or "127.0.0.1",
        "WARP_DAGSTER_PG_PORT": str(storage.port or 5432),
        "WARP_DAGSTER_PG_USER": storage.username or "postgres",
        "WARP_DAGSTER_PG_PASSWORD": storage.password or "",
        "WARP_DAGSTER_PG_DB": name,
    }
    port = free_port()
    log = open(home / "webserver.log", "wb")  # noqa: SIM115 - closed in the finally below
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port),
         "-w", str(REPO / "workspace.yaml")],
        cwd=REPO, env={**os.environ, **environment}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"dagster-webserver exited; see {home / 'webserver.log'}")
            try:
                if httpx.get(f"{url}/server_info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("dagster-webserver did not start within 120 s")
            time.sleep(0.5)
        yield DagsterWebserver(url, home, environment)
    finally:
        # Stopped by its process group: dagster's servers spawn a code-server child.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sig)
                process.wait(20)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        log.close()
        drop_database(pg_admin_url, name)
