"""The database engine across a PostgreSQL restart (a real one: the server stopped and started, on a cluster of
the test's own)."""

import pytest
import sqlalchemy as sa

from tests.plugins.database import PrivatePostgres
from warp_sync_pipeline.core.db import make_engine


def test_a_pooled_engine_reconnects_after_the_server_restarts(private_postgres: PrivatePostgres) -> None:
    engine = make_engine(private_postgres.database_url, pool_size=2)
    try:
        with engine.connect() as conn:
            before = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        private_postgres.restart()
        # The pooled connection died with the old server; the pre-ping notices and the pool opens a new one.
        with engine.connect() as conn:
            after = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
            assert conn.execute(sa.text("SELECT count(*) FROM hubspot_field_mappings")).scalar_one() == 8
        assert after != before
    finally:
        engine.dispose()


def test_while_the_server_is_down_a_query_fails_with_a_connection_error(private_postgres: PrivatePostgres) -> None:
    engine = make_engine(private_postgres.database_url, connect_args={"connect_timeout": 2})
    try:
        private_postgres.stop()
        with pytest.raises(sa.exc.OperationalError), engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        private_postgres.start()
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()
