"""Per-property change times from HubSpot's property history, for the companies whose LATEST_WINS values
both moved (see diff.history_needed): batch reads of 50 companies (HubSpot's cap with history)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from warp_sync_pipeline.core.hubspot import HubSpotClient, NotFound
from warp_sync_pipeline.core.reconcile.frames import COMPANY_ID

PROPERTY = "property"
CHANGED_AT = "changed_at"
HISTORY_COLUMNS = [COMPANY_ID, PROPERTY, CHANGED_AT]


class HistoryFetchError(RuntimeError):
    """Some companies' history could not be read (not a missing company: that one is simply skipped)."""

    code = "HUBSPOT_HISTORY_FAILED"


def empty_history() -> pd.DataFrame:
    return pd.DataFrame({
        COMPANY_ID: pd.Series([], dtype="str"),
        PROPERTY: pd.Series([], dtype="str"),
        CHANGED_AT: pd.Series([], dtype="datetime64[us, UTC]"),
    })


def fetch_property_history(
    client: HubSpotClient, company_ids: Sequence[str], properties: Sequence[str]
) -> pd.DataFrame:
    """One row per company and property: when the property last changed (its newest history entry).

    A company that is gone is left out (the write-back will find it gone too); any other failure raises
    HistoryFetchError, so the step's retry policy can try again rather than decide without the times.
    """
    if not company_ids or not properties:
        return empty_history()
    outcomes = client.batch_read_companies(
        list(company_ids), properties=list(properties), properties_with_history=list(properties)
    )
    rows: list[tuple[str, str, object]] = []
    failures: list[str] = []
    for outcome in outcomes:
        if outcome.company is not None:
            for name in properties:
                last = outcome.company.last_change(name)
                if last is not None:
                    rows.append((outcome.company.id, name, last.timestamp))
        elif not isinstance(outcome.error, NotFound):
            failures.append(f"{outcome.key}: {type(outcome.error).__name__}: {outcome.error}")
    if failures:
        raise HistoryFetchError(
            f"property history of {len(failures)} of {len(outcomes)} companies could not be read; first: {failures[0]}"
        )
    if not rows:
        return empty_history()
    frame = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    frame[COMPANY_ID] = frame[COMPANY_ID].astype("str")
    frame[PROPERTY] = frame[PROPERTY].astype("str")
    frame[CHANGED_AT] = pd.to_datetime(frame[CHANGED_AT], utc=True).astype("datetime64[us, UTC]")
    return frame
