"""Headless Chromium drives the review page through a sign-in and a resolve, against a running receiver.

Screenshots land in test-artifacts/ (git-ignored). Where Chromium is not installed the test skips, saying so.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from flask import Flask

from tests import ARTIFACTS
from tests.cdp import chromium_page, find_chromium
from tests.receiver.review.conftest import conflict_row, resolution_log, serving, warp_value

CHROMIUM = find_chromium()

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (Debian package `chromium`, which .ci/run installs): browser test skipped",
)


@pytest.fixture
def live_receiver(app: Flask) -> Iterator[str]:
    """The receiver under a real HTTP server on a free loopback port, stopped after the test."""
    with serving(app) as url:
        yield url


def test_a_person_signs_in_and_resolves_a_conflict_in_the_browser(
    live_receiver, tokens, make_conflict, portal, engine, tmp_path
) -> None:
    assert CHROMIUM is not None
    corrected = make_conflict("credit_limit", warp={"credit_limit": "7500.00", "company_name": "Northwind Mobile"},
                              hubspot={"warp_credit_limit": "9000", "name": "Northwind Mobile"}, agreed="5000.00")
    take_hubspot = make_conflict("contact_email", warp={"company_name": "Globex Fibre"},
                                 hubspot={"name": "Globex Fibre"})

    with chromium_page(CHROMIUM, tmp_path / "profile") as page:
        page.navigate(f"{live_receiver}/review/conflicts")
        assert "/review/login" in page.url()  # not signed in yet
        page.screenshot(ARTIFACTS / "review-login.png")

        page.type_into("#token", tokens.resolver)
        page.click_and_wait("#sign-in")
        assert page.url().startswith(f"{live_receiver}/review/conflicts")
        queue = page.html()
        assert f'id="conflict-{corrected.id}"' in queue and f'id="conflict-{take_hubspot.id}"' in queue
        assert "Signed in as <strong>alice</strong>" in queue
        page.screenshot(ARTIFACTS / "review-queue.png")

        page.type_into(f"#value-{corrected.id}", "8250.5")
        page.click_and_wait(f"#take-value-{corrected.id}")
        page.click_and_wait(f"#take-hubspot-{take_hubspot.id}")
        after = page.html()
        page.screenshot(ARTIFACTS / "review-resolved.png")

    assert f"Conflict {corrected.id} resolved" not in after  # the first notice was shown on the previous page
    assert f"Conflict {take_hubspot.id} resolved" in after
    assert "No open conflicts" in after
    # Both sides hold the chosen values.
    assert warp_value(engine, corrected.customer_id, "credit_limit") == Decimal("8250.50")
    company = portal.get_company(corrected.company_id, properties=["warp_credit_limit"])
    assert Decimal(company.get("warp_credit_limit")) == Decimal("8250.50")
    assert warp_value(engine, take_hubspot.customer_id, "contact_email") == "billing@acme.example"
    assert portal.get_company(take_hubspot.company_id, properties=["warp_contact_email"]).get(
        "warp_contact_email") == "billing@acme.example"
    for made in (corrected, take_hubspot):
        assert conflict_row(engine, made.id)["closed_by"] == "alice"
        assert {entry["actor"] for entry in resolution_log(engine, made.customer_id)} == {"alice"}
    assert (ARTIFACTS / "review-resolved.png").stat().st_size > 1000
