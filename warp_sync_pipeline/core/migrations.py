"""Numbered SQL migrations under `sql/`, applied in order and recorded. They are installed as the package
`warp_sync_pipeline.sql` (setup.py), so a wheel installed anywhere finds them the way the checkout does.

Why not a library: yoyo-migrations identifies a migration by name only (an edited applied file goes
unnoticed) and has its own lock table; what we need is small: order, record, checksum, one
advisory lock with a lock timeout, and files that opt out of the transaction for
`CREATE INDEX CONCURRENTLY`.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

# Any number that is ours alone: two `db upgrade` processes serialise on it.
ADVISORY_LOCK_KEY = 0x7A5F_5359_4E43
NO_TRANSACTION_MARKER = "-- warp-sync: no-transaction"
FILE_PATTERN = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path
    sql: str
    checksum: str

    @property
    def transactional(self) -> bool:
        return NO_TRANSACTION_MARKER not in self.sql.splitlines()[:5]


def sql_dir() -> Path:
    # A regular package on the file system (the checkout's sql/ when installed editable): a real directory.
    return Path(str(importlib.resources.files("warp_sync_pipeline.sql")))


def discover(directory: Path | None = None) -> list[Migration]:
    directory = directory or sql_dir()
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = FILE_PATTERN.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNN_name.sql")
        data = path.read_bytes()
        found.append(
            Migration(match.group(1), match.group(2), path, data.decode("utf-8"), hashlib.sha256(data).hexdigest())
        )
    versions = [m.version for m in found]
    if len(versions) != len(set(versions)):
        raise MigrationError("two migration files share a number")
    return found


def upgrade(engine: sa.Engine, directory: Path | None = None, *, lock_timeout_s: int = 60) -> list[str]:
    """Apply every pending file; return the names applied (empty when up to date)."""
    migrations = discover(directory)
    applied_now: list[str] = []
    # A session-level advisory lock on a connection of its own, held for the whole upgrade.
    raw = engine.raw_connection()
    try:
        raw.autocommit = True
        cur = raw.cursor()
        # Poll rather than wait inside pg_advisory_lock(): a session blocked in that call holds a
        # snapshot, and the holder's CREATE INDEX CONCURRENTLY would wait for it forever.
        deadline = time.monotonic() + lock_timeout_s
        while True:
            cur.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
            if cur.fetchone()[0]:
                break
            if time.monotonic() >= deadline:
                raise MigrationError(f"another upgrade held the migration lock for more than {lock_timeout_s}s")
            time.sleep(0.1)
        try:
            cur.execute(
                """CREATE TABLE IF NOT EXISTS warp_schema_migrations (
                       version text PRIMARY KEY,
                       name text NOT NULL,
                       checksum text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            cur.execute("SELECT version, name, checksum FROM warp_schema_migrations")
            applied = {row[0]: (row[1], row[2]) for row in cur.fetchall()}
            known = {m.version for m in migrations}
            for version, (name, _) in applied.items():
                if version not in known:
                    raise MigrationError(f"{version}_{name}.sql was applied but is missing from sql/")
            for m in migrations:
                if m.version in applied:
                    if applied[m.version][1] != m.checksum:
                        raise MigrationError(
                            f"{m.path.name} was edited after it was applied; add a new numbered file instead"
                        )
                    continue
                _apply(cur, raw, m)
                applied_now.append(m.path.name)
        finally:
            cur.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
    finally:
        raw.close()
    return applied_now


def _apply(cur, raw, m: Migration) -> None:  # noqa: ANN001 - DBAPI objects
    record = "INSERT INTO warp_schema_migrations (version, name, checksum) VALUES (%s, %s, %s)"
    try:
        if m.transactional:
            cur.execute("BEGIN")
            cur.execute("SET LOCAL lock_timeout = '10s'")
            cur.execute(m.sql)
            cur.execute(record, (m.version, m.name, m.checksum))
            cur.execute("COMMIT")
        else:
            # Statements such as CREATE INDEX CONCURRENTLY refuse a transaction block, so each
            # statement runs on its own; such a file must be safe to re-run (IF NOT EXISTS).
            for statement in _split_statements(m.sql):
                cur.execute(statement)
            cur.execute(record, (m.version, m.name, m.checksum))
    except Exception as exc:
        if m.transactional:
            cur.execute("ROLLBACK")
        raise MigrationError(f"{m.path.name} failed: {exc}") from exc


def _split_statements(sql: str) -> list[str]:
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def applied_versions(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        exists = conn.execute(sa.text("SELECT to_regclass('warp_schema_migrations') IS NOT NULL")).scalar()
        if not exists:
            return []
        return list(conn.execute(sa.text("SELECT version FROM warp_schema_migrations ORDER BY version")).scalars())
