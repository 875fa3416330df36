"""Account information: `GET /account-info/v3/details` and `GET /account-info/v3/api-usage/daily/private-apps`.

Shapes from HubSpot's Account Info API (hubspot-api.md, section 12): the details carry `portalId`, `timeZone` and
`uiDomain`; the usage is a collection of one entry with `usageLimit`, `currentUsage`, `collectedAt` and
`resetsAt` (midnight in the account's time zone). Both need the token and use no budget (the sandbox's choice: a
client must be able to learn when a spent quota resets).
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, Response

from hubspot_sandbox.app import authenticate, json_response, sandbox_state
from hubspot_sandbox.limits import next_midnight

account = Blueprint("hubspot_account", __name__, url_prefix="/account-info/v3")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@account.get("/details")
def details() -> Response:
    state = sandbox_state()
    authenticate(state)
    config = state.config
    now = datetime.now(UTC)
    offset = now.astimezone(next_midnight(config.time_zone).tzinfo).utcoffset()
    offset_ms = int(offset.total_seconds() * 1000) if offset is not None else 0
    sign = "-" if offset_ms < 0 else "+"
    hours, minutes = divmod(abs(offset_ms) // 60_000, 60)
    return json_response({
        "portalId": config.portal_id,
        "accountType": "STANDARD",
        "timeZone": config.time_zone,
        "companyCurrency": "USD",
        "additionalCurrencies": [],
        "utcOffset": f"{sign}{hours:02d}:{minutes:02d}",
        "utcOffsetMilliseconds": offset_ms,
        "uiDomain": config.ui_domain,
        "dataHostingLocation": "na1",
    })


@account.get("/api-usage/daily/private-apps")
def daily_usage() -> Response:
    state = sandbox_state()
    authenticate(state)
    config = state.config
    return json_response({"results": [{
        "name": "private-apps-api-calls-daily",
        "usageLimit": config.daily_limit,
        "currentUsage": state.daily.used(config.time_zone),
        "collectedAt": _iso(datetime.now(UTC)),
        "fetchStatus": "SUCCESS",
        "resetsAt": _iso(next_midnight(config.time_zone)),
    }]})
