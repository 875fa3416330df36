"""Streaming every company page by page (2,500 seeded through the sandbox switch)."""

from __future__ import annotations

import gc
import weakref

from warp_sync_pipeline.core.hubspot import Company, HubSpotClient, PageProgress

SEEDED = 2_500


def test_iterating_2500_companies_pages_through_all_of_them(hubspot: HubSpotClient, sandbox) -> None:  # noqa: ANN001
    ids = sandbox.control.seed([{"name": f"Company {n}", "domain": f"c{n}.example"} for n in range(SEEDED)])
    sandbox.control.reset_counters()
    progress: list[PageProgress] = []
    seen = [c.id for c in hubspot.iter_companies(properties=["name", "domain"], on_page=progress.append)]
    assert seen == ids  # every company once, in HubSpot's order
    assert len(progress) == 25
    assert progress[-1] == PageProgress(pages=25, companies=SEEDED, next_after=None)
    assert [p.companies for p in progress[:3]] == [100, 200, 300]
    assert sandbox.control.counters()["by_endpoint"]["GET /crm/v3/objects/companies"] == 25


def test_pages_already_consumed_are_not_kept(hubspot: HubSpotClient, sandbox) -> None:  # noqa: ANN001
    sandbox.control.seed([{"name": f"Company {n}"} for n in range(450)])
    first_page: list[weakref.ref[Company]] = []
    alive_at_page_4 = None
    for n, company in enumerate(hubspot.iter_companies(properties=["name"])):
        if n < 100:
            first_page.append(weakref.ref(company))
        if n == 350:  # deep into page 4: the first page must have been released
            del company
            gc.collect()
            alive_at_page_4 = sum(1 for ref in first_page if ref() is not None)
    assert alive_at_page_4 == 0


def test_with_history_pages_hold_at_most_50(hubspot: HubSpotClient, sandbox) -> None:  # noqa: ANN001
    sandbox.control.seed([{"name": f"Company {n}"} for n in range(120)])
    progress: list[PageProgress] = []
    companies = list(hubspot.iter_companies(properties_with_history=["name"], on_page=progress.append))
    assert len(companies) == 120 and len(progress) == 3
    assert all(c.history["name"][0].value.startswith("Company ") for c in companies)


def test_a_page_by_hand_with_after(hubspot: HubSpotClient, sandbox) -> None:  # noqa: ANN001
    ids = sandbox.control.seed([{"name": f"Company {n}"} for n in range(15)])
    first = hubspot.list_companies(limit=10)
    assert [c.id for c in first.results] == ids[:10] and first.next_after
    second = hubspot.list_companies(limit=10, after=first.next_after)
    assert [c.id for c in second.results] == ids[10:] and second.next_after is None


def test_requests_sent_are_counted_by_kind_as_the_sandbox_counts_them(hubspot: HubSpotClient,
                                                                     sandbox) -> None:  # noqa: ANN001
    """A step's HubSpot cost comes from the client's own tally: ids leave the path, history reads are their own
    kind, views share the tally, and the totals agree with what HubSpot (the sandbox) received."""
    ids = sandbox.control.seed([{"name": f"Company {n}"} for n in range(120)])
    sandbox.control.reset_counters()
    before = hubspot.requests_sent()
    hubspot.get_company(ids[0], properties=["name"])
    hubspot.get_company(ids[1], properties=["name"])
    hubspot.batch_read_companies(ids, properties=["name"])
    hubspot.with_deadline(10).batch_read_companies(ids, properties=["name"], properties_with_history=["name"])
    hubspot.search_companies(limit=1)
    spent = hubspot.requests_sent() - before
    companies = "/crm/objects/2026-09/companies"  # the default API version's paths
    assert spent == {
        f"GET {companies}/{{id}}": 2,
        f"POST {companies}/batch/read": 2,  # 120 ids: 100 a call
        f"POST {companies}/batch/read (history)": 3,  # 50 a call with history
        f"POST {companies}/search": 1,
    }
    assert sum(spent.values()) == sandbox.control.counters()["total"]
