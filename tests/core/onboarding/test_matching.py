"""Day-one matching: each category from records made for it, and the bad inputs never auto-linked."""

from __future__ import annotations

import pandas as pd
import pytest

from warp_sync_pipeline.core.onboarding.matching import (
    CATEGORY,
    COMPANY_COLUMNS,
    COMPANY_ID,
    CUSTOMER_COLUMNS,
    CUSTOMER_ID,
    REASONS,
    Category,
    MatchPolicy,
    MatchResult,
    match,
)
from warp_sync_pipeline.core.onboarding.preview import candidate_rows, labelling_sample
from warp_sync_pipeline.devstack.onboarding_world import generate

# The hand-made worlds are small: a token counts as common on more than four names (the background's are).
SMALL = MatchPolicy(common_min=4, common_share=0.0)


def _customers(*rows: tuple[object, ...]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(CUSTOMER_COLUMNS))


def _companies(*rows: tuple[object, ...]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(COMPANY_COLUMNS))


def _category(result: MatchResult, customer: str) -> str:
    return result.category_of()[customer]


def _pairs(result: MatchResult, category: Category) -> set[tuple[str, str]]:
    rows = result.links[result.links[CATEGORY] == category.value]
    return set(zip(rows[CUSTOMER_ID], rows[COMPANY_ID], strict=True))


BACKGROUND_CUSTOMERS = [(f"bg{i}", f"ZT-9{i:08d}", f"Filler{i} Telecom Services", f"x@filler{i}.net", None)
                        for i in range(4)]
BACKGROUND_COMPANIES = [(f"hbg{i}", f"ZT-9{i:08d}", f"Filler{i} Telecom Services", None, None, None, "API")
                        for i in range(4)]


def _world(customers: list[tuple[object, ...]], companies: list[tuple[object, ...]]) -> MatchResult:
    return match(_customers(*customers, *BACKGROUND_CUSTOMERS), _companies(*companies, *BACKGROUND_COMPANIES), SMALL)


def test_a_ban_links_whatever_the_names_say_and_a_linked_customer_stays_linked() -> None:
    result = _world(
        [("c1", "zt-000000001 ", "Acme Ltd", None, None), ("c2", "ZT-000000002", "Linked Co", None, "h2")],
        [("h1", "ZT-000000001", "Totally Different Inc", None, None, None, "API"),
         ("h2", "ZT-000000002", "Linked Co", None, None, None, "API")],
    )
    assert _pairs(result, Category.LINKED_BY_BAN) >= {("c1", "h1")}
    assert _category(result, "c2") == Category.ALREADY_LINKED
    assert bool(result.already_linked.set_index(CUSTOMER_ID).loc["c2", "company_found"])


@pytest.mark.parametrize("where", ["domain", "website", "additional_domains"])
def test_domain_and_name_agreeing_auto_link_wherever_the_company_keeps_its_domain(where: str) -> None:
    domains = {"domain": ("acme.co.uk", None, None), "website": (None, "https://www.acme.co.uk/en", None),
               "additional_domains": (None, None, "acme-legacy.com; acme.co.uk")}[where]
    result = _world([("c1", "ZT-000000001", "Acme Telecom Ltd", "Billing@Mail.ACME.co.uk", None)],
                    [("h1", None, "ACME Telecom Limited", *domains, "CRM_UI")])
    assert _pairs(result, Category.AUTO_LINK) == {("c1", "h1")}


def test_a_domain_alone_or_a_name_alone_goes_to_review() -> None:
    result = _world(
        [("c1", "ZT-000000001", "Acme Telecom Ltd", "ops@acme.io", None),
         ("c2", "ZT-000000002", "Northwind Traders", "northwind.traders@gmail.com", None)],
        [("h1", None, "Roadrunner Deliveries", "acme.io", None, None, "CRM_UI"),
         ("h2", None, "Nortwind Traders Inc", None, None, None, "CRM_UI")],
    )
    assert _pairs(result, Category.REVIEW) == {("c1", "h1"), ("c2", "h2")}
    reasons = result.links.set_index(CUSTOMER_ID)[REASONS]
    assert "domain acme.io" in reasons["c1"] and "no domain" in reasons["c2"]


def test_a_company_hubspot_made_from_a_domain_links_by_domain_with_its_name_weighted_low() -> None:
    result = _world(
        [("c1", "ZT-000000001", "Quintara Ltd", "it@quintara.com", None)],
        [("h1", None, "QUINTARA", "quintara.com", None, None, "CRM_SETTING"),
         ("h2", None, "Quintara Limited", None, None, None, "CRM_UI")],
    )
    # The domain wins over the rival named as well (its name counts half); the names' agreement is what makes it
    # automatic.
    assert _pairs(result, Category.AUTO_LINK) == {("c1", "h1")}


@pytest.mark.parametrize(("customer", "score", "differs"), [("Acme Widgets Ltd", 90.0, True),
                                                           ("Acme Widgets", 100.0, False),
                                                           ("Acme Widgets Inc.", 100.0, False)])
def test_a_differing_legal_form_weakens_the_name_but_does_not_vanish(customer: str, score: float,
                                                                      differs: bool) -> None:
    result = _world([("c1", "ZT-000000001", customer, None, None)],
                    [("h1", None, "Acme Widgets Inc", None, None, None, "CRM_UI")])
    row = result.links.set_index(CUSTOMER_ID).loc["c1"]
    assert row["name_score"] == score and ("legal form differs" in row[REASONS]) is differs


def test_ties_and_a_contested_company_are_never_auto_linked() -> None:
    tie = _world([("c1", "ZT-000000001", "Borealis Fjord", "borealis.fjord@gmail.com", None)],
                 [("h1", None, "Borealis Fjord", None, None, None, "CRM_UI"),
                  ("h2", None, "Borealis Fjord AS", None, None, None, "CRM_UI")])
    assert _category(tie, "c1") == Category.REVIEW  # both listed, equally strong: a person picks
    rows = tie.links[tie.links[CUSTOMER_ID] == "c1"].set_index(COMPANY_ID)
    assert set(rows.index) == {"h1", "h2"} and rows.loc["h1", "second_score"] == rows.loc["h2", "name_score"]
    contested = _world([("c1", "ZT-000000001", "Helion Labs", "a@helion.dev", None),
                        ("c2", "ZT-000000002", "Helion Labs", None, None)],
                       [("h1", None, "Helion Labs", "helion.dev", None, None, "CRM_UI")])
    assert Category.AUTO_LINK not in set(contested.links[CATEGORY])


def test_several_customers_on_one_companys_domain_are_one_organisations_accounts() -> None:
    result = _world(
        [("c1", "ZT-000000001", "Vantor Group (Berlin)", "billing@vantor.de", None),
         ("c2", "ZT-000000002", "Vantor Group (Munich)", "finance@vantor.de", None),
         ("c3", "ZT-000000003", "Kestrel Mobile", "a@kestrel.de", None),
         ("c4", "ZT-000000004", "Kestrel Mobile", "b@kestrel-mobile.de", None)],
        [("h1", None, "Vantor Group", "vantor.de", None, None, "CRM_UI"),
         ("h2", None, "Kestrel Mobile", None, None, None, "CRM_UI")],
    )
    clusters = result.clusters.groupby(COMPANY_ID)[CUSTOMER_ID].agg(set).to_dict()
    assert clusters == {"h1": {"c1", "c2"}, "h2": {"c3", "c4"}}
    assert not _pairs(result, Category.AUTO_LINK)


def test_what_nobody_matched_is_listed_on_both_sides() -> None:
    result = _world([("c1", "ZT-000000001", "Lonely Customer", "x@lonely.example", None),
                     ("c2", "ZT-000000002", "  ", None, None)],
                    [("h1", None, "Prospect Without Customer", "prospect.example", None, None, "CRM_UI"),
                     ("h2", "ZT-000000777", "Stale BAN", None, None, None, "IMPORT")])
    without = result.customers_without_candidate.set_index(CUSTOMER_ID)[REASONS]
    assert without["c1"].startswith("no company matched") and without["c2"] == "no name and no email to match on"
    alone = result.companies_alone.set_index(COMPANY_ID)[REASONS]
    assert alone["h1"] == "no customer matched it" and alone["h2"] == "its warp_ban names no WARP customer"


BAD_INPUTS = [
    # (what, customers, companies)
    ("empty and whitespace names", [("c1", "ZT-000000001", " ", "a@x1.example", None)],
     [("h1", None, "", "x1.example", None, None, "CRM_UI"), ("h2", None, "   ", None, None, None, "CRM_UI")]),
    ("one domain on many companies", [("c1", "ZT-000000001", "Orbit Fiber", "a@orbit.example", None)],
     [(f"h{i}", None, "Orbit Fiber", "orbit.example", None, None, "CRM_UI") for i in range(3)]),
    ("a public mail domain", [("c1", "ZT-000000001", "Pelican Freight", "pelican@gmail.com", None)],
     [("h1", None, "Pelican Freight", "gmail.com", None, None, "CRM_UI")]),
    ("a mixed-script look-alike", [("c1", "ZT-000000001", "Acme Relay", "a@acmerelay.example", None)],
     [("h1", None, "\u0410cme Relay", "acmerelay.example", None, None, "CRM_UI")]),
    ("a very common name", [("c1", "ZT-000000001", "Telecom Services Ltd", "a@ts.example", None)],
     [("h1", None, "Telecom Services", "ts.example", None, None, "CRM_UI")]),
    ("a customer without email", [("c1", "ZT-000000001", "Quasar Data", None, None)],
     [("h1", None, "Quasar Data", "quasar.example", None, None, "CRM_UI")]),
    ("a BAN HubSpot holds twice", [("c1", "ZT-000000001", "Twin Ban", "a@twin.example", None)],
     [("h1", "ZT-000000001", "Twin Ban", "twin.example", None, None, "API"),
      ("h2", "ZT-000000001", "Twin Ban (copy)", None, None, None, "API")]),
]


@pytest.mark.parametrize(("what", "customers", "companies"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_never_auto_linked_and_lands_in_a_named_category(
        what: str, customers: list[tuple[object, ...]], companies: list[tuple[object, ...]]) -> None:
    result = _world(customers, companies)
    assert _category(result, "c1") in {Category.REVIEW, Category.NO_CANDIDATE, Category.DUPLICATE_BAN}
    assert not {p for p in _pairs(result, Category.AUTO_LINK) | _pairs(result, Category.LINKED_BY_BAN)
                if p[0] == "c1"}
    if what == "a BAN HubSpot holds twice":
        row = result.duplicate_bans.set_index(CUSTOMER_ID).loc["c1"]
        assert sorted(row["company_ids"]) == ["h1", "h2"]


def test_a_generated_world_links_automatically_only_what_is_true() -> None:
    world = generate(6_000, seed=11)
    result = match(world.customers, world.companies)
    truth = world.customers.set_index(CUSTOMER_ID)["true_company"]
    automatic = result.links[result.links[CATEGORY].isin([Category.LINKED_BY_BAN, Category.AUTO_LINK])]
    assert (automatic[COMPANY_ID].to_numpy() == truth.reindex(automatic[CUSTOMER_ID]).to_numpy()).all()
    got = result.category_of()
    kinds = world.customers.set_index(CUSTOMER_ID)["kind"]
    assert not set(got[got == Category.AUTO_LINK].index) & set(kinds[kinds.str.startswith("decoy")].index)
    # Every customer lands in exactly one category, and the expected ones mostly where expected.
    assert got.index.is_unique and set(got.index) == set(world.customers[CUSTOMER_ID])
    expected = world.expected().dropna()
    agreement = (got.reindex(expected.index) == expected).groupby(expected).mean()
    assert agreement[Category.LINKED_BY_BAN] == 1.0
    assert agreement[Category.DUPLICATE_BAN] == 1.0
    assert agreement[Category.MANY_TO_ONE] > 0.9
    assert agreement[Category.NO_CANDIDATE] > 0.9


def test_the_labelling_sample_draws_every_category_and_score_band_evenly() -> None:
    world = generate(6_000, seed=5)
    result = match(world.customers, world.companies)
    rows = candidate_rows(result, world.companies)
    picked = rows[labelling_sample(rows, size=300)]
    band = pd.cut(picked["name_score"].astype(float), [-1, 80, 90, 95, 101], labels=False, right=False)
    strata = (picked[CATEGORY] + ":" + band.fillna(-1).astype(int).astype(str)).value_counts()
    assert set(picked[CATEGORY]) == {"linked_by_ban", "auto_link", "review", "many_to_one"}
    assert 200 <= len(picked) <= 330
    assert strata.max() <= -(-300 // len(strata))  # no stratum above its even share
    assert strata["linked_by_ban:-1"] < 0.2 * len(picked)  # the 85% by BAN do not crowd out the weak matches
