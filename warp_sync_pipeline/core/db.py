"""Database URLs and engines (SQLAlchemy Core, psycopg2 named explicitly)."""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from warp_sync_pipeline.core.settings import (
    POSTGRES_DRIVER,
    SettingsError,
    load_settings,
    postgres_url,
    require,
)

DRIVER = POSTGRES_DRIVER


def normalize_url(raw: str, *, variable: str = "WARP_DATABASE_URL") -> str:
    """Name the driver explicitly: SQLAlchemy 2.1 would pick psycopg 3 for a bare `postgresql://`."""
    try:
        return postgres_url(raw)
    except ValueError as exc:
        raise SettingsError(variable, str(exc)) from None


DATABASE_URL_HINT = "run through `warp-sync` (which starts the private PostgreSQL) or set it"


def database_url_from_env(environ: Mapping[str, str] | None = None) -> str:
    return require(load_settings(environ).database_url, "WARP_DATABASE_URL", DATABASE_URL_HINT)


def with_database(url: str, database: str) -> str:
    return make_url(url).set(database=database).render_as_string(hide_password=False)


def redacted(url: str | URL) -> str:
    return make_url(url).render_as_string(hide_password=True)


def make_engine(url: str, **kwargs: object) -> sa.Engine:
    """An engine that never prints bound values (they can hold customer data or secrets)."""
    options: dict[str, object] = {"hide_parameters": True, "pool_pre_ping": True, "future": True}
    options.update(kwargs)
    return sa.create_engine(normalize_url(url), **options)


def ping(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))


def database_unreachable(exc: BaseException) -> str | None:
    """The server's own one-line account when `exc` means PostgreSQL could not be reached or the connection was
    lost (server down or restarting, database missing, refused login), else None.

    Those errors come from the connection, not a statement, so the driver gives them no SQLSTATE; an error a
    statement caused (a constraint, a lock timeout) has one and is not this.
    """
    import psycopg2

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sa.exc.DBAPIError) and current.connection_invalidated:
            return _first_line(current.orig)
        original = current.orig if isinstance(current, sa.exc.DBAPIError) else current
        if isinstance(original, psycopg2.OperationalError) and getattr(original, "pgcode", None) is None:
            return _first_line(original)
        current = current.__cause__ or current.__context__
    return None


def _first_line(exc: BaseException | None) -> str:
    text = str(exc or "").strip()
    return text.splitlines()[0] if text else type(exc).__name__
