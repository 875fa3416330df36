"""SQLAlchemy Core descriptions of WARP's customers and the sync-state tables.

`customers` comes from sql/001_customers.sql, the rest from sql/004_sync_state.sql.

The SQL file is the schema; these mirror it so inserts can use Core's batched executemany.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

metadata = sa.MetaData()

customers = sa.Table(
    "customers",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("ban", sa.Text),
    sa.Column("company_name", sa.Text),
    sa.Column("status", sa.Text),
    sa.Column("credit_limit", sa.Numeric(14, 2)),
    sa.Column("current_balance", sa.Numeric(14, 2)),
    sa.Column("payment_terms", sa.Text),
    sa.Column("services", JSONB),
    sa.Column("contact_email", sa.Text),
    sa.Column("external_ids", JSONB),
    sa.Column("hubspot_link_status", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)


def customer_column(name: str) -> sa.ColumnElement:
    """A `customers` column by name: the declared ones above, and a column a mapping row added since (fields are
    data: load_rules accepts only real `customers` columns, so the name is one, and it is quoted)."""
    if name in customers.c:
        return customers.c[name]
    quoted = '"' + name.replace('"', '""') + '"'
    return sa.literal_column(f"customers.{quoted}").label(name)


# The HubSpot company a customer links to (unique across customers, see sql/001).
customer_company_id = customers.c.external_ids["hubspot_company_id"].astext
# Set in a transaction that writes HubSpot's values to WARP: the outbox trigger (sql/) then queues nothing back.
NO_ECHO_MARKER = ("warp_sync.origin", "hubspot")


def mark_from_hubspot(conn: sa.Connection) -> None:
    """SET LOCAL the no-echo marker for this transaction: what it writes to `customers` came from HubSpot (or is
    already there), so the outbox trigger must not queue it back."""
    conn.execute(sa.text("SELECT set_config(:name, :value, true)"), {"name": NO_ECHO_MARKER[0],
                                                                      "value": NO_ECHO_MARKER[1]})

def hold_customers(conn: sa.Connection, customer_ids: Iterable[str]) -> set[str]:
    """The ids (text) of these customers that exist, each held against deletion until the transaction ends
    (FOR KEY SHARE blocks a delete, and no update)."""
    return set(conn.execute(
        sa.text("SELECT id::text FROM customers WHERE id = ANY(CAST(:ids AS uuid[])) FOR KEY SHARE"),
        {"ids": sorted(set(customer_ids))},
    ).scalars())


field_state = sa.Table(
    "hubspot_field_state",
    metadata,
    sa.Column("customer_id", sa.Uuid, primary_key=True),
    sa.Column("warp_field", sa.Text, primary_key=True),
    sa.Column("agreed_value", sa.Text),
    sa.Column("agreed_at", sa.DateTime(timezone=True)),
    sa.Column("warp_value", sa.Text),
    sa.Column("warp_changed_at", sa.DateTime(timezone=True)),
    sa.Column("hubspot_value", sa.Text),
    sa.Column("hubspot_changed_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)

sync_log = sa.Table(
    "hubspot_sync_log",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("logged_at", sa.DateTime(timezone=True)),
    sa.Column("customer_id", sa.Uuid),
    sa.Column("ban", sa.Text),
    sa.Column("warp_field", sa.Text),
    sa.Column("hubspot_property", sa.Text),
    sa.Column("direction", sa.Text),
    sa.Column("trigger", sa.Text),
    sa.Column("old_value", sa.Text),
    sa.Column("new_value", sa.Text),
    sa.Column("action", sa.Text),
    sa.Column("reason", sa.Text),
    sa.Column("outcome", sa.Text),
    sa.Column("error_code", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("actor", sa.Text),
    sa.Column("dagster_run_id", sa.Text),
    sa.Column("details", JSONB),
)

write_ledger = sa.Table(
    "hubspot_write_ledger",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("company_id", sa.Text),
    sa.Column("ban", sa.Text),
    sa.Column("warp_field", sa.Text),
    sa.Column("hubspot_property", sa.Text),
    sa.Column("value", sa.Text),
    sa.Column("status", sa.Text),
    sa.Column("written_at", sa.DateTime(timezone=True)),
    sa.Column("expires_at", sa.DateTime(timezone=True)),
    sa.Column("matched_at", sa.DateTime(timezone=True)),
    sa.Column("voided_at", sa.DateTime(timezone=True)),
    sa.Column("void_reason", sa.Text),
)

conflicts = sa.Table(
    "hubspot_conflicts",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("customer_id", sa.Uuid),
    sa.Column("warp_field", sa.Text),
    sa.Column("hubspot_property", sa.Text),
    sa.Column("status", sa.Text),
    sa.Column("reason", sa.Text),
    sa.Column("agreed_value", sa.Text),
    sa.Column("warp_value", sa.Text),
    sa.Column("warp_changed_at", sa.DateTime(timezone=True)),
    sa.Column("hubspot_value", sa.Text),
    sa.Column("hubspot_changed_at", sa.DateTime(timezone=True)),
    sa.Column("detected_by", sa.Text),
    sa.Column("detection_count", sa.Integer),
    sa.Column("dagster_run_id", sa.Text),
    sa.Column("version", sa.Integer),
    sa.Column("opened_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
    sa.Column("closed_at", sa.DateTime(timezone=True)),
    sa.Column("closed_by", sa.Text),
    sa.Column("resolution", sa.Text),
    sa.Column("resolved_value", sa.Text),
)

customer_leases = sa.Table(
    "hubspot_customer_leases",
    metadata,
    sa.Column("customer_id", sa.Uuid, primary_key=True),
    sa.Column("holder", sa.Text),
    sa.Column("token", sa.Uuid),
    sa.Column("acquired_at", sa.DateTime(timezone=True)),
    sa.Column("expires_at", sa.DateTime(timezone=True)),
)


@contextmanager
def in_transaction(bind: sa.Engine | sa.Connection) -> Iterator[sa.Connection]:
    """An Engine gets a transaction of its own, committed on exit; a Connection is the caller's."""
    if isinstance(bind, sa.Engine):
        with bind.begin() as conn:
            yield conn
    else:
        yield bind
