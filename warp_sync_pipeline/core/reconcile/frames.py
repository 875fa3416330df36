"""Column names and row kinds of the reconciliation's frames, shared by every step.

Per mapped WARP field `f` (the decision columns are decision.py's, so decide_frame reads them as they are):

    f__warp_raw            WARP's value as text (`col::text`), exactly as pulled (the compare-and-set key)
    f__hubspot_raw         HubSpot's string, exactly as pulled
    f__warp, f__hubspot    comparable text ("" = empty; NA = a value the other side cannot take)
    f__agreed              the last value both sides agreed on (NA = never agreed)
    f__warp_changed_at     when WARP's value last changed (LATEST_WINS fields; NaT = unknown)
    f__hubspot_changed_at  when HubSpot's value last changed (from property history; NaT = unknown)
    f__state_warp, f__state_warp_changed_at   the field state's last known WARP value and its time
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from warp_sync_pipeline.core.decision import column
from warp_sync_pipeline.core.fields import Direction, FieldRule, FieldRules, Strategy
from warp_sync_pipeline.core.hubspot.properties import BAN_PROPERTY as BAN_PROPERTY  # the frame's BAN column
from warp_sync_pipeline.core.normalize import FieldSpec, FieldType

# --- identity columns ---------------------------------------------------------------------------------------
CUSTOMER_ID = "customer_id"
BAN = "ban"
COMPANY_ID = "company_id"
LINK_STATUS = "link_status"
CUSTOMER_UPDATED_AT = "customer_updated_at"
CUSTOMER_CREATED_AT = "customer_created_at"
COMPANY_UPDATED_AT = "company_updated_at"
COMPANY_NAME = "company_name_shown"  # a name to show in reports (WARP's, else HubSpot's)
KIND = "kind"
MATCH = "match"
DETAIL = "detail"
# The fields of a customer with an open conflict, as ",field,field," (NA: none). An in-sync field listed here is
# an agreement to record even when it equals the agreed value: recording it closes the conflict it settles.
OPEN_CONFLICTS = "open_conflicts"
MERGED_FROM = "merged_from"  # company_merged rows: the ids HubSpot merged into the company (hs_merged_object_ids)



def open_conflict_mask(values: pd.Series, field: str) -> np.ndarray:
    """Rows (of an OPEN_CONFLICTS column) whose customer has an open conflict on this field."""
    mask = np.zeros(len(values), dtype=bool)
    listed = np.flatnonzero(values.notna().to_numpy(dtype=bool))
    if len(listed):
        token = f",{field},"
        mask[listed] = [token in text for text in values.to_numpy(dtype=object)[listed]]
    return mask


# The HubSpot property holding the BAN (a unique property; the ban fallback joins on it).

# --- parts of a field's columns -----------------------------------------------------------------------------
WARP_RAW = "warp_raw"
HUBSPOT_RAW = "hubspot_raw"
STATE_WARP = "state_warp"
STATE_WARP_CHANGED_AT = "state_warp_changed_at"


def col(field: str, part: str) -> str:
    return column(field, part)


# --- row kinds ----------------------------------------------------------------------------------------------
PAIR = "pair"  # a customer and its company, compared field by field
CUSTOMER_WITHOUT_COMPANY = "customer_without_company"
COMPANY_MISSING = "company_missing"  # linked to a company HubSpot no longer lists (deleted or merged)
LINK_NEEDS_REVIEW = "link_needs_review"  # hubspot_link_status deleted or review: a person decides
# Linked to a company HubSpot merged into another (a new company, the old ids in its hs_merged_object_ids): the link
# follows the merge as the merge webhook would have moved it (core.links), so a lost webhook heals at night.
COMPANY_MERGED = "company_merged"
COMPANY_UNKNOWN_BAN = "company_unknown_ban"  # a company whose warp_ban WARP does not know
COMPANY_NOT_LINKED = "company_not_linked"  # its warp_ban's customer is linked to another company
DUPLICATE_BAN = "duplicate_ban"  # one warp_ban on two or more companies (one row per company)
ORPHAN_KINDS = (
    CUSTOMER_WITHOUT_COMPANY,
    COMPANY_MISSING,
    LINK_NEEDS_REVIEW,
    COMPANY_UNKNOWN_BAN,
    COMPANY_NOT_LINKED,
)
CUSTOMER_SIDE_ORPHANS = (CUSTOMER_WITHOUT_COMPANY, COMPANY_MISSING, LINK_NEEDS_REVIEW)

# Plan rows beyond the orphans and duplicates.
CHANGE = "change"  # a decision other than IN_SYNC for one field
AGREEMENT = "agreement"  # in sync, but the recorded agreed value is missing or stale
LINK = "link"  # an unlinked customer matched by BAN: store the company id

# How a pair was matched.
MATCH_LINKED = "linked"
MATCH_BAN = "ban"

# Frame attributes (DataFrame.attrs; stored with the frame by the Parquet IO manager).
ATTR_PULLED_AT = "pulled_at"
ATTR_PLANNED_AT = "planned_at"
ATTR_COUNTS = "counts"
ATTR_BRAKE = "brake"
ATTR_RULES = "rules"  # the field rules the run started with, so every step follows the same ones
ATTR_DRAFT_RULES = "draft_rules"  # a run under a rule draft (a dry run): the draft's rules, previewed beside them


def now_utc() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def parse_iso(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return moment


def equal(x: pd.Series, y: pd.Series) -> np.ndarray:
    """Element-wise equality by position where NA equals nothing (as decide_frame compares)."""
    if not (isinstance(x.dtype, pd.StringDtype) and x.dtype == y.dtype):
        x, y = x.astype("str"), y.astype("str")
    # One Arrow kernel: a missing value on either side compares as null, which counts as unequal.
    same = pc.equal(pa.array(x.array), pa.array(y.array))
    return pc.fill_null(same, False).to_numpy(zero_copy_only=False)


def text_or_none(value: Any) -> str | None:
    """A cell as plain text (None for pandas' missing markers)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, pd.Timestamp | datetime):
        return iso(value)
    return str(value)


def time_or_none(value: Any) -> datetime | None:
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, datetime):
        return value
    return parse_iso(str(value))


def jsonable_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Frame attributes as plain JSON types (Parquet stores them as JSON)."""
    return json.loads(json.dumps(attrs, default=str))


def rules_to_attr(rules: FieldRules) -> list[list[Any]]:
    return [[r.warp_field, r.hubspot_property, r.direction.value, r.strategy.value,
             None if r.watched_since is None else iso(r.watched_since), _spec_to_attr(r.declared)]
            for r in rules.values()]


def _spec_to_attr(spec: FieldSpec | None) -> dict[str, Any] | None:
    if spec is None:
        return None
    return {"type": spec.type.value, "options": list(spec.options), "nullable": spec.nullable,
            "minimum": None if spec.minimum is None else str(spec.minimum), "scale": spec.scale}


def _spec_from_attr(name: str, data: dict[str, Any] | None) -> FieldSpec | None:
    if not data:
        return None
    return FieldSpec(name, FieldType(data["type"]), tuple(data.get("options") or ()), nullable=bool(data["nullable"]),
                     minimum=None if data.get("minimum") is None else Decimal(data["minimum"]),
                     scale=int(data.get("scale") or 2))


def draft_rules_from_attr(frame: pd.DataFrame) -> FieldRules | None:
    """The rule draft a run previews (None: a run under the live rules only)."""
    raw = frame.attrs.get(ATTR_DRAFT_RULES)
    return FieldRules(_rule_from_attr(*item) for item in raw) if raw else None


def rules_from_attr(frame: pd.DataFrame) -> FieldRules:
    """The rules a frame was made under. Every step of a run follows the rules its pull started with; a frame that
    lost them (a pandas operation that drops attrs, a frame made elsewhere) is refused, never decided under
    whatever the live rules are by now."""
    from warp_sync_pipeline.core.reconcile.options import ReconcileError

    raw = frame.attrs.get(ATTR_RULES)
    if not raw:
        raise ReconcileError("RULES_MISSING", "the frame does not carry the field rules its run started with "
                                              f"(attrs: {sorted(frame.attrs)})")
    return FieldRules(_rule_from_attr(*item) for item in raw)


def _rule_from_attr(field: str, prop: str, direction: str, strategy: str, watched_since: str | None = None,
                    spec: dict[str, Any] | None = None) -> FieldRule:
    # Frames stored before watched_since (or the declared type) was carried have fewer items.
    return FieldRule(field, prop, Direction(direction), Strategy(strategy),
                     parse_iso(watched_since) if watched_since else None, _spec_from_attr(field, spec))
