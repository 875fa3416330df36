"""The `db` resource: a SQLAlchemy engine built once per run from `WARP_DATABASE_URL`."""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa
from pydantic import PrivateAttr

from warp_sync_pipeline.core.db import database_url_from_env, make_engine


class DatabaseResource(dg.ConfigurableResource):
    """WARP's PostgreSQL. The URL comes from the environment (a `dg.EnvVar`) so the UI never shows it."""

    url: str
    _engine: sa.Engine | None = PrivateAttr(default=None)

    def _make_engine(self) -> sa.Engine:
        # The resolved URL through the settings model, as a process's environment goes: a bad one names its variable.
        return make_engine(database_url_from_env({"WARP_DATABASE_URL": self.url}), pool_size=5, max_overflow=5)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._engine = self._make_engine()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._engine is not None:
            self._engine.dispose()

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            # Used outside a run (a unit test building the resource directly).
            self._engine = self._make_engine()
        return self._engine
