"""A real PostgreSQL for the suite.

Unless WARP_TEST_DATABASE_URL names a server, the session starts a private, throwaway cluster
(tuned for speed: no fsync) and removes it at the end, leaving nothing running. Each test gets a
database of its own, cloned from a migrated template, and dropped afterwards; the suite never
touches a database it did not create.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
import sqlalchemy as sa

from warp_sync_pipeline.core.db import make_engine, with_database
from warp_sync_pipeline.core.localpg import LocalCluster, _raw_connect, throwaway_server
from warp_sync_pipeline.core.migrations import upgrade
from warp_sync_pipeline.core.settings import state_dir

RUN_TAG = uuid.uuid4().hex[:8]


def _admin(url: str):  # noqa: ANN202
    conn = _raw_connect(url)
    conn.autocommit = True
    return conn


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    _remove_abandoned_test_clusters()
    with throwaway_server("test", fast_unsafe=True) as (url, _description):
        yield url


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


@pytest.fixture(scope="session")
def template_database(pg_admin_url: str) -> Iterator[str]:
    """A migrated database that each test's database is cloned from."""
    name = f"warp_test_template_{RUN_TAG}"
    url = create_database(pg_admin_url, name)
    engine = make_engine(url, poolclass=sa.pool.NullPool)
    upgrade(engine)
    engine.dispose()
    try:
        yield name
    finally:
        drop_database(pg_admin_url, name)


@pytest.fixture
def empty_database_url(pg_admin_url: str) -> Iterator[str]:
    """A database with nothing in it (for migration tests)."""
    name = f"warp_test_empty_{RUN_TAG}_{uuid.uuid4().hex[:8]}"
    url = create_database(pg_admin_url, name)
    try:
        yield url
    finally:
        drop_database(pg_admin_url, name)


@pytest.fixture
def database_url(pg_admin_url: str, template_database: str) -> Iterator[str]:
    """A fresh, fully migrated database for one test."""
    name = f"warp_test_{RUN_TAG}_{uuid.uuid4().hex[:10]}"
    url = create_database(pg_admin_url, name, template=template_database)
    try:
        yield url
    finally:
        drop_database(pg_admin_url, name)


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    eng = make_engine(database_url, pool_size=5, max_overflow=20)
    try:
        yield eng
    finally:
        eng.dispose()
