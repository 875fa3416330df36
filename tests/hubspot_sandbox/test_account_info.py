"""The account's details and daily quota: shared by every app of the account, reset at midnight in its time zone,
and a DAILY 429 once spent."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.hubspot_sandbox.conftest import COMPANIES
from tests.plugins.sandbox import SandboxHandle
from warp_sync_pipeline.core.hubspot import HubSpotClient, RateLimited

USAGE = "/account-info/v3/api-usage/daily/private-apps"


def test_the_details_name_the_portal_and_its_time_zone(api: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.control.configure(time_zone="Europe/Berlin")
    details = api.get("/account-info/v3/details").json()
    assert details["portalId"] == 62515 and details["timeZone"] == "Europe/Berlin"
    assert details["uiDomain"] == "app.hubspot.com"
    assert httpx.get(sandbox.base_url + "/account-info/v3/details").status_code == 401


def test_the_usage_counts_every_call_of_the_account_and_resets_at_its_midnight(
    api: httpx.Client, sandbox: SandboxHandle,
) -> None:
    sandbox.control.configure(time_zone="Asia/Tokyo")
    before = api.get(USAGE).json()["results"][0]
    api.get(COMPANIES)
    sandbox.control.spend_daily_quota(10)  # another app of the account
    [usage] = api.get(USAGE).json()["results"]
    assert usage["currentUsage"] == before["currentUsage"] + 11  # the usage reads themselves are free
    assert usage["usageLimit"] == 250_000
    tokyo = ZoneInfo("Asia/Tokyo")
    midnight = datetime.combine(datetime.now(tokyo).date() + timedelta(days=1), datetime.min.time(), tzinfo=tokyo)
    assert datetime.fromisoformat(usage["resetsAt"].replace("Z", "+00:00")) == midnight


def test_a_spent_quota_answers_hubspots_daily_429_which_the_client_never_retries(
    api: httpx.Client, sandbox: SandboxHandle, warp_hubspot: HubSpotClient,
) -> None:
    usage = sandbox.control.spend_daily_quota(0)
    sandbox.control.spend_daily_quota(usage["usageLimit"] - usage["currentUsage"])
    response = api.get(COMPANIES)
    assert response.status_code == 429
    body = response.json()
    assert (body["errorType"], body["policyName"]) == ("RATE_LIMIT", "DAILY")
    assert body["message"] == "You have reached your daily limit."
    assert response.headers["X-HubSpot-RateLimit-Daily-Remaining"] == "0"
    sandbox.control.reset_counters()
    with pytest.raises(RateLimited) as caught:
        warp_hubspot.list_companies(limit=1)
    assert caught.value.daily
    assert sandbox.control.counters()["total"] == 1  # not retried
    quota = warp_hubspot.daily_quota()
    assert quota is not None and quota.used is not None and quota.limit is not None and quota.used > quota.limit


def test_a_time_zone_must_be_a_real_one(sandbox: SandboxHandle) -> None:
    with pytest.raises(Exception, match="IANA time zone"):
        sandbox.control.configure(time_zone="Mars/Olympus_Mons")
