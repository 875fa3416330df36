from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests import REPO
from warp_sync_pipeline.core.db import make_engine
from warp_sync_pipeline.core.migrations import MigrationError, applied_versions, discover, upgrade


def test_migrations_apply_to_an_empty_database_and_a_second_run_changes_nothing(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url, poolclass=sa.pool.NullPool)
    first = upgrade(engine)
    assert first == [m.path.name for m in discover()]
    assert applied_versions(engine) == [m.version for m in discover()]
    assert upgrade(engine) == []
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM warp_schema_migrations")).scalar() == len(first)


def test_an_edited_applied_file_is_refused(empty_database_url: str, tmp_path: Path) -> None:
    directory = tmp_path / "sql"
    shutil.copytree(REPO / "sql", directory)
    engine = make_engine(empty_database_url, poolclass=sa.pool.NullPool)
    upgrade(engine, directory)
    first = sorted(directory.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- an innocent-looking edit\n")
    with pytest.raises(MigrationError, match=f"{first.name} was edited after it was applied"):
        upgrade(engine, directory)


def test_a_failing_file_leaves_nothing_half_applied(empty_database_url: str, tmp_path: Path) -> None:
    directory = tmp_path / "sql"
    directory.mkdir()
    (directory / "001_good.sql").write_text("CREATE TABLE t1 (id int);")
    (directory / "002_bad.sql").write_text("CREATE TABLE t2 (id int);\nSELECT no_such_function();")
    engine = make_engine(empty_database_url, poolclass=sa.pool.NullPool)
    with pytest.raises(MigrationError, match="002_bad.sql failed"):
        upgrade(engine, directory)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT to_regclass('t1') IS NOT NULL")).scalar()
        assert not conn.execute(sa.text("SELECT to_regclass('t2') IS NOT NULL")).scalar()
    assert applied_versions(engine) == ["001"]


def test_a_no_transaction_file_can_build_an_index_concurrently(empty_database_url: str, tmp_path: Path) -> None:
    directory = tmp_path / "sql"
    directory.mkdir()
    (directory / "001_table.sql").write_text("CREATE TABLE t (id int);")
    (directory / "002_index.sql").write_text(
        "-- warp-sync: no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS t_id_idx ON t (id);\n"
    )
    engine = make_engine(empty_database_url, poolclass=sa.pool.NullPool)
    assert upgrade(engine, directory) == ["001_table.sql", "002_index.sql"]
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT to_regclass('t_id_idx') IS NOT NULL")).scalar()


def test_two_upgrades_at_once_apply_each_file_exactly_once(empty_database_url: str) -> None:
    env = {**os.environ, "WARP_DATABASE_URL": empty_database_url}
    cli = [sys.executable, "-m", "warp_sync_pipeline.cli", "db", "upgrade"]
    procs = [subprocess.Popen(cli, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    applied_lines = [line for out in outputs for line in out.splitlines() if line.startswith("applied ")]
    assert sorted(applied_lines) == sorted(f"applied {m.path.name}" for m in discover())
    engine = make_engine(empty_database_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT version, count(*) FROM warp_schema_migrations GROUP BY version"))
        assert all(count == 1 for _, count in rows)
