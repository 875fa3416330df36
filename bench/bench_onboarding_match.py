"""Day-one matching: a generated world of a million customers and a million companies, with known truth.

    .venv/bin/python bench/bench_onboarding_match.py [--customers 1000000] [--sample 500]

Generates the world (`warp_sync_pipeline/devstack/onboarding_world.py`: 85% findable by BAN, 5% by domain, 5% by
name, half of those with typos and other legal forms, 3% with no counterpart, 2% decoys, clusters of two or three
customers per company, and prospects without a customer to make about as many companies as customers), then times
`match()` (the matching stage; the pulls are not part of it) and reports peak process memory, the machine's load,
each category's precision and recall against the truth, and that no decoy was auto-linked.

Baseline, in the same run: scoring every pool customer against every pool company by name (what the blocking
avoids), timed on --sample customers against all pool companies with the same C++ scorer on both cores, and
extrapolated to the whole pool. The ratio is that over the whole matching stage.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np
import pandas as pd
from rapidfuzz import fuzz, process

from warp_sync_pipeline.core.onboarding.matching import (
    CATEGORY,
    COMPANY_BAN,
    COMPANY_ID,
    COMPANY_NAME,
    CUSTOMER_ID,
    NAME,
    Category,
    MatchResult,
    match,
)
from warp_sync_pipeline.devstack.onboarding_world import World, generate


def _placed_right(world: World, result: MatchResult) -> pd.Series:
    """Per customer: was it placed right? (links and clusters: the true company; review: the true company among
    the candidates; no candidate: there is none; duplicate BAN: it is one.)"""
    truth = world.customers.set_index(CUSTOMER_ID)["true_company"]
    kinds = world.customers.set_index(CUSTOMER_ID)["kind"]
    category = result.category_of()
    right = pd.Series(False, index=category.index)
    firm = result.links[result.links[CATEGORY].isin([Category.LINKED_BY_BAN, Category.AUTO_LINK])]
    right[firm[CUSTOMER_ID]] = firm[COMPANY_ID].to_numpy() == truth.reindex(firm[CUSTOMER_ID]).to_numpy()
    review = result.links[result.links[CATEGORY] == Category.REVIEW]
    hit = review[review[COMPANY_ID].to_numpy() == truth.reindex(review[CUSTOMER_ID]).to_numpy()]
    right[category.index[category == Category.REVIEW]] = False
    right[hit[CUSTOMER_ID].unique()] = True
    clusters = result.clusters
    right[clusters[CUSTOMER_ID]] = clusters[COMPANY_ID].to_numpy() == truth.reindex(clusters[CUSTOMER_ID]).to_numpy()
    none = category.index[category == Category.NO_CANDIDATE]
    right[none] = truth.reindex(none).isna().to_numpy()
    duplicate = category.index[category == Category.DUPLICATE_BAN]
    right[duplicate] = (kinds.reindex(duplicate) == "decoy_duplicate_ban").to_numpy()
    return right


def _table(world: World, result: MatchResult) -> pd.DataFrame:
    category = result.category_of()
    right = _placed_right(world, result)
    expected = world.expected()
    rows = []
    for name in [c.value for c in Category if c not in (Category.ALREADY_LINKED, Category.COMPANY_ALONE)]:
        placed = category[category == name]
        wanted = expected[expected == name]
        rows.append({
            "category": name,
            "customers": len(placed),
            "precision": right[placed.index].mean() if len(placed) else np.nan,
            "expected": len(wanted),
            "recall": (category.reindex(wanted.index) == name).mean() if len(wanted) else np.nan,
        })
    return pd.DataFrame(rows)


def _found_by_kind(world: World, result: MatchResult) -> pd.DataFrame:
    truth = world.customers.set_index(CUSTOMER_ID)["true_company"].dropna()
    proposed = pd.concat([result.links[[CUSTOMER_ID, COMPANY_ID]], result.clusters[[CUSTOMER_ID, COMPANY_ID]]])
    hits = proposed[proposed[COMPANY_ID].to_numpy() == truth.reindex(proposed[CUSTOMER_ID]).to_numpy()]
    kinds = world.customers.set_index(CUSTOMER_ID)["kind"].reindex(truth.index)
    found = pd.Series(truth.index.isin(hits[CUSTOMER_ID]), index=truth.index)
    return pd.DataFrame({"customers": kinds.value_counts(), "found": found.groupby(kinds).mean()})


def _baseline_seconds(world: World, result: MatchResult, sample: int) -> tuple[float, int, int]:
    placed = result.category_of()
    pool = placed[~placed.isin([Category.LINKED_BY_BAN, Category.DUPLICATE_BAN, Category.ALREADY_LINKED])].index
    customers = world.customers.set_index(CUSTOMER_ID).loc[pool, NAME].fillna("").astype(str).tolist()
    companies = world.companies.loc[world.companies[COMPANY_BAN].isna(), COMPANY_NAME].fillna("").astype(str)
    rng = np.random.default_rng(3)
    picked = [customers[i] for i in rng.choice(len(customers), size=min(sample, len(customers)), replace=False)]
    started = time.perf_counter()
    process.cdist(picked, companies.tolist(), scorer=fuzz.token_set_ratio, workers=2, dtype=np.uint8)
    elapsed = time.perf_counter() - started
    return elapsed * len(customers) / len(picked), len(customers), len(companies)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=500)
    args = parser.parse_args()

    started = time.perf_counter()
    world = generate(args.customers, prospects_share=0.035)
    generated = time.perf_counter() - started
    load_before = os.getloadavg()
    started = time.perf_counter()
    result = match(world.customers, world.companies)
    matching = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load_after = os.getloadavg()
    baseline, pool_customers, pool_companies = _baseline_seconds(world, result, args.sample)

    print(f"world: {len(world.customers):,} customers, {len(world.companies):,} companies (generated in "
          f"{generated:.1f} s)")
    print(f"matching stage: {matching:.1f} s; peak process memory {peak_mb:,.0f} MB (frames included); "
          f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    print(f"pool after BANs: {pool_customers:,} customers x {pool_companies:,} companies")
    print(f"baseline, every pool pair scored by name (extrapolated from {args.sample} customers): {baseline:.0f} s; "
          f"ratio {baseline / matching:.0f}x")
    table = _table(world, result)
    print()
    print(table.to_markdown(index=False, floatfmt=".4f"))
    automatic = result.links[result.links[CATEGORY].isin([Category.LINKED_BY_BAN, Category.AUTO_LINK])]
    right = _placed_right(world, result)
    print()
    print(f"automatic links (BAN and domain-and-name): {len(automatic):,}, precision "
          f"{right[automatic[CUSTOMER_ID]].mean():.5f}")
    kinds = world.customers.set_index(CUSTOMER_ID)["kind"]
    category = result.category_of()
    print()
    print("true company proposed anywhere (by BAN, auto-link, review candidate or cluster), per kind of customer:")
    print(_found_by_kind(world, result).to_markdown(floatfmt=".4f"))
    decoys = kinds[kinds.str.startswith("decoy")]
    landed = pd.crosstab(decoys, category.reindex(decoys.index))
    print(f"decoys auto-linked: {int((category.reindex(decoys.index) == Category.AUTO_LINK).sum())}")
    print()
    print(landed.to_markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
