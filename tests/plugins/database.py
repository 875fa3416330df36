"""A real PostgreSQL for the suite, shared by every xdist worker.

Unless WARP_TEST_DATABASE_URL names a server, one private, throwaway cluster (tuned for speed: no
fsync) serves the whole run and is removed at the end, leaving nothing running. Under pytest-xdist
the controller starts it and migrates one template database before the workers start, and hands
both to the workers (`workerinput`), so the migrations run once per run, not once per worker.
Without xdist the same happens lazily, the first time a test asks for a database.

Each test that asks for `database_url` gets a database of its own, cloned from the template, and
dropped afterwards: a fresh clone costs about 20 ms (clone and drop, measured on the suite's cluster),
about three times a TRUNCATE-and-reseed of a reused database, and nothing a test leaves behind (an edited rule,
a sequence, a held lock, a dropped trigger) can reach the next one. The suite never touches a
database it did not create.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import pytest
import sqlalchemy as sa

from warp_sync_pipeline.core.db import make_engine, with_database
from warp_sync_pipeline.core.migrations import upgrade
from warp_sync_pipeline.core.settings import state_dir
from warp_sync_pipeline.devstack.localpg import LocalCluster, _raw_connect, throwaway_server

RUN_TAG = uuid.uuid4().hex[:8]
_ADMIN_URL_KEY = "warp_pg_admin_url"
_TEMPLATE_KEY = "warp_pg_template"


@dataclass
class SharedPostgres:
    """The run's server and its migrated template, started once (on the controller under xdist)."""

    admin_url: str | None = None
    template: str | None = None
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def ensure(self) -> tuple[str, str]:
        if self.admin_url is None:
            _remove_abandoned_test_clusters()
            self.admin_url, _description = self._stack.enter_context(throwaway_server("test", fast_unsafe=True))
        if self.template is None:
            name = f"warp_test_template_{RUN_TAG}"
            url = create_database(self.admin_url, name)
            self._stack.callback(drop_database, self.admin_url, name)
            # NullPool and dispose: a template cannot be cloned while a connection to it is open.
            engine = make_engine(url, poolclass=sa.pool.NullPool)
            try:
                upgrade(engine)
            finally:
                engine.dispose()
            self.template = name
        return self.admin_url, self.template

    def close(self) -> None:
        self._stack.close()


_shared_key = pytest.StashKey[SharedPostgres]()


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # a worker gets the controller's server in workerinput
        config.stash[_shared_key] = SharedPostgres()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # noqa: ANN001 - xdist's WorkerController
    # Called for each worker before it starts: the first call starts the server and migrates the template.
    shared = node.config.stash[_shared_key]
    node.workerinput[_ADMIN_URL_KEY], node.workerinput[_TEMPLATE_KEY] = shared.ensure()


def pytest_unconfigure(config: pytest.Config) -> None:
    shared = config.stash.get(_shared_key, None)
    if shared is not None:
        shared.close()


def _server(config: pytest.Config) -> tuple[str, str]:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and _ADMIN_URL_KEY in workerinput:
        return workerinput[_ADMIN_URL_KEY], workerinput[_TEMPLATE_KEY]
    return config.stash[_shared_key].ensure()


def _remove_abandoned_test_clusters() -> None:
    """A killed test session cannot stop its cluster; the next one does, by the pid in the name."""
    for folder in state_dir().glob("test-*"):
        try:
            pid = int(folder.name.removeprefix("test-"))
            os.kill(pid, 0)
        except ProcessLookupError:
            LocalCluster(folder, "test-pg").destroy()
            _rmdir_quiet(folder)
        except (ValueError, PermissionError):
            continue


def _rmdir_quiet(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _admin(url: str):  # noqa: ANN202
    conn = _raw_connect(url)
    conn.autocommit = True
    return conn


def create_database(admin_url: str, name: str, template: str | None = None) -> str:
    conn = _admin(admin_url)
    try:
        with conn.cursor() as cur:
            suffix = f' TEMPLATE "{template}"' if template else ""
            cur.execute(f'CREATE DATABASE "{name}"{suffix}')
    finally:
        conn.close()
    return with_database(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    conn = _admin(admin_url)
    try:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg2.Error:
        pass
    finally:
        conn.close()


@contextlib.contextmanager
def scratch_database(admin_url: str, prefix: str, template: str | None = None) -> Iterator[str]:
    """A database of the test's own (`<prefix>_<run>_<random>`), dropped afterwards; yields its URL."""
    name = f"{prefix}_{RUN_TAG}_{uuid.uuid4().hex[:10]}"
    url = create_database(admin_url, name, template=template)
    try:
        yield url
    finally:
        drop_database(admin_url, name)


@pytest.fixture(scope="session")
def pg_admin_url(pytestconfig: pytest.Config) -> str:
    return _server(pytestconfig)[0]


@pytest.fixture(scope="session")
def template_database(pytestconfig: pytest.Config) -> str:
    """The migrated database each test's database is cloned from."""
    return _server(pytestconfig)[1]


@pytest.fixture
def empty_database_url(pg_admin_url: str) -> Iterator[str]:
    """A database with nothing in it (for migration tests)."""
    with scratch_database(pg_admin_url, "warp_test_empty") as url:
        yield url


@pytest.fixture
def database_url(pg_admin_url: str, template_database: str) -> Iterator[str]:
    """A fresh, fully migrated database for one test."""
    with scratch_database(pg_admin_url, "warp_test", template=template_database) as url:
        yield url


@dataclass
class PrivatePostgres:
    """A cluster of one test's own, for tests that stop, restart or break the server itself."""

    cluster: LocalCluster
    admin_url: str
    database_url: str  # a migrated database on it

    def stop(self) -> None:
        self.cluster.stop()

    def start(self) -> None:
        # The same port when it is still free (it is, right after a stop), so URLs stay valid.
        admin_url = self.cluster.ensure_running()
        assert admin_url == self.admin_url, f"the restarted server moved from {self.admin_url} to {admin_url}"

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def private_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivatePostgres]:
    """A private cluster (about 2 s to make) with a migrated database, removed afterwards; the shared server is
    never restarted, since every other test of the run is on it."""
    cluster = LocalCluster(tmp_path_factory.mktemp("private-pg"), "private-pg", fast_unsafe=True)
    try:
        admin_url = cluster.ensure_running()
        url = create_database(admin_url, "warp")
        engine = make_engine(url, poolclass=sa.pool.NullPool)
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        yield PrivatePostgres(cluster, admin_url, url)
    finally:
        cluster.destroy()


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    eng = make_engine(database_url, pool_size=5, max_overflow=20)
    try:
        yield eng
    finally:
        eng.dispose()
