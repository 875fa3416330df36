"""The words people read for warp-sync's codes: one table, used by the email, the Markdown report and the review
pages. The codes stay in the data (the run row's report, the audit trail, the CSV and JSON exports); only what a
person reads is worded here.
"""

from __future__ import annotations

from collections.abc import Mapping

from warp_sync_pipeline.core.decision import Reason
from warp_sync_pipeline.core.fields import SEEDED_RULES
from warp_sync_pipeline.core.hubspot.properties import PROPERTIES_BY_NAME

R = Reason
REASON_SENTENCES: Mapping[str, str] = {
    R.EQUAL: "Both sides agree.",
    R.ONE_WAY_FROM_WARP: "Flows from WARP only: WARP's value copied to HubSpot.",
    R.HUBSPOT_DRIFT_REVERTED: "Flows from WARP only, but HubSpot was changed: WARP's value put back.",
    R.ONE_WAY_FROM_HUBSPOT: "Flows from HubSpot only: HubSpot's value copied to WARP.",
    R.WARP_DRIFT_REVERTED: "Flows from HubSpot only, but WARP was changed: HubSpot's value put back.",
    R.ONLY_WARP_CHANGED: "Changed in WARP only: copied to HubSpot.",
    R.ONLY_HUBSPOT_CHANGED: "Changed in HubSpot only: copied to WARP.",
    R.CONFLICT_HUBSPOT_WINS: "Both sides changed; the field's rule says HubSpot wins.",
    R.CONFLICT_WARP_WINS: "Both sides changed; the field's rule says WARP wins.",
    R.CONFLICT_LATEST_WINS_WARP_NEWER: "Both sides changed; WARP's change was later.",
    R.CONFLICT_LATEST_WINS_HUBSPOT_NEWER_OR_TIE: "Both sides changed; HubSpot's change was later (or at the same time).",
    R.CONFLICT_LATEST_WINS_TIME_UNKNOWN: "Both sides changed and a change time is unknown: HubSpot's value kept.",
    R.CONFLICT_MANUAL_REVIEW: "Both sides changed; the field's rule asks a person to choose.",
    R.NO_AGREED_VALUE_HUBSPOT_WINS: "The sides differ and never agreed; the field's rule says HubSpot wins.",
    R.NO_AGREED_VALUE_WARP_WINS: "The sides differ and never agreed; the field's rule says WARP wins.",
    R.NO_AGREED_VALUE_LATEST_WINS_WARP_NEWER: "The sides differ and never agreed; WARP's value is the later one.",
    R.NO_AGREED_VALUE_LATEST_WINS_HUBSPOT_NEWER_OR_TIE: "The sides differ and never agreed; HubSpot's value is the "
                                                        "later one (or as old).",
    R.NO_AGREED_VALUE_LATEST_WINS_TIME_UNKNOWN: "The sides differ and never agreed, and a change time is unknown: "
                                                "HubSpot's value kept.",
    R.NO_AGREED_VALUE_MANUAL_REVIEW: "The sides differ and never agreed; the field's rule asks a person to choose.",
    R.WARP_VALUE_INVALID: "WARP's value cannot be written to HubSpot: not copied.",
    R.HUBSPOT_VALUE_INVALID: "HubSpot's value cannot be written to WARP: not copied.",
    # The audit trail's reason for a value a person chose (core.review.MANUAL_RESOLUTION).
    "MANUAL_RESOLUTION": "Chosen by a person on the review pages.",
}


# The report's counts as people read them, in the email, the Markdown report and the shell (the data keeps the keys).
COUNT_LABELS: Mapping[str, str] = {
    "customers_pulled": "Customers read from WARP",
    "companies_pulled": "Companies read from HubSpot",
    "pairs_compared": "Customers compared with their company",
    "pairs_in_sync": "Customers in step with their company",
    "pairs_with_differences": "Customers that differ from their company",
    "fields_differing": "Fields that differ",
    "changes_planned_to_hubspot": "Changes planned to HubSpot",
    "changes_written_to_hubspot": "Changes written to HubSpot",
    "changes_planned_to_warp": "Changes planned to WARP",
    "changes_written_to_warp": "Changes written to WARP",
    "skipped_changed_since_pull": "Skipped: changed after the pull",
    "manual_conflicts": "Conflicts waiting for a person",
    "conflicts_opened": "Conflicts opened",
    "invalid_values": "Values that cannot be copied",
    "customers_linked_by_ban": "Customers linked by BAN",
    "companies_created": "Companies created for customers without one",
    "customers_following_merges": "Customers following a HubSpot merge",
    "orphans": "Records without a counterpart",
    "duplicate_bans": "BANs held by more than one company",
    "agreements_recorded": "Agreed values recorded",
    "write_errors": "Write errors",
}


# How a conflict ended (hubspot_conflicts.resolution), as the customer page says it.
RESOLUTION_PHRASES: Mapping[str, str] = {
    "warp": "kept WARP's value",
    "hubspot": "took HubSpot's value",
    "value": "set a corrected value",
    "sides_agree": "the two sides came to agree without anyone choosing",
}


def resolution_phrase(code: object) -> str:
    text = "" if code is None else str(code)
    return RESOLUTION_PHRASES.get(text, text)


def count_label(name: str) -> str:
    """The label of a count; a count this table does not know reads as its name, capitalised."""
    if name in COUNT_LABELS:
        return COUNT_LABELS[name]
    text = name.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


# HubSpot's own label of its built-in company property warp-sync maps (ours are in core/hubspot/properties.py).
HUBSPOT_LABELS: Mapping[str, str] = {"name": "Company name",
                                     **{name: p.label for name, p in PROPERTIES_BY_NAME.items()}}
_SEEDED_PROPERTY = {rule.warp_field: rule.hubspot_property for rule in SEEDED_RULES}


def field_label(warp_field: object, hubspot_property: object = None) -> str:
    """A mapped field as people read it: the HubSpot property's label and the WARP column, "WARP credit limit
    (credit_limit)". Without the property, the seeded mapping's; a property we know no label of shows by name."""
    name = "" if warp_field is None else str(warp_field)
    if not name:
        return ""
    prop = str(hubspot_property) if hubspot_property else _SEEDED_PROPERTY.get(name)
    label = HUBSPOT_LABELS.get(prop or "", prop)
    return f"{label} ({name})" if label else name


def reason_sentence(code: object) -> str:
    """The sentence for a reason code; anything else (free text, a code this table does not know) as it is."""
    text = "" if code is None else str(code)
    return REASON_SENTENCES.get(text, text)
