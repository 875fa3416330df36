"""What a rule draft would do: both plans from the same pulled frames, compared field by field.

A run under a draft (always a dry run) pulls what both rule sets need (`rules_for_pull`: every field of either, with
change times where either decides by them); the live rules' plan is the run's own, the draft's is made here by the
same diff and the same decision function (`compute_differences`, `build_plan`). The comparison counts, per field and
for each rule set, the writes each way, the conflicts for a person and the values that cannot be copied, counts
the (field, action, reason) groups, and lists the records whose outcome differs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from warp_sync_pipeline.core.decision import Action
from warp_sync_pipeline.core.fields import FieldRule, FieldRules
from warp_sync_pipeline.core.reconcile.diff import bare, compute_differences, history_needed
from warp_sync_pipeline.core.reconcile.frames import BAN, CHANGE, COMPANY_ID, CUSTOMER_ID, KIND
from warp_sync_pipeline.core.reconcile.history import PROPERTY
from warp_sync_pipeline.core.reconcile.plan import ACTION, FIELD, HUBSPOT_PROPERTY, REASON, VALUE, build_plan
from warp_sync_pipeline.core.reconcile.pull import needs_change_times
from warp_sync_pipeline.core.wording import field_label

# Records listed by the preview (the counts cover them all).
PREVIEW_MAX_RECORDS = 500
OUTCOMES = (("to_hubspot", Action.WRITE_TO_HUBSPOT), ("to_warp", Action.WRITE_TO_WARP),
            ("conflicts", Action.OPEN_CONFLICT), ("invalid", Action.SKIP_INVALID))
NO_CHANGE = "NO_CHANGE"  # a record one plan leaves alone


def rules_for_pull(live: FieldRules, draft: FieldRules) -> FieldRules:
    """The rules a pull serving both sets follows: every field of either, each with the rule that needs the most
    (change times when either decides by them)."""
    chosen: dict[str, FieldRule] = {}
    for rules in (live, draft):
        for name, rule in rules.items():
            if name not in chosen or (needs_change_times(rule) and not needs_change_times(chosen[name])):
                chosen[name] = rule
    return FieldRules(chosen.values())


def history_to_fetch(live_differences: pd.DataFrame, live: FieldRules, draft_differences: pd.DataFrame,
                     draft: FieldRules) -> tuple[list[str], list[str]]:
    """(companies, properties) whose change times the draft needs beyond what the live run read."""
    live_ids, live_props = history_needed(live_differences, live)
    ids, props = history_needed(draft_differences, draft)
    if not ids:
        return [], []
    if set(props) <= set(live_props):
        ids = [i for i in ids if i not in set(live_ids)]
    return ids, props


@dataclass(frozen=True)
class RulePreview:
    """Both plans side by side. `fields`: field -> {"live": {...}, "draft": {...}} of OUTCOMES counts; `groups`:
    (field, action, reason) counts for each; `records`: the first PREVIEW_MAX_RECORDS whose outcome differs."""

    draft_name: str
    changed_rules: list[str]
    fields: dict[str, dict[str, dict[str, int]]]
    groups: list[dict[str, Any]]
    records: list[dict[str, Any]]
    records_total: int
    totals: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"draft": self.draft_name, "changed_rules": self.changed_rules, "fields": self.fields,
                "groups": self.groups, "records": self.records, "records_total": self.records_total,
                "totals": self.totals}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RulePreview:
        return cls(draft_name=str(data.get("draft") or ""), changed_rules=list(data.get("changed_rules") or []),
                   fields=dict(data.get("fields") or {}), groups=list(data.get("groups") or []),
                   records=list(data.get("records") or []), records_total=int(data.get("records_total") or 0),
                   totals=dict(data.get("totals") or {}))


def _changes(plan: pd.DataFrame) -> pd.DataFrame:
    plan = bare(plan)
    changes = plan[plan[KIND] == CHANGE]
    return changes.loc[:, [CUSTOMER_ID, BAN, COMPANY_ID, FIELD, HUBSPOT_PROPERTY, ACTION, REASON, VALUE]]


def _counts(changes: pd.DataFrame, fields: Sequence[str]) -> dict[str, dict[str, int]]:
    table = changes.groupby([FIELD, ACTION]).size()
    return {name: {label: int(table.get((name, action.value), 0)) for label, action in OUTCOMES} for name in fields}


def _groups(live: pd.DataFrame, draft: pd.DataFrame) -> list[dict[str, Any]]:
    keys = [FIELD, ACTION, REASON]
    joined = pd.concat([live.groupby(keys).size().rename("live"), draft.groupby(keys).size().rename("draft")],
                       axis=1).fillna(0).astype("int64").reset_index()
    return [{"field": r[FIELD], "action": r[ACTION], "reason": r[REASON], "live": int(r["live"]),
             "draft": int(r["draft"])} for r in joined.sort_values(keys).to_dict("records")]


def _moved(live: pd.DataFrame, draft: pd.DataFrame) -> pd.DataFrame:
    """Records (customer or company, field) whose action or value differs between the plans."""
    key = [CUSTOMER_ID, COMPANY_ID, FIELD]
    both = live.merge(draft, on=key, how="outer", suffixes=("_live", "_draft"))
    for side in ("_live", "_draft"):
        both[ACTION + side] = both[ACTION + side].fillna(NO_CHANGE)
    differs = (both[ACTION + "_live"] != both[ACTION + "_draft"]) | (
        both[VALUE + "_live"].fillna("\x00") != both[VALUE + "_draft"].fillna("\x00"))
    moved = both[differs].copy()
    moved[BAN] = moved[BAN + "_live"].fillna(moved[BAN + "_draft"])
    return moved.sort_values([FIELD, BAN], na_position="last")


def compare_plans(draft_name: str, changed_rules: list[str], live_plan: pd.DataFrame,
                  draft_plan: pd.DataFrame) -> RulePreview:
    live, draft = _changes(live_plan), _changes(draft_plan)
    fields = sorted(set(live[FIELD].dropna()) | set(draft[FIELD].dropna()))
    moved = _moved(live, draft)
    records = [{"customer_id": _text(r[CUSTOMER_ID]), "company_id": _text(r[COMPANY_ID]), "ban": _text(r[BAN]),
                "field": r[FIELD], "live": r[ACTION + "_live"], "live_reason": _text(r[REASON + "_live"]),
                "live_value": _text(r[VALUE + "_live"]), "draft": r[ACTION + "_draft"],
                "draft_reason": _text(r[REASON + "_draft"]), "draft_value": _text(r[VALUE + "_draft"])}
               for r in moved.head(PREVIEW_MAX_RECORDS).to_dict("records")]
    per_field_live, per_field_draft = _counts(live, fields), _counts(draft, fields)
    totals = {side: {label: sum(c[label] for c in counts.values()) for label, _ in OUTCOMES}
              for side, counts in (("live", per_field_live), ("draft", per_field_draft))}
    return RulePreview(
        draft_name=draft_name, changed_rules=changed_rules,
        fields={name: {"live": per_field_live[name], "draft": per_field_draft[name]} for name in fields},
        groups=_groups(live, draft), records=records, records_total=len(moved), totals=totals)


def _text(value: Any) -> str | None:
    return None if value is None or (isinstance(value, float) and value != value) or value is pd.NA else str(value)


def preview_draft(draft_name: str, changed_rules: list[str], *, warp: pd.DataFrame, hubspot: pd.DataFrame,
                  live_differences: pd.DataFrame, live_history: pd.DataFrame, live_plan: pd.DataFrame,
                  live: FieldRules, draft: FieldRules,
                  fetch_history: Callable[[list[str], list[str]], pd.DataFrame]) -> RulePreview:
    """The draft's plan from the run's own frames (its extra change times read through `fetch_history`), compared
    with the live plan."""
    draft_differences = compute_differences(warp, hubspot, draft)
    ids, props = history_to_fetch(live_differences, live, draft_differences, draft)
    history = bare(live_history)
    if ids:
        extra = bare(fetch_history(ids, props))
        history = pd.concat([history, extra], ignore_index=True).drop_duplicates([COMPANY_ID, PROPERTY], keep="last")
    draft_plan = build_plan(draft_differences, history, draft)
    return compare_plans(draft_name, changed_rules, live_plan, draft_plan)


def preview_markdown(preview: RulePreview) -> str:
    """The per-field counts as Markdown (Dagster's metadata: counts only, never records or values). Field names and
    codes are ours; the draft's name is checked at creation."""
    lines = [f"## Rule draft {preview.draft_name}: what would change", ""]
    lines += [f"- {line}" for line in preview.changed_rules] or ["- (the draft's rules equal the live ones)"]
    lines += ["", "| Field | To HubSpot (live / draft) | To WARP | Conflicts | Cannot copy |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for name, sides in preview.fields.items():
        cells = [f"{sides['live'][label]:,} / {sides['draft'][label]:,}" for label, _ in OUTCOMES]
        lines.append(f"| {field_label(name)} | " + " | ".join(cells) + " |")
    lines += ["", f"{preview.records_total:,} records would be treated differently under the draft."]
    return "\n".join(lines) + "\n"
