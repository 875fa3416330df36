"""Where the things a report or a review page names can be opened: a run in the Dagster UI, a customer's history and
the review queue on the review pages, a company's record in HubSpot.

Each base comes from a setting (WARP_DAGSTER_UI_URL, WARP_PUBLIC_BASE_URL) or, for HubSpot, from the account's
details (WARP_HUBSPOT_PORTAL_ID and WARP_HUBSPOT_UI_DOMAIN, else `GET /account-info/v3/details` read once and kept in
`hubspot_account`). A base that is not known gives no link (None), never a broken one; a key that is not what its
kind holds (a run id, a customer UUID, a numeric company id) gives none either.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode
from uuid import UUID

import sqlalchemy as sa

from warp_sync_pipeline.core.hubspot.errors import HubSpotError
from warp_sync_pipeline.core.settings import WarpSettings

log = logging.getLogger(__name__)

_RUN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_COMPANY_ID = re.compile(r"^[0-9]{1,20}$")
_UI_DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")

# The link kinds a report section's cells may carry (ReportSection.link_columns), each opened by one method below.
RUN, CUSTOMER, COMPANY, CONFLICTS = "run", "customer", "company", "conflicts"


@dataclass(frozen=True)
class HubSpotAccount:
    portal_id: int
    ui_domain: str
    time_zone: str | None = None

    @classmethod
    def from_details(cls, details: Mapping[str, Any]) -> HubSpotAccount | None:
        """The account as `GET /account-info/v3/details` describes it; None when it lacks a usable id or domain."""
        portal_id, ui_domain = details.get("portalId"), str(details.get("uiDomain") or "").strip().lower()
        if not isinstance(portal_id, int) or isinstance(portal_id, bool) or portal_id < 1:
            return None
        if not _UI_DOMAIN.match(ui_domain):
            return None
        zone = details.get("timeZone")
        return cls(portal_id, ui_domain, str(zone) if zone else None)


@dataclass(frozen=True)
class WebLinks:
    """The bases known to this process; every method answers a URL or None."""

    dagster_ui_url: str | None = None
    review_url: str | None = None
    hubspot: HubSpotAccount | None = None

    def run(self, run_id: object) -> str | None:
        text = str(run_id or "")
        if not (self.dagster_ui_url and _RUN_ID.match(text)):
            return None
        return f"{self.dagster_ui_url}/runs/{text}"

    def customer(self, customer_id: object) -> str | None:
        """A customer's sync history on the review pages."""
        if not self.review_url:
            return None
        try:
            uuid = UUID(str(customer_id))
        except ValueError:
            return None
        return f"{self.review_url}/review/customers/{uuid}"

    def conflicts(self, *, customer: object = None, field: object = None) -> str | None:
        """The review queue; with a BAN and a field, just that customer's conflict on that field."""
        if not self.review_url:
            return None
        query = {name: str(value) for name, value in (("customer", customer), ("field", field)) if value}
        return f"{self.review_url}/review/conflicts" + (f"?{urlencode(query)}" if query else "")

    def company(self, company_id: object) -> str | None:
        """A company's record in HubSpot (object type 0-2, companies)."""
        text = str(company_id or "")
        if self.hubspot is None or not _COMPANY_ID.match(text):
            return None
        return (f"https://{self.hubspot.ui_domain}/contacts/{self.hubspot.portal_id}/record/0-2/"
                f"{quote(text, safe='')}")

    def open(self, kind: str, keys: Mapping[str, Any]) -> str | None:
        """The link of one report cell: `keys` are the row's (ReportSection.keys)."""
        if kind == CUSTOMER:
            return self.customer(keys.get(CUSTOMER))
        if kind == COMPANY:
            return self.company(keys.get(COMPANY))
        if kind == RUN:
            return self.run(keys.get(RUN))
        if kind == CONFLICTS:
            return self.conflicts(customer=keys.get("ban"), field=keys.get("field"))
        return None


_ACCOUNT = sa.table("hubspot_account", sa.column("only_row"), sa.column("portal_id"), sa.column("ui_domain"),
                    sa.column("time_zone"), sa.column("read_at"))


def stored_account(engine: sa.Engine) -> HubSpotAccount | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(_ACCOUNT.c.portal_id, _ACCOUNT.c.ui_domain, _ACCOUNT.c.time_zone)).first()
    return HubSpotAccount(int(row.portal_id), str(row.ui_domain), row.time_zone) if row else None


def hubspot_account(settings: WarpSettings, engine: sa.Engine | None = None, client: Any = None) -> HubSpotAccount | None:
    """The account links point into: the settings when both are set; else the one kept in the database; else read
    from HubSpot through `client` (anything with `account_details()`) and kept. None when none of them can say:
    a report then names companies without a link, and is sent all the same."""
    if settings.hubspot_portal_id and settings.hubspot_ui_domain:
        return HubSpotAccount(settings.hubspot_portal_id, settings.hubspot_ui_domain.lower())
    if engine is None:
        return None
    kept = stored_account(engine)
    if kept is not None or client is None:
        return kept
    try:
        account = HubSpotAccount.from_details(client.account_details())
    except HubSpotError as exc:
        log.warning("HubSpot's account details could not be read (%s): companies are shown without links", exc)
        return None
    if account is None:
        log.warning("HubSpot's account details name no portal id and UI domain: companies are shown without links")
        return None
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO hubspot_account (portal_id, ui_domain, time_zone) VALUES (:portal_id, :ui_domain, :time_zone) "
            "ON CONFLICT (only_row) DO NOTHING"),
            {"portal_id": account.portal_id, "ui_domain": account.ui_domain, "time_zone": account.time_zone})
    return account


def web_links(settings: WarpSettings, engine: sa.Engine | None = None, client: Any = None) -> WebLinks:
    """Every base this process knows (see `hubspot_account` for the HubSpot one)."""
    return WebLinks(dagster_ui_url=settings.dagster_ui_url, review_url=settings.public_base_url,
                    hubspot=hubspot_account(settings, engine, client))
