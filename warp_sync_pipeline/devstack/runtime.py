"""The local runtime: which PostgreSQL to use, and where Dagster keeps its instance.

With `WARP_DATABASE_URL` set, that server is used as it is. Without it, the private cluster under
the state folder is started (or reused) and the application and Dagster get a database each on it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from warp_sync_pipeline.core.db import with_database
from warp_sync_pipeline.core.settings import load_settings, state_dir
from warp_sync_pipeline.devstack.localpg import LocalCluster, ensure_database
from warp_sync_pipeline.instance import TEMPLATE as INSTANCE_TEMPLATE

APP_DATABASE = "warp"
DAGSTER_DATABASE = "warp_dagster"


@dataclass(frozen=True)
class Runtime:
    database_url: str
    dagster_database_url: str
    dagster_home: Path
    private_cluster: bool

    def environment(self) -> dict[str, str]:
        """Variables a child process (Dagster, gunicorn) needs to find the same stack."""
        dagster_url = make_url(self.dagster_database_url)
        return {
            "WARP_DATABASE_URL": self.database_url,
            "WARP_DAGSTER_DATABASE_URL": self.dagster_database_url,
            "WARP_DAGSTER_PG_HOST": dagster_url.host or "127.0.0.1",
            "WARP_DAGSTER_PG_PORT": str(dagster_url.port or 5432),
            "WARP_DAGSTER_PG_USER": dagster_url.username or "postgres",
            "WARP_DAGSTER_PG_PASSWORD": dagster_url.password or "",
            "WARP_DAGSTER_PG_DB": dagster_url.database or DAGSTER_DATABASE,
            "DAGSTER_HOME": str(self.dagster_home),
        }


def local_cluster() -> LocalCluster:
    return LocalCluster(state_dir(), "postgres")


def ensure_runtime(*, apply_env: bool = True, with_dagster: bool = True) -> Runtime:
    settings = load_settings()
    if settings.database_url:
        app_url = settings.database_url
        dagster_raw = settings.dagster_database_url
        dagster_url = dagster_raw or with_database(app_url, (make_url(app_url).database or APP_DATABASE) + "_dagster")
        if with_dagster and not dagster_raw:
            ensure_database(with_database(app_url, "postgres"), make_url(dagster_url).database or DAGSTER_DATABASE)
        private = False
    else:
        admin_url = local_cluster().ensure_running()
        for name in (APP_DATABASE, DAGSTER_DATABASE) if with_dagster else (APP_DATABASE,):
            ensure_database(admin_url, name)
        app_url = with_database(admin_url, APP_DATABASE)
        dagster_url = with_database(admin_url, DAGSTER_DATABASE)
        private = True
    home = Path(settings.dagster_home or state_dir() / "dagster-home")
    if with_dagster:
        prepare_dagster_home(home, managed=not settings.dagster_home)
    runtime = Runtime(app_url, dagster_url, home, private)
    if apply_env:
        os.environ.update(runtime.environment())
    return runtime


def prepare_dagster_home(home: Path, *, managed: bool = True) -> None:
    """DAGSTER_HOME holds customer data (pickled or Parquet frames): keep it private. Its dagster.yaml is the
    checkout's template: kept up to date in the private home (`managed`), only created where none exists in a
    DAGSTER_HOME that someone chose (their instance file is theirs)."""
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)
    template = INSTANCE_TEMPLATE
    target = home / "dagster.yaml"
    stale = not target.exists() or (managed and target.read_bytes() != template.read_bytes())
    if template.exists() and stale:
        shutil.copyfile(template, target)
