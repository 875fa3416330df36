"""The field rules: which WARP column maps to which HubSpot property, which way it flows, who wins.

The rules are data (`hubspot_field_mappings`, edited by the data team); `load_rules` turns the rows into
typed `FieldRule`s and refuses a row that cannot work (a WARP field that is not a real `customers` column, or
one warp-sync has no type for). Callers report failures in WARP's names: `FieldRules` translates both ways.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import TypeVar

import sqlalchemy as sa

from warp_sync_pipeline.core.normalize import FIELD_SPECS, FieldSpec, FieldType


class Direction(StrEnum):
    WARP_TO_HUBSPOT = "WARP_TO_HUBSPOT"
    HUBSPOT_TO_WARP = "HUBSPOT_TO_WARP"
    BIDIRECTIONAL = "BIDIRECTIONAL"


class Strategy(StrEnum):
    HUBSPOT_WINS = "HUBSPOT_WINS"
    WARP_WINS = "WARP_WINS"
    LATEST_WINS = "LATEST_WINS"
    MANUAL = "MANUAL"


@dataclass(frozen=True)
class FieldRule:
    warp_field: str
    hubspot_property: str
    direction: Direction
    strategy: Strategy
    # Since when the outbox trigger (sql/007) has recorded every WARP change of this field: the later of the
    # trigger's migration and the mapping row's creation. None when not known (rules made in code).
    watched_since: datetime | None = field(default=None, compare=False)
    # What the field holds, as its mapping row declares it (None: the seeded field's spec, for rules made in code).
    declared: FieldSpec | None = None

    @property
    def spec(self) -> FieldSpec:
        if self.declared is not None:
            return self.declared
        try:
            return FIELD_SPECS[self.warp_field]
        except KeyError:
            raise KeyError(f"{self.warp_field!r} has no declared type (rules made in code know the seeded "
                           "fields only)") from None


class FieldRuleError(ValueError):
    """The mapping table holds rows warp-sync cannot follow; `problems` names each one."""

    code = "INVALID_FIELD_MAPPING"

    def __init__(self, problems: list[str]) -> None:
        super().__init__("hubspot_field_mappings: " + "; ".join(problems))
        self.problems = problems


V = TypeVar("V")


class FieldRules(Mapping[str, FieldRule]):
    """The rules by WARP field name, with the translation to and from HubSpot property names."""

    def __init__(self, rules: Iterable[FieldRule]) -> None:
        self._by_field: dict[str, FieldRule] = {}
        self._by_property: dict[str, FieldRule] = {}
        for rule in rules:
            if rule.warp_field in self._by_field or rule.hubspot_property in self._by_property:
                raise FieldRuleError([f"{rule.warp_field} -> {rule.hubspot_property} is mapped twice"])
            self._by_field[rule.warp_field] = rule
            self._by_property[rule.hubspot_property] = rule

    def __getitem__(self, warp_field: str) -> FieldRule:
        return self._by_field[warp_field]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_field)

    def __len__(self) -> int:
        return len(self._by_field)

    def __repr__(self) -> str:
        return f"FieldRules({list(self._by_field.values())!r})"

    def for_property(self, hubspot_property: str) -> FieldRule | None:
        return self._by_property.get(hubspot_property)

    def hubspot_property(self, warp_field: str) -> str:
        return self._by_field[warp_field].hubspot_property

    def warp_field(self, hubspot_property: str) -> str:
        try:
            return self._by_property[hubspot_property].warp_field
        except KeyError:
            raise KeyError(f"HubSpot property {hubspot_property!r} is not mapped") from None

    @property
    def hubspot_properties(self) -> list[str]:
        return list(self._by_property)

    def to_warp_names(self, by_property: Mapping[str, V]) -> dict[str, V]:
        """Re-key a mapping by WARP field name; an unmapped property keeps its HubSpot name."""
        out: dict[str, V] = {}
        for prop, value in by_property.items():
            rule = self._by_property.get(prop)
            out[rule.warp_field if rule else prop] = value
        return out

    def to_hubspot_names(self, by_field: Mapping[str, V]) -> dict[str, V]:
        return {self._by_field[field].hubspot_property: value for field, value in by_field.items()}


# Columns that are never synced as fields, whatever the mapping table says.
NEVER_MAPPED = frozenset({"id", "created_at", "updated_at", "external_ids", "hubspot_link_status"})


# The eight rules sql/002 seeds (DESIGN.md's field table), for code that runs without a database:
# benchmarks and unit tests. Running flows always read the table, which the data team may have changed.
_SEEDED: tuple[FieldRule, ...] = (
    FieldRule("ban", "warp_ban", Direction.WARP_TO_HUBSPOT, Strategy.WARP_WINS),
    FieldRule("company_name", "name", Direction.BIDIRECTIONAL, Strategy.LATEST_WINS),
    FieldRule("status", "warp_status", Direction.WARP_TO_HUBSPOT, Strategy.WARP_WINS),
    FieldRule("credit_limit", "warp_credit_limit", Direction.BIDIRECTIONAL, Strategy.HUBSPOT_WINS),
    FieldRule("current_balance", "warp_current_balance", Direction.WARP_TO_HUBSPOT, Strategy.WARP_WINS),
    FieldRule("services", "warp_services", Direction.WARP_TO_HUBSPOT, Strategy.WARP_WINS),
    FieldRule("payment_terms", "warp_payment_terms", Direction.HUBSPOT_TO_WARP, Strategy.HUBSPOT_WINS),
    FieldRule("contact_email", "warp_contact_email", Direction.BIDIRECTIONAL, Strategy.LATEST_WINS),
)
SEEDED_RULES: tuple[FieldRule, ...] = tuple(replace(rule, declared=FIELD_SPECS[rule.warp_field]) for rule in _SEEDED)


@dataclass(frozen=True)
class Column:
    """A `customers` column as the database describes it."""

    data_type: str  # information_schema's: text, character varying, numeric, integer, boolean, date, jsonb, ...
    nullable: bool
    numeric_scale: int | None


def customer_columns(conn: sa.Connection) -> dict[str, Column]:
    rows = conn.execute(sa.text(
        "SELECT column_name, data_type, is_nullable = 'YES', numeric_scale FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = 'customers'")).all()
    return {name: Column(data_type, bool(nullable), scale) for name, data_type, nullable, scale in rows}


# Which database column types can hold each field type's values.
COLUMN_TYPES: Mapping[FieldType, frozenset[str]] = {
    FieldType.BAN: frozenset({"text", "character varying"}),
    FieldType.STRING: frozenset({"text", "character varying"}),
    FieldType.EMAIL: frozenset({"text", "character varying"}),
    FieldType.ENUMERATION: frozenset({"text", "character varying"}),
    FieldType.AMOUNT: frozenset({"numeric"}),
    FieldType.SERVICES: frozenset({"jsonb"}),
    FieldType.INTEGER: frozenset({"smallint", "integer", "bigint"}),
    FieldType.BOOLEAN: frozenset({"boolean"}),
    FieldType.DATE: frozenset({"date"}),
}

RULE_COLUMNS = ("warp_field, hubspot_property, direction, strategy, field_type, options, scale, minimum")


def load_rules(conn: sa.Connection) -> FieldRules:
    """Read `hubspot_field_mappings` into typed rules; raise FieldRuleError naming every unusable row."""
    rows = conn.execute(
        sa.text(
            f"SELECT {RULE_COLUMNS}, "
            "greatest(created_at, (SELECT applied_at FROM warp_schema_migrations WHERE version = '007')) "
            "AS watched_since FROM hubspot_field_mappings ORDER BY warp_field"
        )
    ).mappings().all()
    return rules_from_rows(rows, customer_columns(conn))


def _a(word: str) -> str:
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def declared_spec(row: Mapping[str, object], column: Column) -> FieldSpec:
    """The spec a mapping row declares, checked against its column; ValueError says why they cannot agree."""
    name = str(row["warp_field"])
    kind = FieldType(str(row["field_type"]))
    if (kind is FieldType.BAN) != (name == "ban"):
        raise ValueError("the ban type belongs to the ban column alone")
    if column.data_type not in COLUMN_TYPES[kind]:
        raise ValueError(f"{_a(kind.value)} field cannot live in {_a(column.data_type)} column "
                         f"(it needs {' or '.join(sorted(COLUMN_TYPES[kind]))})")
    options = tuple(str(option) for option in (row.get("options") or ()))  # type: ignore[union-attr]
    if kind in (FieldType.ENUMERATION, FieldType.SERVICES) and not options:
        raise ValueError(f"{_a(kind.value)} field needs its options")
    scale = row.get("scale")
    if kind is FieldType.AMOUNT and column.numeric_scale is not None and scale != column.numeric_scale:
        raise ValueError(f"the row says {scale} decimals, the column keeps {column.numeric_scale}")
    minimum = row.get("minimum")
    # An empty set of flags is a value (all off), whatever the column's NULL rule.
    return FieldSpec(name, kind, options, nullable=column.nullable or kind is FieldType.SERVICES,
                     minimum=None if minimum is None else Decimal(str(minimum)),
                     scale=int(scale) if isinstance(scale, int) else 2)  # type: ignore[arg-type]


def rules_from_rows(rows: Iterable[Mapping[str, object]], columns: Mapping[str, Column]) -> FieldRules:
    """Mapping rows (RULE_COLUMNS and watched_since) as typed rules, each checked against its `customers` column;
    FieldRuleError names every unusable row (the live table's and a draft's)."""
    problems: list[str] = []
    rules: list[FieldRule] = []
    for row in rows:
        warp_field = str(row["warp_field"])
        column = columns.get(warp_field)
        if column is None:
            problems.append(f"{warp_field!r} is not a column of customers")
            continue
        if warp_field in NEVER_MAPPED:
            problems.append(f"{warp_field!r} is not a field warp-sync can sync")
            continue
        watched_since = row.get("watched_since")
        try:
            rule = FieldRule(warp_field, str(row["hubspot_property"]), Direction(row["direction"]),
                             Strategy(row["strategy"]), watched_since if isinstance(watched_since, datetime) else None,
                             declared_spec(row, column))
        except ValueError as exc:
            problems.append(f"{warp_field!r}: {exc}")
            continue
        rules.append(rule)
    if problems:
        raise FieldRuleError(problems)
    return FieldRules(rules)
