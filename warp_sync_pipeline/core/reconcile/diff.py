"""The diff: both sides joined, every mapped field normalised and compared, with vectorized operations only.

Join: a customer's explicit link (`external_ids.hubspot_company_id`) first; an unlinked customer falls back to
the company holding its BAN in `warp_ban` (only when exactly one unclaimed company holds it). A customer linked
to a company HubSpot merged away is not compared tonight: its row says which company the merge made (found by
the old id in that company's `hs_merged_object_ids`), and the write-back moves the link there. What joins
nothing is an orphan; one `warp_ban` on two companies is a duplicate.

Normalising a million values per field is most of the cost, and most values need none: a value whose raw text
equals the recorded agreed value IS that comparable value (comparable() is idempotent, and agreed values are
stored in comparable form), so only values that differ from the agreed one go through `comparable_series`.
The result keeps only the pairs that differ (or whose agreed value must be recorded), and the orphans and
duplicates; `attrs["counts"]` keeps the totals.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from warp_sync_pipeline.core.decision import AGREED, HUBSPOT, HUBSPOT_CHANGED_AT, WARP, WARP_CHANGED_AT
from warp_sync_pipeline.core.field_state import warp_changed_at_series
from warp_sync_pipeline.core.fields import FieldRule, FieldRules
from warp_sync_pipeline.core.hubspot import MERGED_IDS_PROPERTY
from warp_sync_pipeline.core.links import LinkStatus
from warp_sync_pipeline.core.normalize import BAN_PATTERN, FieldType, comparable_series
from warp_sync_pipeline.core.reconcile.frames import (
    ATTR_COUNTS,
    ATTR_PULLED_AT,
    ATTR_RULES,
    BAN,
    BAN_PROPERTY,
    COMPANY_ID,
    COMPANY_MERGED,
    COMPANY_MISSING,
    COMPANY_NAME,
    COMPANY_NOT_LINKED,
    COMPANY_UNKNOWN_BAN,
    COMPANY_UPDATED_AT,
    CUSTOMER_CREATED_AT,
    CUSTOMER_ID,
    CUSTOMER_UPDATED_AT,
    CUSTOMER_WITHOUT_COMPANY,
    DETAIL,
    DUPLICATE_BAN,
    HUBSPOT_RAW,
    KIND,
    LINK_NEEDS_REVIEW,
    LINK_STATUS,
    MATCH,
    MATCH_BAN,
    MATCH_LINKED,
    MERGED_FROM,
    OPEN_CONFLICTS,
    ORPHAN_KINDS,
    PAIR,
    STATE_WARP,
    STATE_WARP_CHANGED_AT,
    WARP_RAW,
    col,
    equal,
    iso,
    open_conflict_mask,
    parse_iso,
    rules_to_attr,
)
from warp_sync_pipeline.core.reconcile.pull import needs_change_times

# Link states a person must settle (DESIGN.md flow 2): never written, reported.
NEEDS_PERSON = (LinkStatus.DELETED.value, LinkStatus.REVIEW.value)
NAME_FIELD, NAME_PROPERTY = "company_name", "name"
TIME_DTYPE = "datetime64[us, UTC]"


def field_columns(field: str) -> list[str]:
    parts = (WARP_RAW, HUBSPOT_RAW, WARP, HUBSPOT, AGREED, WARP_CHANGED_AT, HUBSPOT_CHANGED_AT)
    return [col(field, part) for part in parts]


def difference_columns(rules: FieldRules) -> list[str]:
    head = [KIND, CUSTOMER_ID, BAN, COMPANY_ID, MATCH, LINK_STATUS, CUSTOMER_UPDATED_AT, COMPANY_UPDATED_AT,
            COMPANY_NAME, DETAIL, MERGED_FROM, OPEN_CONFLICTS]
    return head + [name for field in rules for name in field_columns(field)]


def _time_columns(rules: FieldRules) -> set[str]:
    return {CUSTOMER_UPDATED_AT, COMPANY_UPDATED_AT} | {
        col(f, part) for f in rules for part in (WARP_CHANGED_AT, HUBSPOT_CHANGED_AT)
    }


# --- join helpers -------------------------------------------------------------------------------------------


def company_id_numbers(values: pd.Series) -> np.ndarray | None:
    """Company ids as int64 when every one is a canonical whole number (HubSpot's are); else None."""
    array = pa.array(values.astype("str").array)
    # Canonical digits only: "007" and "7" are different ids, though both read as 7.
    if array.null_count or not pc.all(pc.match_substring_regex(array, r"^(0|[1-9][0-9]{0,17})$")).as_py():
        return None
    return pc.cast(array, pa.int64()).to_numpy(zero_copy_only=False)


def normalised_bans(raw: pd.Series) -> pd.Series:
    """comparable() of every warp_ban. A value that already is ZT- and nine digits is its own comparable form
    (comparable strips, then checks that very pattern), so only the others go through the normaliser."""
    array = pa.array(raw.astype("str").array)
    canonical = pc.fill_null(pc.match_substring_regex(array, f"^{BAN_PATTERN.pattern}$"), False)
    canonical = canonical.to_numpy(zero_copy_only=False)
    out = pd.Series(raw.array, dtype="str").reset_index(drop=True)
    if not canonical.all():
        others = np.flatnonzero(~canonical)
        out = _replaced(out.where(canonical), ~canonical, comparable_series("ban", raw.take(others)))
    return out


def ban_numbers(bans: pd.Series) -> np.ndarray:
    """Valid BANs (ZT- and nine digits) as int64: hashing numbers beats hashing their text."""
    return pc.cast(pc.utf8_slice_codeunits(pa.array(bans.array), 3), pa.int64()).to_numpy(zero_copy_only=False)


def positions(haystack: pd.Series, needles: pd.Series) -> np.ndarray:
    """Where each needle sits in `haystack` (unique values), -1 when absent. Hashing int64 ids is ~20x faster
    than hashing their text, so numeric ids take that road."""
    if len(needles) == 0:
        return np.empty(0, dtype=np.int64)
    hay, nee = company_id_numbers(haystack), company_id_numbers(needles)
    if hay is not None and nee is not None:
        return pd.Index(hay).get_indexer(nee)
    return pd.Index(haystack.to_numpy(dtype=object)).get_indexer(needles.to_numpy(dtype=object))


def bare(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame without its attrs: pandas deep-copies attrs into every column and slice taken from a frame,
    which costs more than the work itself when there are hundreds of them."""
    out = frame.copy(deep=False)
    out.attrs = {}
    return out


def _take(values: pd.Series, where: np.ndarray) -> pd.Series:
    return values.take(where).reset_index(drop=True)


def _every_row_in_order(where: np.ndarray, length: int) -> bool:
    return len(where) == length and bool(np.all(where == np.arange(length)))


def hubspot_number_form(agreed: pd.Series) -> pd.Series:
    """How HubSpot writes the amount `agreed` (comparable text, always two decimals): it keeps numbers as
    numbers, so 1500.50 reads back "1500.5" and 1500.00 "1500". A HubSpot string equal to this form is a valid
    amount of the same value, hence comparable to `agreed` exactly; any other string is normalised."""
    array = pa.array(agreed.astype("str").array)
    has_point = pc.fill_null(pc.match_substring(array, "."), False)
    trimmed = pc.utf8_rtrim(pc.utf8_rtrim(array, characters="0"), characters=".")
    return _text_series(pc.if_else(has_point, trimmed, array), agreed.index)


_STR = pd.StringDtype("pyarrow", na_value=np.nan)  # pandas' default `str`
_STR_TYPES = {pa.large_string(): _STR, pa.string(): _STR}


def _replaced(base: pd.Series, mask: np.ndarray, values: pd.Series) -> pd.Series:
    """`base` with its `mask` rows replaced by `values` (in order), as a `str` Series. Arrow does it in one
    pass; pandas' masked assignment to an Arrow-backed column is several times slower."""
    if not mask.any():
        return base.astype("str")
    replaced = pc.replace_with_mask(
        pa.array(base.astype("str").array), pa.array(mask), pa.array(values.astype("str").array)
    )
    return _text_series(replaced, base.index)


def _text_series(values: pa.Array, index: pd.Index) -> pd.Series:
    """An Arrow string array as a `str` Series on `index`, by position (a Series built from another Series
    would be aligned by label instead)."""
    return pd.Series(values.to_pandas(types_mapper=_STR_TYPES.get).array, index=index)


# --- the diff -----------------------------------------------------------------------------------------------


def compute_differences(warp: pd.DataFrame, hubspot: pd.DataFrame, rules: FieldRules) -> pd.DataFrame:
    """Join, normalise and compare; one row per differing pair, orphan or duplicated company.

    `warp` and `hubspot` are the frames the pulls return. attrs: pulled_at (the older pull), counts, fields.
    """
    pulled = [parse_iso(f.attrs[ATTR_PULLED_AT]) for f in (warp, hubspot) if f.attrs.get(ATTR_PULLED_AT)]
    warp, hubspot = bare(warp), bare(hubspot)
    n_warp, n_hub = len(warp), len(hubspot)
    counts: dict[str, int] = {"customers": n_warp, "companies": n_hub}

    link_status = warp[LINK_STATUS]
    needs_person = link_status.isin(NEEDS_PERSON).to_numpy(dtype=bool)
    has_id = warp[COMPANY_ID].notna().to_numpy(dtype=bool)
    has_company = has_id & ~needs_person
    hub_pos = np.full(n_warp, -1, dtype=np.int64)
    with_company = np.flatnonzero(has_company)
    with ThreadPoolExecutor(max_workers=2) as pool:  # independent, and mostly Arrow kernels
        # The BAN each company holds, normalised: the fallback joins on it and duplicates are found by it.
        bans = pool.submit(normalised_bans, hubspot[BAN_PROPERTY])
        found_at = pool.submit(positions, hubspot[COMPANY_ID], warp[COMPANY_ID].take(with_company))
        hub_ban, hub_pos[with_company] = bans.result(), found_at.result()
    ban_ok = hub_ban.notna().to_numpy(dtype=bool)
    # A company without a warp_ban is not WARP's (HubSpot holds prospects too); one with a bad one is reported.
    ban_missing = ~ban_ok
    if ban_missing.any():
        raw = hubspot[BAN_PROPERTY].take(np.flatnonzero(ban_missing))
        ban_missing[np.flatnonzero(ban_missing)] = (raw.isna() | (raw.str.strip() == "")).to_numpy(dtype=bool)
    ban_invalid = ~ban_ok & ~ban_missing
    duplicate = np.zeros(n_hub, dtype=bool)
    if ban_ok.any():
        holders = np.flatnonzero(ban_ok)
        duplicate[holders] = pd.Series(ban_numbers(hub_ban.take(holders))).duplicated(keep=False).to_numpy(dtype=bool)

    linked = has_company & (hub_pos >= 0)
    missing = has_company & (hub_pos < 0)
    merged, survivors = _merged_away(warp, hubspot, np.flatnonzero(missing))
    missing[merged] = False

    claimed = np.zeros(n_hub, dtype=bool)
    claimed[hub_pos[linked]] = True
    claimed[survivors] = True  # the merge's company is taken by the customers following it
    # The BAN fallback: unlinked customers, matched to an unclaimed company that alone holds their BAN.
    unlinked = np.flatnonzero(~has_id & ~needs_person)
    candidates = np.flatnonzero(ban_ok & ~duplicate & ~claimed)
    found = pd.Index(hub_ban.take(candidates).to_numpy(dtype=object)).get_indexer(
        warp[BAN].take(unlinked).to_numpy(dtype=object)
    )
    by_ban = unlinked[found >= 0]
    hub_pos[by_ban] = candidates[found[found >= 0]]
    claimed[hub_pos[by_ban]] = True
    without_company = unlinked[found < 0]

    pair_rows = np.sort(np.concatenate([np.flatnonzero(linked), by_ban]))
    matched_by_ban = np.zeros(n_warp, dtype=bool)
    matched_by_ban[by_ban] = True
    counts.update(
        pairs=len(pair_rows),
        pairs_linked=int(linked.sum()),
        pairs_matched_by_ban=len(by_ban),
    )

    pairs, pair_counts = _compare_pairs(warp, hubspot, rules, pair_rows, hub_pos[pair_rows],
                                        matched_by_ban[pair_rows])
    counts.update(pair_counts)

    extra = _orphans_and_duplicates(
        warp, hubspot, rules,
        _CompanyBans(hub_ban=hub_ban, ok=ban_ok, invalid=ban_invalid, duplicate=duplicate, claimed=claimed,
                     customer_company=hub_pos),
        _Unpaired(missing=np.flatnonzero(missing), needs_person=np.flatnonzero(needs_person),
                  without_company=without_company),
    )
    if len(merged):
        extra = pd.concat([extra, _merge_rows(warp, hubspot, rules, merged, survivors)], ignore_index=True)
    for kind in (*ORPHAN_KINDS, DUPLICATE_BAN, COMPANY_MERGED):
        counts[kind] = int((extra[KIND] == kind).sum()) if len(extra) else 0
    counts["duplicate_bans"] = int(hub_ban[duplicate].nunique()) if duplicate.any() else 0
    counts["companies_without_ban"] = int((~claimed & ban_missing).sum())

    frame = _conform(pd.concat([pairs, extra], ignore_index=True), rules)
    frame.attrs = {
        ATTR_PULLED_AT: iso(min(pulled)) if pulled else None,
        ATTR_COUNTS: counts,
        ATTR_RULES: rules_to_attr(rules),
    }
    return frame


def _compare_pairs(
    warp: pd.DataFrame,
    hubspot: pd.DataFrame,
    rules: FieldRules,
    warp_rows: np.ndarray,
    hub_rows: np.ndarray,
    by_ban: np.ndarray,
) -> tuple[pd.DataFrame, dict[str, int]]:
    n = len(warp_rows)
    differs_any = np.zeros(n, dtype=bool)
    agreement_any = np.zeros(n, dtype=bool)
    fields_differing = 0
    compared: dict[str, tuple[np.ndarray, pd.Series, pd.Series]] = {}
    in_order = _every_row_in_order(warp_rows, len(warp))  # usually: every customer has its company

    hub_in_order = _every_row_in_order(hub_rows, len(hubspot))  # when the pulls hold matching orders

    def warp_column(name: str) -> pd.Series:
        return warp[name].reset_index(drop=True) if in_order else _take(warp[name], warp_rows)

    def hub_column(name: str) -> pd.Series:
        return hubspot[name].reset_index(drop=True) if hub_in_order else _take(hubspot[name], hub_rows)

    # Frames pulled before the column existed have none: no field is in review for them.
    has_reviews = OPEN_CONFLICTS in warp.columns and bool(warp[OPEN_CONFLICTS].notna().any())
    no_reviews = np.zeros(n, dtype=bool)

    def compare(rule: FieldRule) -> tuple[np.ndarray, pd.Series, pd.Series, np.ndarray, np.ndarray]:
        field = rule.warp_field
        w_raw = warp_column(col(field, WARP_RAW))
        h_raw = hub_column(rule.hubspot_property)
        agreed = warp_column(col(field, AGREED))
        w_fast = equal(w_raw, agreed)
        h_fast = equal(h_raw, agreed)
        if rule.spec.type is FieldType.AMOUNT:
            other = np.flatnonzero(~h_fast)
            h_fast[other] = equal(_take(h_raw, other), hubspot_number_form(_take(agreed, other)))
        in_review = open_conflict_mask(warp_column(OPEN_CONFLICTS), field) if has_reviews else no_reviews
        # Rows where both raw values are the agreed text are equal and valid: nothing to normalise (unless a
        # conflict is open there, which their agreement settles).
        todo = np.flatnonzero(~(w_fast & h_fast) | in_review)
        w_val = _comparable_where(rule, w_raw, agreed, w_fast, todo)
        h_val = _comparable_where(rule, h_raw, agreed, h_fast, todo)
        differs = ~equal(w_val, h_val)
        stale = ~differs & (~equal(agreed.take(todo).reset_index(drop=True), w_val) | in_review[todo])
        return todo, w_val, h_val, differs, stale

    # Fields are independent and their work is mostly in Arrow and numpy kernels, which release the GIL.
    with ThreadPoolExecutor(max_workers=max(1, min(len(rules), os.cpu_count() or 1))) as pool:
        results = dict(zip(rules, pool.map(compare, rules.values()), strict=True))
    for field, (todo, w_val, h_val, differs, stale) in results.items():
        differs_any[todo[differs]] = True
        agreement_any[todo[stale]] = True
        fields_differing += int(differs.sum())
        compared[field] = (todo, w_val, h_val)

    selected = np.flatnonzero(differs_any | agreement_any)
    counts = {
        "pairs_in_sync": n - int(differs_any.sum()),
        "pairs_differing": int(differs_any.sum()),
        "pairs_recording_agreement": int((agreement_any & ~differs_any).sum()),
        "fields_differing": fields_differing,
    }
    rows = warp_rows[selected]
    hubs = hub_rows[selected]
    out: dict[str, object] = {
        KIND: PAIR,
        CUSTOMER_ID: _take(warp[CUSTOMER_ID], rows),
        BAN: _take(warp[BAN], rows),
        COMPANY_ID: _take(hubspot[COMPANY_ID], hubs),
        MATCH: np.where(by_ban[selected], MATCH_BAN, MATCH_LINKED),
        LINK_STATUS: _take(warp[LINK_STATUS], rows),
        CUSTOMER_UPDATED_AT: _take(warp[CUSTOMER_UPDATED_AT], rows),
        COMPANY_UPDATED_AT: _take(hubspot[COMPANY_UPDATED_AT], hubs),
        COMPANY_NAME: _shown_names(warp, hubspot, rules, rows, hubs),
        OPEN_CONFLICTS: (_take(warp[OPEN_CONFLICTS], rows) if has_reviews
                         else pd.Series(None, index=range(len(rows)), dtype="str")),
    }
    updated = out[CUSTOMER_UPDATED_AT]
    for field, rule in rules.items():
        todo, w_val, h_val = compared[field]
        agreed = _take(warp[col(field, AGREED)], rows)
        where = np.full(n, -1, dtype=np.int64)
        where[todo] = np.arange(len(todo))
        slot = where[selected]
        out[col(field, WARP_RAW)] = _take(warp[col(field, WARP_RAW)], rows)
        out[col(field, HUBSPOT_RAW)] = _take(hubspot[rule.hubspot_property], hubs)
        w_sel, h_sel = _overlay(agreed, w_val, slot), _overlay(agreed, h_val, slot)
        out[col(field, WARP)] = w_sel
        out[col(field, HUBSPOT)] = h_sel
        out[col(field, AGREED)] = agreed
        out[col(field, WARP_CHANGED_AT)] = _warp_changed_at(warp, field, rule, rows, w_sel, updated)
        out[col(field, HUBSPOT_CHANGED_AT)] = pd.Series(pd.NaT, index=range(len(rows)), dtype=TIME_DTYPE)
    return pd.DataFrame(out, index=pd.RangeIndex(len(rows))), counts


def _comparable_where(
    rule: FieldRule, raw: pd.Series, agreed: pd.Series, fast: np.ndarray, todo: np.ndarray
) -> pd.Series:
    """Comparable values of the `todo` rows: the agreed text where the raw value is it, else normalised."""
    values = agreed.take(todo).reset_index(drop=True)
    slow = ~fast[todo]
    if slow.any():
        values = _replaced(values, slow, normalised(rule, raw.take(todo[slow])))
    return values


# Types with a handful of distinct values: normalised once per distinct value (Arrow's dictionary encoding
# finds them several times faster than pandas' factorize, which comparable_series uses).
_FEW_VALUES = (FieldType.ENUMERATION, FieldType.SERVICES)
_DICTIONARY_FROM = 10_000


def normalised(rule: FieldRule, raw: pd.Series) -> pd.Series:
    """comparable_series() of `raw`, with the same result."""
    spec = rule.spec
    if spec.type not in _FEW_VALUES or len(raw) < _DICTIONARY_FROM:
        return comparable_series(spec, raw)
    encoded = pa.array(raw.astype("str").array).dictionary_encode(null_encoding="encode")
    distinct = comparable_series(spec, _text_series(encoded.dictionary, pd.RangeIndex(len(encoded.dictionary))))
    values = pc.take(pa.array(distinct.astype("str").array), encoded.indices)
    return _text_series(values, raw.index)


def _overlay(base: pd.Series, values: pd.Series, slot: np.ndarray) -> pd.Series:
    """`base`, with `values[slot]` where slot >= 0 (rows that were normalised)."""
    hit = slot >= 0
    return _replaced(base, hit, values.take(slot[hit]))


def _warp_changed_at(
    warp: pd.DataFrame, field: str, rule: FieldRule, rows: np.ndarray, current: pd.Series, updated: pd.Series
) -> pd.Series:
    """When WARP's value changed (LATEST_WINS fields only): field_state's one rule, vectorized."""
    if not needs_change_times(rule):
        return pd.Series(pd.NaT, index=range(len(rows)), dtype=TIME_DTYPE)
    return warp_changed_at_series(
        _take(warp[col(field, STATE_WARP)], rows), _take(warp[col(field, STATE_WARP_CHANGED_AT)], rows), current,
        created_at=_take(warp[CUSTOMER_CREATED_AT], rows), updated_at=updated.astype(TIME_DTYPE),
        watched_since=rule.watched_since)


def _shown_names(
    warp: pd.DataFrame, hubspot: pd.DataFrame, rules: FieldRules, rows: np.ndarray, hubs: np.ndarray
) -> pd.Series:
    if NAME_FIELD in rules:
        return _take(warp[col(NAME_FIELD, WARP_RAW)], rows)
    if NAME_PROPERTY in hubspot.columns:
        return _take(hubspot[NAME_PROPERTY], hubs)
    return pd.Series([None] * len(rows), dtype="str")


def _merged_away(warp: pd.DataFrame, hubspot: pd.DataFrame, missing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Of the customers whose linked company was not pulled, those whose company id HubSpot lists in a pulled
    company's `hs_merged_object_ids`: their rows, and the merged company's row for each."""
    nothing = np.empty(0, dtype=np.int64)
    if not len(missing) or MERGED_IDS_PROPERTY not in hubspot.columns:
        return nothing, nothing
    merged_ids = hubspot[MERGED_IDS_PROPERTY].astype("str")
    holders = np.flatnonzero(merged_ids.notna().to_numpy(dtype=bool) & (merged_ids.str.strip() != "").to_numpy(
        dtype=bool, na_value=False))
    if not len(holders):
        return nothing, nothing
    # One row per (old id, company it went into); ids are few (merges are rare), so plain pandas is enough.
    old_ids = pd.Series(merged_ids.take(holders).to_numpy(dtype=object), index=holders).str.split(";").explode()
    old_ids = old_ids.str.strip()
    old_ids = old_ids[old_ids.notna() & (old_ids != "")]
    old_ids = old_ids[~old_ids.duplicated(keep="first")]
    found = pd.Index(old_ids.to_numpy(dtype=object)).get_indexer(
        warp[COMPANY_ID].take(missing).astype("str").to_numpy(dtype=object))
    return missing[found >= 0], old_ids.index.to_numpy(dtype=np.int64)[found[found >= 0]]


def _merge_rows(warp: pd.DataFrame, hubspot: pd.DataFrame, rules: FieldRules, rows: np.ndarray,
                survivors: np.ndarray) -> pd.DataFrame:
    old, new = _take(warp[COMPANY_ID], rows), _take(hubspot[COMPANY_ID], survivors)
    return pd.DataFrame({
        KIND: COMPANY_MERGED,
        CUSTOMER_ID: _take(warp[CUSTOMER_ID], rows),
        BAN: _take(warp[BAN], rows),
        COMPANY_ID: new,
        LINK_STATUS: _take(warp[LINK_STATUS], rows),
        CUSTOMER_UPDATED_AT: _take(warp[CUSTOMER_UPDATED_AT], rows),
        COMPANY_UPDATED_AT: _take(hubspot[COMPANY_UPDATED_AT], survivors),
        COMPANY_NAME: _shown_names(warp, hubspot, rules, rows, survivors),
        MERGED_FROM: _take(hubspot[MERGED_IDS_PROPERTY], survivors),
        DETAIL: [f"HubSpot merged its company {o} into company {n}: the link follows the merge"
                 for o, n in zip(old, new, strict=True)],
    })


@dataclass(frozen=True)
class _CompanyBans:
    """HubSpot's companies by their warp_ban (row-aligned with the HubSpot frame), and the customers' companies."""

    hub_ban: pd.Series  # each company's BAN, comparable
    ok: np.ndarray  # a valid BAN
    invalid: np.ndarray  # a BAN that is not one
    duplicate: np.ndarray  # a BAN other companies carry too
    claimed: np.ndarray  # paired with a customer
    customer_company: np.ndarray  # per customer: the row of its company (-1: none)


@dataclass(frozen=True)
class _Unpaired:
    """Customers (WARP rows) left without a pair, by why."""

    missing: np.ndarray  # linked to a company HubSpot does not list
    needs_person: np.ndarray  # a link state a person settles
    without_company: np.ndarray  # no company carries their BAN (or several do)


def _orphans_and_duplicates(
    warp: pd.DataFrame, hubspot: pd.DataFrame, rules: FieldRules, bans: _CompanyBans, unpaired: _Unpaired,
) -> pd.DataFrame:
    hub_ban, ban_ok, ban_invalid, duplicate, claimed, hub_pos = (
        bans.hub_ban, bans.ok, bans.invalid, bans.duplicate, bans.claimed, bans.customer_company)
    missing, needs_person, without_company = unpaired.missing, unpaired.needs_person, unpaired.without_company
    parts: list[pd.DataFrame] = []
    warp_names = warp[col(NAME_FIELD, WARP_RAW)] if NAME_FIELD in rules else pd.Series([None] * len(warp), dtype="str")
    hub_names = hubspot[NAME_PROPERTY] if NAME_PROPERTY in hubspot.columns else pd.Series([None] * len(hubspot), dtype="str")
    duplicate_bans = set(hub_ban[duplicate].tolist())

    def customers(kind: str, rows: np.ndarray, details: Sequence[str | None]) -> None:
        if len(rows):
            parts.append(pd.DataFrame({
                KIND: kind,
                CUSTOMER_ID: _take(warp[CUSTOMER_ID], rows),
                BAN: _take(warp[BAN], rows),
                COMPANY_ID: _take(warp[COMPANY_ID], rows),
                LINK_STATUS: _take(warp[LINK_STATUS], rows),
                CUSTOMER_UPDATED_AT: _take(warp[CUSTOMER_UPDATED_AT], rows),
                COMPANY_NAME: _take(warp_names, rows),
                DETAIL: list(details),
            }))

    customers(COMPANY_MISSING, missing, ["linked company is not among HubSpot's active companies (deleted or merged)"]
              * len(missing))
    customers(LINK_NEEDS_REVIEW, needs_person,
              [f"hubspot_link_status is {s}: a person decides" for s in warp[LINK_STATUS].take(needs_person)])
    customers(CUSTOMER_WITHOUT_COMPANY, without_company, [
        "its BAN is on more than one company (see duplicates)" if ban in duplicate_bans else "no company has its BAN"
        for ban in warp[BAN].take(without_company)
    ])

    # Companies no customer claimed, that carry a BAN (HubSpot holds plenty of companies that are not WARP's).
    loose = np.flatnonzero(~claimed & ~duplicate & (ban_ok | ban_invalid))
    if len(loose):
        owner = pd.Index(warp[BAN].to_numpy(dtype=object)).get_indexer(hub_ban.take(loose).to_numpy(dtype=object))
        known = ban_ok[loose] & (owner >= 0)
        linked_to = warp[COMPANY_ID].to_numpy(dtype=object)[np.where(known, owner, 0)] if len(warp) else []
        details = [
            ("its warp_ban's customer is linked to company " + str(other)) if is_known and isinstance(other, str)
            else "its warp_ban's customer is not linked to it" if is_known
            else "no WARP customer has its warp_ban" if valid
            else "its warp_ban is not a valid BAN"
            for is_known, other, valid in zip(known, linked_to, ban_ok[loose], strict=True)
        ]
        owners = np.where(known, warp[CUSTOMER_ID].to_numpy(dtype=object)[np.where(known, owner, 0)], None) \
            if len(warp) else [None] * len(loose)
        kinds = np.where(known, COMPANY_NOT_LINKED, COMPANY_UNKNOWN_BAN).tolist()
        parts.append(_companies(hubspot, hub_names, loose, kinds, details, list(owners), hub_ban))

    dup_rows = np.flatnonzero(duplicate)
    if len(dup_rows):
        warp_index = pd.Index(warp[BAN].to_numpy(dtype=object))
        owner = warp_index.get_indexer(hub_ban.take(dup_rows).to_numpy(dtype=object))
        details, owners = [], []
        for position, who in zip(dup_rows, owner, strict=True):  # a handful of rows: a loop reads best
            if who < 0:
                details.append("no WARP customer has this BAN")
                owners.append(None)
            else:
                owners.append(warp[CUSTOMER_ID].iat[who])
                details.append("linked to the customer" if hub_pos[who] == position else "not linked to the customer")
        parts.append(_companies(hubspot, hub_names, dup_rows, [DUPLICATE_BAN] * len(dup_rows), details, owners,
                                hub_ban))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[KIND])


def _companies(
    hubspot: pd.DataFrame,
    names: pd.Series,
    rows: np.ndarray,
    kinds: list[str],
    details: list[str],
    owners: list[str | None],
    hub_ban: pd.Series,
) -> pd.DataFrame:
    raw_ban = _take(hubspot[BAN_PROPERTY], rows)
    return pd.DataFrame({
        KIND: kinds,
        CUSTOMER_ID: owners,
        BAN: hub_ban.take(rows).reset_index(drop=True).fillna(raw_ban),
        COMPANY_ID: _take(hubspot[COMPANY_ID], rows),
        COMPANY_UPDATED_AT: _take(hubspot[COMPANY_UPDATED_AT], rows),
        COMPANY_NAME: _take(names, rows),
        DETAIL: details,
    })


def _conform(frame: pd.DataFrame, rules: FieldRules) -> pd.DataFrame:
    """Every column of the schema, text as `str` and times as UTC datetimes, whatever rows there are."""
    times = _time_columns(rules)
    out = {}
    for name in difference_columns(rules):
        if name not in frame.columns:
            out[name] = pd.Series(pd.NaT if name in times else None, index=range(len(frame)),
                                  dtype=TIME_DTYPE if name in times else "str")
            continue
        values = frame[name].reset_index(drop=True)
        if name in times:
            out[name] = values if values.dtype == TIME_DTYPE else pd.to_datetime(values, utc=True).astype(TIME_DTYPE)
        else:
            out[name] = values if values.dtype == _STR else values.astype("str")
    return pd.DataFrame(out, index=pd.RangeIndex(len(frame)))


# --- which companies need property history ------------------------------------------------------------------


def history_needed(differences: pd.DataFrame, rules: FieldRules) -> tuple[list[str], list[str]]:
    """(company ids, properties): LATEST_WINS fields where both sides moved from the agreed value (or none was
    agreed) and differ; only there do change times decide anything."""
    pairs = differences[differences[KIND] == PAIR]
    need = np.zeros(len(pairs), dtype=bool)
    properties: list[str] = []
    for field, rule in rules.items():
        if not needs_change_times(rule):
            continue
        w, h, a = (pairs[col(field, part)] for part in (WARP, HUBSPOT, AGREED))
        both_moved = ~equal(w, h) & ~equal(w, a) & ~equal(h, a)
        if both_moved.any():
            properties.append(rule.hubspot_property)
        need |= both_moved
    ids = list(dict.fromkeys(pairs[COMPANY_ID][need].tolist()))
    return ids, properties


def duplicate_bans(hubspot: pd.DataFrame) -> pd.Series:
    """BANs held by two or more companies, with how many hold each (empty when none)."""
    bans = comparable_series("ban", hubspot[BAN_PROPERTY])
    counts = bans[bans.notna() & (bans != "")].value_counts()
    return counts[counts > 1].astype("int64")
