"""Per customer and field: the last agreed value and each side's last known value (`hubspot_field_state`).

Values are comparable text (normalize.py; '' = empty). Conflict detection reads the agreed value: "did this
side move since the two last agreed?". Writes never move a part backwards in time: a part whose stored time
is newer than the update's is left as it is (an event applied late changes nothing); a part without a time
is always written.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import numpy as np
import pandas as pd
import sqlalchemy as sa

from warp_sync_pipeline.core.decision import AGREED, column
from warp_sync_pipeline.core.fields import FieldRule
from warp_sync_pipeline.core.normalize import FIELD_SPECS, FieldSpec, comparable

PARTS = ("agreed", "warp", "hubspot")
# A column name as load_rules accepts it (a `customers` column): safe to build SQL aliases from.
_SAFE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_TIME_COLUMN = {"agreed": "agreed_at", "warp": "warp_changed_at", "hubspot": "hubspot_changed_at"}


@dataclass(frozen=True)
class StateValue:
    value: object  # comparable text when read; either side's value (normalised on the way in) when written
    at: datetime | None = None


@dataclass(frozen=True)
class FieldState:
    customer_id: UUID
    warp_field: str
    agreed: StateValue | None
    warp: StateValue | None
    hubspot: StateValue | None
    updated_at: datetime


def warp_changed_at(recorded: StateValue | None, current: str | None, *, created_at: datetime,
                    updated_at: datetime, watched_since: datetime | None) -> datetime:
    """When WARP's current value took effect: what LATEST_WINS compares, the one rule of every flow (webhook
    processor, drain, push, nightly; `warp_changed_at_series` is the nightly's vectorized form of it).

    The outbox trigger (sql/007) records WARP's value and time for every change of a mapped column, so: the
    recorded time when the record still holds the current value (`current`: its comparable text, None when
    invalid); the row's creation when no change was ever recorded and the trigger has watched the field since
    before the row existed (`watched_since`, FieldRule's: the value is the one the row was inserted with); else the
    row's last change, an upper bound (a change the trigger did not see: data older than the trigger or than the
    mapping). Not `updated_at` where the record tells more: link changes touch it too.
    """
    if recorded is None:
        return created_at if watched_since is not None and created_at >= watched_since else updated_at
    if recorded.at is not None and current is not None and current == recorded.value:
        return recorded.at
    return updated_at


def warp_changed_at_series(recorded: pd.Series, recorded_at: pd.Series, current: pd.Series, *,
                           created_at: pd.Series, updated_at: pd.Series, watched_since: datetime | None) -> pd.Series:
    """`warp_changed_at` for whole columns, aligned by position: `recorded` is NA where no change was recorded,
    `current` NA where WARP's value is invalid. The result has `updated_at`'s dtype and a fresh RangeIndex."""
    index = pd.RangeIndex(len(current))

    def aligned(column: pd.Series) -> pd.Series:
        return pd.Series(column.array, index=index).astype(updated_at.dtype)

    never = recorded.isna().to_numpy(dtype=bool)
    created = aligned(created_at)
    since_creation = never & (created >= watched_since).to_numpy(dtype=bool, na_value=False) \
        if watched_since is not None else np.zeros(len(never), dtype=bool)
    same = ~never & recorded_at.notna().to_numpy(dtype=bool) & current.notna().to_numpy(dtype=bool)
    same[same] = (recorded.to_numpy(dtype=object)[same] == current.to_numpy(dtype=object)[same])
    return aligned(updated_at).where(~same, aligned(recorded_at)).where(~since_creation, created)


@dataclass(frozen=True)
class FieldStateUpdate:
    """What to record for one customer and field; a part left None is kept as stored.

    `agreed` needs its time (when the sides agreed). Values are normalised on the way in.
    """

    customer_id: UUID | str
    warp_field: str
    agreed: StateValue | None = None
    warp: StateValue | None = None
    hubspot: StateValue | None = None
    # How to normalise the values (the field's mapping row); None: the seeded field's spec.
    spec: FieldSpec | None = None


def sent_to_hubspot(customer_id: UUID | str, warp_field: str, value: str | None, *, at: datetime,
                    warp_at: datetime | None, hubspot_at: datetime | None = None) -> FieldStateUpdate:
    """What a write HubSpot took records (the drain's and the nightly's): the value agreed as of `at`, HubSpot's part
    as written (at `hubspot_at`, HubSpot's own time where it gave one, else `at`), and WARP's part with its change
    time where that is known (a part without a time would overwrite a known one)."""
    return FieldStateUpdate(customer_id, warp_field, agreed=StateValue(value, at),
                            warp=StateValue(value, warp_at) if warp_at is not None else None,
                            hubspot=StateValue(value, hubspot_at or at))


def _ids(customer_ids: Iterable[UUID | str]) -> list[str]:
    return [str(UUID(str(customer_id))) for customer_id in customer_ids]


def read_field_state(
    conn: sa.Connection, customer_ids: Iterable[UUID | str], fields: Iterable[str] | None = None
) -> dict[tuple[UUID, str], FieldState]:
    """The stored state of these customers (and fields), keyed by (customer id, WARP field)."""
    sql = (
        "SELECT customer_id, warp_field, agreed_value, agreed_at, warp_value, warp_changed_at, "
        "hubspot_value, hubspot_changed_at, updated_at FROM hubspot_field_state "
        "WHERE customer_id = ANY(CAST(:ids AS uuid[]))"
    )
    params: dict[str, object] = {"ids": _ids(customer_ids)}
    if fields is not None:
        sql += " AND warp_field = ANY(CAST(:fields AS text[]))"
        params["fields"] = list(fields)
    out: dict[tuple[UUID, str], FieldState] = {}
    for row in conn.execute(sa.text(sql), params).mappings():
        customer_id = UUID(str(row["customer_id"]))
        out[(customer_id, row["warp_field"])] = FieldState(
            customer_id=customer_id,
            warp_field=row["warp_field"],
            agreed=_part(row["agreed_value"], row["agreed_at"]),
            warp=_part(row["warp_value"], row["warp_changed_at"]),
            hubspot=_part(row["hubspot_value"], row["hubspot_changed_at"]),
            updated_at=row["updated_at"],
        )
    return out


def _part(value: str | None, at: datetime | None) -> StateValue | None:
    # A part is never stored without its value ('' is an empty value), so NULL means "never recorded".
    return None if value is None else StateValue(value, at)


def upsert_field_state(
    conn: sa.Connection, updates: Iterable[FieldStateUpdate], *, values_are_comparable: bool = False
) -> int:
    """Insert or update state rows in the caller's transaction; returns how many updates were given.

    values_are_comparable=True skips normalising (for bulk callers that already hold comparable text).
    """
    groups: dict[tuple[bool, bool, bool], list[dict[str, object]]] = {}
    count = 0
    for update in updates:
        if update.agreed is not None and update.agreed.at is None:
            raise ValueError(f"{update.warp_field}: an agreed value needs the time it was agreed")
        known = update.spec is not None or update.warp_field in FIELD_SPECS
        if not (known or (values_are_comparable and _SAFE_NAME.fullmatch(update.warp_field))):
            raise KeyError(f"{update.warp_field!r} is not a WARP field warp-sync syncs")
        row: dict[str, object] = {"customer_id": str(UUID(str(update.customer_id))), "warp_field": update.warp_field}
        present = []
        for part in PARTS:
            state: StateValue | None = getattr(update, part)
            present.append(state is not None)
            value = None if state is None else state.value
            if state is not None and not values_are_comparable:
                value = comparable(update.spec or update.warp_field, state.value)
            row[f"{part}_value"] = value
            row[_TIME_COLUMN[part]] = None if state is None else state.at
        groups.setdefault((present[0], present[1], present[2]), []).append(row)
        count += 1
    for present, rows in groups.items():
        statement = _upsert_statement(present)
        for round_rows in _rounds(rows):
            for start in range(0, len(round_rows), _ROWS_PER_STATEMENT):
                chunk = round_rows[start:start + _ROWS_PER_STATEMENT]
                conn.execute(statement, {name: [row[name] for row in chunk] for name in _COLUMNS})
    return count


# One INSERT ... SELECT FROM unnest(arrays) ON CONFLICT per chunk: an upsert is not batched by executemany
# (psycopg2 would run it once per row), and a multi-row VALUES list is compiled anew for every chunk (a
# 1,000-row chunk has 8,000 bind parameters: compiling it cost more than running it). Eight arrays make one
# statement per shape of update, compiled once.
_ROWS_PER_STATEMENT = 5000
_COLUMNS = ("customer_id", "warp_field", "agreed_value", "agreed_at", "warp_value", "warp_changed_at",
            "hubspot_value", "hubspot_changed_at")


def _rounds(rows: list[dict[str, object]]) -> list[list[dict[str, object]]]:
    """Rows split so no round holds a (customer, field) twice, the n-th update of a key in round n.

    One statement cannot touch a row twice (ON CONFLICT DO UPDATE refuses), and applying the rounds in order
    gives what applying the updates one by one, in order, would.
    """
    rounds: list[list[dict[str, object]]] = []
    seen: dict[tuple[object, object], int] = {}
    for row in rows:
        key = (row["customer_id"], row["warp_field"])
        position = seen.get(key, 0)
        seen[key] = position + 1
        if position == len(rounds):
            rounds.append([])
        rounds[position].append(row)
    return rounds


@functools.cache
def _upsert_statement(present: tuple[bool, bool, bool]) -> sa.TextClause:
    def array_type(name: str) -> str:
        return "uuid[]" if name == "customer_id" else "timestamptz[]" if name.endswith("_at") else "text[]"

    changes = ["updated_at = now()"]
    for part, given in zip(PARTS, present, strict=True):
        if not given:
            continue
        at = _TIME_COLUMN[part]
        # Never move backwards: skip when both times are known and the stored one is newer.
        take = f"(stored.{at} IS NULL OR EXCLUDED.{at} IS NULL OR EXCLUDED.{at} >= stored.{at})"
        changes.append(f"{part}_value = CASE WHEN {take} THEN EXCLUDED.{part}_value ELSE stored.{part}_value END")
        changes.append(f"{at} = CASE WHEN {take} THEN EXCLUDED.{at} ELSE stored.{at} END")
    arrays = ", ".join(f"CAST(:{name} AS {array_type(name)})" for name in _COLUMNS)
    return sa.text(
        f"INSERT INTO hubspot_field_state AS stored ({', '.join(_COLUMNS)}) SELECT * FROM unnest({arrays}) "
        f"ON CONFLICT (customer_id, warp_field) DO UPDATE SET {', '.join(changes)}"
    )


def field_state_frame(
    conn: sa.Connection,
    rules: Mapping[str, FieldRule] | Iterable[FieldRule],
    customer_ids: Sequence[UUID | str] | None = None,
) -> pd.DataFrame:
    """The state as one row per customer (index: customer id as text), for decide_frame.

    Columns per field: {field}__agreed (NA = no agreed value, as decide_frame expects), {field}__agreed_at,
    and the last known sides as {field}__state_warp, {field}__state_warp_changed_at, {field}__state_hubspot,
    {field}__state_hubspot_changed_at. Customers without any state row are absent (reindex to add them).
    """
    rule_list = list(rules.values()) if isinstance(rules, Mapping) else list(rules)
    selects = ["customer_id::text AS customer_id"]
    params: dict[str, object] = {}
    names: list[str] = []
    for position, rule in enumerate(rule_list):
        field = rule.warp_field
        if not _SAFE_NAME.fullmatch(field):  # the aliases below are built from it
            raise KeyError(f"{field!r} is not a WARP field warp-sync syncs")
        params[f"f{position}"] = field
        for source, part in (
            ("agreed_value", AGREED),
            ("agreed_at", "agreed_at"),
            ("warp_value", "state_warp"),
            ("warp_changed_at", "state_warp_changed_at"),
            ("hubspot_value", "state_hubspot"),
            ("hubspot_changed_at", "state_hubspot_changed_at"),
        ):
            name = column(field, part)
            names.append(name)
            selects.append(f'max({source}) FILTER (WHERE warp_field = :f{position}) AS "{name}"')
    sql = f"SELECT {', '.join(selects)} FROM hubspot_field_state"
    if customer_ids is not None:
        sql += " WHERE customer_id = ANY(CAST(:ids AS uuid[]))"
        params["ids"] = _ids(customer_ids)
    sql += " GROUP BY customer_id"
    rows = conn.execute(sa.text(sql), params).all()
    frame = pd.DataFrame.from_records(rows, columns=["customer_id", *names]).set_index("customer_id")
    for name in names:
        if name.endswith("_at"):
            frame[name] = pd.to_datetime(frame[name], utc=True)
        else:
            frame[name] = frame[name].astype("str")
    return frame
