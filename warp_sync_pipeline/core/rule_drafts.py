"""Rule drafts: change the field rules safely (issue 18).

A draft is a named, complete set of rules beside the live ones (`hubspot_rule_draft_fields`, the same columns and
checks as `hubspot_field_mappings`), copied from the live rules when it is made and edited field by field. It is
checked like the live rules (`fields.rules_from_rows`, plus: `ban` stays mapped to `warp_ban`). A dry run of the
nightly under it (`ReconciliationSettings.rule_draft`) shows what would move, beside the live rules' plan on the same
pull (core/reconcile/preview.py). Publishing replaces the live rows in one transaction: every flow reads the rules
per transaction, so they switch together; the mapping table's trigger audits each changed row with who published
(`audit.name_writer`), and the rules replaced are kept in `hubspot_rule_versions`, so a rollback publishes them back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from warp_sync_pipeline.core.audit import name_writer
from warp_sync_pipeline.core.errors import Failure, ServiceError
from warp_sync_pipeline.core.field_properties import check_properties
from warp_sync_pipeline.core.fields import (
    Column,
    Direction,
    FieldRuleError,
    FieldRules,
    Strategy,
    customer_columns,
    load_rules,
    rules_from_rows,
)
from warp_sync_pipeline.core.normalize import FieldType

DRAFT = "draft"
PUBLISHED = "published"
DISCARDED = "discarded"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
RULE_KEYS = ("warp_field", "hubspot_property", "direction", "strategy", "field_type", "options", "scale", "minimum")
_TYPE_KEYS = ("field_type", "options", "scale", "minimum")


class RuleDraftError(ServiceError):
    """A draft that does not exist, is not open, or holds rules that cannot work (`problems`)."""


@dataclass(frozen=True)
class DraftRule:
    warp_field: str
    hubspot_property: str
    direction: str
    strategy: str
    field_type: str = "string"
    options: tuple[str, ...] = ()
    scale: int | None = None
    minimum: str | None = None

    @classmethod
    def of(cls, row: Any) -> DraftRule:
        data = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
        minimum = data.get("minimum")
        return cls(str(data["warp_field"]), str(data["hubspot_property"]), str(data["direction"]),
                   str(data["strategy"]), str(data.get("field_type") or "string"),
                   tuple(str(o) for o in data.get("options") or ()), data.get("scale"),
                   None if minimum is None else format(Decimal(str(minimum)), "f"))

    def as_dict(self) -> dict[str, Any]:
        return {key: list(value) if isinstance(value := getattr(self, key), tuple) else value for key in RULE_KEYS}

    def params(self) -> dict[str, Any]:
        """As SQL parameters (options as JSON text)."""
        return {**self.as_dict(), "options": json.dumps(list(self.options))}


@dataclass(frozen=True)
class Draft:
    id: int
    name: str
    note: str
    status: str
    created_by: str
    created_at: datetime
    published_by: str | None
    published_at: datetime | None
    rules: tuple[DraftRule, ...]

    def changes(self, live: Sequence[DraftRule]) -> list[str]:
        """How the draft differs from `live`, one line a field: added, removed, or old -> new."""
        mine, theirs = {r.warp_field: r for r in self.rules}, {r.warp_field: r for r in live}
        lines = []
        for field in sorted(mine.keys() | theirs.keys()):
            new, old = mine.get(field), theirs.get(field)
            if old is None and new is not None:
                lines.append(f"{field}: added ({_describe(new)})")
            elif new is None and old is not None:
                lines.append(f"{field}: removed (was {_describe(old)})")
            elif new != old and new is not None and old is not None:
                moved = [f"{key.replace('_', ' ')} {_part(getattr(old, key))} -> {_part(getattr(new, key))}"
                         for key in RULE_KEYS[1:] if getattr(old, key) != getattr(new, key)]
                lines.append(f"{field}: " + ", ".join(moved))
        return lines


def _part(value: object) -> str:
    if isinstance(value, tuple):
        return "|".join(value) or "none"
    return "none" if value is None else str(value)


def _describe(rule: DraftRule) -> str:
    kind = rule.field_type + (f" {'|'.join(rule.options)}" if rule.options else "") + (
        f" scale {rule.scale}" if rule.scale is not None else "") + (
        f" min {rule.minimum}" if rule.minimum is not None else "")
    return f"{rule.hubspot_property}, {rule.direction}, {rule.strategy}, {kind}"


_DRAFT_COLUMNS = "id, name, note, status, created_by, created_at, published_by, published_at"


def _check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise RuleDraftError(Failure.INVALID, "INVALID_DRAFT_NAME",
                             f"{name!r} is not a draft name: lower-case letters, digits, '-' and '_', at most 63")
    return name


def live_rules(conn: sa.Connection) -> list[DraftRule]:
    rows = conn.execute(sa.text(f"SELECT {', '.join(RULE_KEYS)} FROM hubspot_field_mappings ORDER BY warp_field"))
    return [DraftRule.of(row) for row in rows]


def _draft_row(conn: sa.Connection, name: str, *, status: str | None = DRAFT, lock: bool = False) -> sa.Row:
    """The open draft of that name (or, with `status=None`, its latest of any status)."""
    where = "name = :name" + (" AND status = :status" if status else "")
    row = conn.execute(sa.text(f"SELECT {_DRAFT_COLUMNS} FROM hubspot_rule_drafts WHERE {where} "
                               f"ORDER BY id DESC LIMIT 1{' FOR UPDATE' if lock else ''}"),
                       {"name": _check_name(name), "status": status}).first()
    if row is None:
        raise RuleDraftError(Failure.NOT_FOUND, "DRAFT_NOT_FOUND",
                             f"No {'open ' if status == DRAFT else ''}rule draft named {name!r}.")
    return row


def _read(conn: sa.Connection, row: sa.Row) -> Draft:
    rules = conn.execute(sa.text(f"SELECT {', '.join(RULE_KEYS)} FROM hubspot_rule_draft_fields "
                                 "WHERE draft_id = :id ORDER BY warp_field"), {"id": row.id})
    return Draft(row.id, row.name, row.note, row.status, row.created_by, row.created_at, row.published_by,
                 row.published_at, tuple(DraftRule.of(r) for r in rules))


def create_draft(engine: sa.Engine, name: str, actor: str, note: str = "") -> Draft:
    """A new open draft holding a copy of the live rules."""
    with engine.begin() as conn:
        try:
            draft_id = conn.execute(sa.text(
                "INSERT INTO hubspot_rule_drafts (name, note, created_by) VALUES (:name, :note, :actor) RETURNING id"),
                {"name": _check_name(name), "note": note, "actor": actor}).scalar_one()
        except sa.exc.IntegrityError:
            raise RuleDraftError(Failure.CONFLICT, "DRAFT_EXISTS", f"An open rule draft named {name!r} exists.") \
                from None
        conn.execute(sa.text(
            f"INSERT INTO hubspot_rule_draft_fields (draft_id, {', '.join(RULE_KEYS)}) "
            f"SELECT :id, {', '.join(RULE_KEYS)} FROM hubspot_field_mappings"), {"id": draft_id})
        return _read(conn, _draft_row(conn, name))


def get_draft(engine: sa.Engine | sa.Connection, name: str, *, any_status: bool = False) -> Draft:
    if isinstance(engine, sa.Connection):
        return _read(engine, _draft_row(engine, name, status=None if any_status else DRAFT))
    with engine.connect() as conn:
        return _read(conn, _draft_row(conn, name, status=None if any_status else DRAFT))


def list_drafts(engine: sa.Engine) -> list[Draft]:
    """Open drafts first, then the published and discarded ones, newest first."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT {_DRAFT_COLUMNS} FROM hubspot_rule_drafts "
                                    "ORDER BY status <> 'draft', id DESC LIMIT 200")).all()
        return [_read(conn, row) for row in rows]


def set_rule(engine: sa.Engine, name: str, warp_field: str, *, hubspot_property: str | None = None,
             direction: str | None = None, strategy: str | None = None, field_type: str | None = None,
             options: Sequence[str] | None = None, scale: int | None = None, minimum: str | None = None) -> Draft:
    """Add a field to the draft or change its rule (unnamed parts keep the draft's current values; a new field
    needs its property, direction, strategy and type). The table's checks refuse a rule that cannot be (a one-way
    field not won by its owner, an enumeration without options)."""
    with engine.begin() as conn:
        row = _draft_row(conn, name, lock=True)
        current = {r.warp_field: r for r in _read(conn, row).rules}.get(warp_field)
        values: dict[str, Any] = {
            "hubspot_property": hubspot_property or (current.hubspot_property if current else None),
            "direction": direction or (current.direction if current else None),
            "strategy": strategy or (current.strategy if current else None),
            "field_type": field_type or (current.field_type if current else None)}
        missing = [key for key, value in values.items() if not value]
        if missing:
            raise RuleDraftError(Failure.INVALID, "VALIDATION_ERROR",
                                 f"{warp_field!r} is new to the draft: give its {', '.join(missing)}.")
        _check_enums(values["direction"], values["strategy"], values["field_type"])
        retyped = field_type is not None and current is not None and field_type != current.field_type
        keep = current if current is not None and not retyped else None
        values["options"] = json.dumps(list(options if options is not None else (keep.options if keep else ())))
        values["scale"] = scale if scale is not None else (keep.scale if keep else
                                                           (2 if values["field_type"] == "amount" else None))
        values["minimum"] = minimum if minimum is not None else (keep.minimum if keep else None)
        try:
            with conn.begin_nested():
                conn.execute(sa.text(
                    "INSERT INTO hubspot_rule_draft_fields (draft_id, warp_field, hubspot_property, direction, "
                    "strategy, field_type, options, scale, minimum) VALUES (:id, :field, :hubspot_property, "
                    ":direction, :strategy, :field_type, CAST(:options AS jsonb), :scale, CAST(:minimum AS numeric)) "
                    "ON CONFLICT (draft_id, warp_field) DO UPDATE SET hubspot_property = EXCLUDED.hubspot_property, "
                    "direction = EXCLUDED.direction, strategy = EXCLUDED.strategy, field_type = EXCLUDED.field_type, "
                    "options = EXCLUDED.options, scale = EXCLUDED.scale, minimum = EXCLUDED.minimum"),
                    {"id": row.id, "field": warp_field, **values})
        except sa.exc.IntegrityError as exc:
            raise RuleDraftError(Failure.INVALID, "INVALID_FIELD_MAPPING",
                                 f"{warp_field!r} cannot have that rule: {_constraint(exc)}") from None
        conn.execute(sa.text("UPDATE hubspot_rule_drafts SET updated_at = now() WHERE id = :id"), {"id": row.id})
        return _read(conn, _draft_row(conn, name))


def _check_enums(direction: Any, strategy: Any, field_type: Any) -> None:
    try:
        Direction(direction)
        Strategy(strategy)
        FieldType(field_type)
    except ValueError as exc:
        raise RuleDraftError(Failure.INVALID, "VALIDATION_ERROR", str(exc)) from None


_CONSTRAINT_WORDS = {
    "one_way_owner": "a one-way field is won by the side it flows from (WARP_TO_HUBSPOT with WARP_WINS, "
                     "HUBSPOT_TO_WARP with HUBSPOT_WINS)",
    "ban_from_warp": "ban is mapped to warp_ban and flows from WARP only",
    "property_key": "another field of the draft maps to that HubSpot property",
    "options_given": "an enumeration or a set of flags needs its options",
    "scale_valid": "an amount has between 0 and 6 decimals, and only an amount has a scale",
}


def _constraint(exc: sa.exc.IntegrityError) -> str:
    text = str(exc.orig)
    return next((words for key, words in _CONSTRAINT_WORDS.items() if key in text), "the rule breaks a table check")


def remove_rule(engine: sa.Engine, name: str, warp_field: str) -> Draft:
    with engine.begin() as conn:
        row = _draft_row(conn, name, lock=True)
        if warp_field == "ban":
            raise RuleDraftError(Failure.INVALID, "INVALID_FIELD_MAPPING",
                                 "ban cannot be unmapped: it identifies each customer's company in HubSpot.")
        removed = conn.execute(sa.text("DELETE FROM hubspot_rule_draft_fields WHERE draft_id = :id AND "
                                       "warp_field = :field"), {"id": row.id, "field": warp_field}).rowcount
        if not removed:
            raise RuleDraftError(Failure.NOT_FOUND, "FIELD_NOT_IN_DRAFT", f"{warp_field!r} is not in draft {name!r}.")
        return _read(conn, _draft_row(conn, name))


def discard_draft(engine: sa.Engine, name: str) -> None:
    with engine.begin() as conn:
        row = _draft_row(conn, name, lock=True)
        conn.execute(sa.text("UPDATE hubspot_rule_drafts SET status = 'discarded', updated_at = now() WHERE id = :id"),
                     {"id": row.id})


def draft_rules(conn: sa.Connection, draft: Draft) -> FieldRules:
    """The draft as typed rules, checked like the live ones; a field already live keeps the time since which the
    outbox trigger has watched it, a new one has none yet (its WARP change times count as unknown)."""
    watched = {rule.warp_field: rule.watched_since for rule in load_rules(conn).values()}
    return _validated([{**r.as_dict(), "watched_since": watched.get(r.warp_field)} for r in draft.rules],
                      customer_columns(conn))


def _validated(rows: list[dict[str, Any]], columns: Mapping[str, Column]) -> FieldRules:
    try:
        rules = rules_from_rows(rows, columns)
    except FieldRuleError as exc:
        raise RuleDraftError(Failure.INVALID, "INVALID_FIELD_MAPPING", "; ".join(exc.problems),
                             problems=exc.problems) from None
    if "ban" not in rules:
        raise RuleDraftError(Failure.INVALID, "INVALID_FIELD_MAPPING",
                             "ban must stay mapped: it identifies each customer's company in HubSpot.",
                             problems=["ban is not mapped"])
    return rules


def validate_draft(engine: sa.Engine, name: str, hubspot: Any = None) -> FieldRules:
    """The draft's rules, checked like the live ones and, with a HubSpot client, against HubSpot's properties."""
    with engine.connect() as conn:
        rules = draft_rules(conn, get_draft(conn, name))
    if hubspot is not None:
        _check_hubspot(rules, hubspot)
    return rules


def _check_hubspot(rules: FieldRules, hubspot: Any) -> None:
    """Refuse rules whose HubSpot properties are missing or cannot hold their fields' values."""
    checked = check_properties(rules, hubspot)
    problems = checked.problems + [f"HubSpot has no property {name} (`warp-sync hubspot setup` creates it)"
                                   for name in checked.missing]
    if problems:
        raise RuleDraftError(Failure.INVALID, "HUBSPOT_PROPERTY_MISMATCH", "; ".join(problems), problems=problems)


@dataclass(frozen=True)
class Published:
    version_id: int  # the kept version of the rules this publish replaced (roll back to it)
    changes: list[str]


def _replace_live(conn: sa.Connection, rules: Sequence[DraftRule], actor: str) -> list[DraftRule]:
    """The live rows made equal to `rules` under a table lock (readers see the old set or the new, never a mix);
    returns the rules replaced. The table's trigger audits each row that changed, naming `actor`."""
    name_writer(conn, actor=actor)
    conn.execute(sa.text("LOCK TABLE hubspot_field_mappings IN SHARE ROW EXCLUSIVE MODE"))
    before = live_rules(conn)
    wanted = {r.warp_field: r for r in rules}
    gone = [r.warp_field for r in before if r.warp_field not in wanted]
    if gone:
        conn.execute(sa.text("DELETE FROM hubspot_field_mappings WHERE warp_field = ANY(:gone)"), {"gone": gone})
    # A property may move from one field to another: one field per property is checked at commit (sql/020).
    conn.execute(sa.text("SET CONSTRAINTS hubspot_field_mappings_property_key DEFERRED"))
    columns = "hubspot_property, direction, strategy, field_type, options, scale, minimum"
    for rule in rules:
        conn.execute(sa.text(
            f"INSERT INTO hubspot_field_mappings (warp_field, {columns}) VALUES (:warp_field, :hubspot_property, "
            ":direction, :strategy, :field_type, CAST(:options AS jsonb), :scale, CAST(:minimum AS numeric)) "
            "ON CONFLICT (warp_field) DO UPDATE SET hubspot_property = EXCLUDED.hubspot_property, "
            "direction = EXCLUDED.direction, strategy = EXCLUDED.strategy, field_type = EXCLUDED.field_type, "
            "options = EXCLUDED.options, scale = EXCLUDED.scale, minimum = EXCLUDED.minimum, updated_at = now() "
            f"WHERE ({', '.join('hubspot_field_mappings.' + c.strip() for c in columns.split(','))}) "
            f"IS DISTINCT FROM ({', '.join('EXCLUDED.' + c.strip() for c in columns.split(','))})"), rule.params())
    return before


def _keep_version(conn: sa.Connection, replaced: Sequence[DraftRule], actor: str, *, draft_id: int | None = None,
                  rolled_back_to: int | None = None) -> int:
    return int(conn.execute(sa.text(
        "INSERT INTO hubspot_rule_versions (replaced_by, draft_id, rolled_back_to, rules) "
        "VALUES (:actor, :draft_id, :rolled_back_to, CAST(:rules AS jsonb)) RETURNING id"),
        {"actor": actor, "draft_id": draft_id, "rolled_back_to": rolled_back_to,
         "rules": json.dumps([r.as_dict() for r in replaced])}).scalar_one())


def publish_draft(engine: sa.Engine, name: str, actor: str, hubspot: Any = None) -> Published:
    """Make the draft the live rules, all at once; the rules it replaces are kept for a rollback. With a HubSpot
    client, each field's property is checked first (HubSpot is read before the transaction, never inside it)."""
    if hubspot is not None:
        validate_draft(engine, name, hubspot)
    with engine.begin() as conn:
        row = _draft_row(conn, name, lock=True)
        draft = _read(conn, row)
        draft_rules(conn, draft)  # refused whole, naming each problem, before anything changes
        replaced = _replace_live(conn, draft.rules, actor)
        conn.execute(sa.text("UPDATE hubspot_rule_drafts SET status = 'published', published_by = :actor, "
                             "published_at = now(), updated_at = now() WHERE id = :id"),
                     {"actor": actor, "id": row.id})
        version = _keep_version(conn, replaced, actor, draft_id=row.id)
        load_rules(conn)  # what every flow will read next: it must load
        return Published(version, draft.changes(replaced))


@dataclass(frozen=True)
class RuleVersion:
    id: int
    replaced_at: datetime
    replaced_by: str
    draft_name: str | None
    rolled_back_to: int | None
    rules: tuple[DraftRule, ...]


def rule_versions(engine: sa.Engine, limit: int = 50) -> list[RuleVersion]:
    """The kept versions, newest first: each is the set of rules a publish (or a rollback) replaced."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT v.id, v.replaced_at, v.replaced_by, d.name, v.rolled_back_to, v.rules "
            "FROM hubspot_rule_versions v LEFT JOIN hubspot_rule_drafts d ON d.id = v.draft_id "
            "ORDER BY v.id DESC LIMIT :limit"), {"limit": limit}).all()
    return [RuleVersion(r.id, r.replaced_at, r.replaced_by, r.name, r.rolled_back_to,
                        tuple(DraftRule.of(rule) for rule in r.rules)) for r in rows]


def roll_back(engine: sa.Engine, actor: str, version_id: int | None = None) -> Published:
    """Publish a kept version again (by default the latest: the rules before the last publish); what it replaces is
    kept in turn, so a rollback can itself be rolled back."""
    with engine.begin() as conn:
        statement = ("SELECT id, rules FROM hubspot_rule_versions WHERE id = :id" if version_id is not None
                     else "SELECT id, rules FROM hubspot_rule_versions ORDER BY id DESC LIMIT 1")
        row = conn.execute(sa.text(statement + " FOR UPDATE"), {"id": version_id}).first()
        if row is None:
            raise RuleDraftError(Failure.NOT_FOUND, "VERSION_NOT_FOUND",
                                 "No kept rules to roll back to." if version_id is None
                                 else f"No kept rules version {version_id}.")
        rules = [DraftRule.of(rule) for rule in row.rules]
        _validated([r.as_dict() for r in rules], customer_columns(conn))
        replaced = _replace_live(conn, rules, actor)
        version = _keep_version(conn, replaced, actor, rolled_back_to=row.id)
        load_rules(conn)
        draft = Draft(0, "", "", "", actor, datetime.now(), None, None, tuple(rules))
        return Published(version, draft.changes(replaced))


def record_preview(engine: sa.Engine, name: str, run_id: str, preview: Any) -> None:
    """Keep what a run under the draft found (`RulePreview`), for the review pages; a re-executed run replaces
    its own."""
    with engine.begin() as conn:
        draft = _draft_row(conn, name, status=None)
        conn.execute(sa.text(
            "INSERT INTO hubspot_rule_previews (draft_id, run_id, summary) VALUES (:draft, :run, CAST(:summary AS jsonb)) "
            "ON CONFLICT (run_id) DO UPDATE SET summary = EXCLUDED.summary, created_at = now()"),
            {"draft": draft.id, "run": run_id, "summary": json.dumps(preview.to_json())})


@dataclass(frozen=True)
class StoredPreview:
    run_id: str
    created_at: datetime
    summary: dict[str, Any]


def draft_previews(engine: sa.Engine, name: str, limit: int = 10) -> list[StoredPreview]:
    """The draft's previews, newest first."""
    with engine.connect() as conn:
        draft = _draft_row(conn, name, status=None)
        rows = conn.execute(sa.text("SELECT run_id, created_at, summary FROM hubspot_rule_previews "
                                    "WHERE draft_id = :id ORDER BY created_at DESC LIMIT :limit"),
                            {"id": draft.id, "limit": limit}).all()
    return [StoredPreview(r.run_id, r.created_at, dict(r.summary)) for r in rows]


def preview_of_run(engine: sa.Engine, run_id: str) -> StoredPreview | None:
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT run_id, created_at, summary FROM hubspot_rule_previews "
                                   "WHERE run_id = :run"), {"run": run_id}).first()
    return StoredPreview(row.run_id, row.created_at, dict(row.summary)) if row else None
