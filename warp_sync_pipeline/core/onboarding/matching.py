"""Matching WARP's customers to an existing portal's companies on day one: who is the same organisation.

Evidence, strongest first:
- **BAN**: a company's `warp_ban` equal to the customer's BAN (and held by that company alone).
- **Domain**: the registrable domain of the customer's contact email among the company's domains, counted only
  where exactly one customer and exactly one company hold it and the domain can name one organisation
  (`domains.DomainPolicy`). Two to a few customers on one company's domain are one organisation's accounts.
- **Name**: the normalised names (`names.normalize_name`) compared within blocks that share a rare token or a
  one-letter typo of one (so it scales), each token weighted by how rare it is across both sides (`Telecom` and
  `Services` count for little); a legal form that differs (`Ltd` vs `Inc`) takes points off.

What each customer ends up as (`Category`): linked already; linked by BAN; auto-link (domain *and* name agree,
with a clear gap to the second-best candidate and no other customer contesting the company); review (a name alone,
a domain alone, ties, flags); one company for several customers (a person picks which links); no candidate (to
create in HubSpot); a BAN HubSpot holds twice. Companies nobody matched are listed and left alone.
Plain pandas and rapidfuzz: no database, no HubSpot; the preview feeds it the pulls' frames.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd
from rapidfuzz import fuzz, process

from warp_sync_pipeline.core.onboarding.domains import (
    DATA_DIR,
    DomainPolicy,
    company_domains,
    ending_in,
    hosts,
    registrable_domains,
)
from warp_sync_pipeline.core.onboarding.names import CompanyName, normalize_name

# Input columns. Customers: id, BAN, name, contact email, the linked company (None when unlinked).
CUSTOMER_ID, BAN, NAME, EMAIL, LINKED_COMPANY = "customer_id", "ban", "name", "email", "linked_company_id"
# Companies: id, warp_ban, name, domain, website, hs_additional_domains (";"-separated), hs_object_source.
COMPANY_ID, COMPANY_BAN, COMPANY_NAME = "company_id", "warp_ban", "company_name"
DOMAIN, WEBSITE, ADDITIONAL_DOMAINS, OBJECT_SOURCE = "domain", "website", "additional_domains", "object_source"
CUSTOMER_COLUMNS = (CUSTOMER_ID, BAN, NAME, EMAIL, LINKED_COMPANY)
COMPANY_COLUMNS = (COMPANY_ID, COMPANY_BAN, COMPANY_NAME, DOMAIN, WEBSITE, ADDITIONAL_DOMAINS, OBJECT_SOURCE)

# Companies HubSpot made by itself from contacts' email domains (record source "CRM setting"): good targets for
# their domain, named from HubSpot's own data (brand names), so their names count for less. The exact value of
# `hs_object_source` for them is not in hubspot-api.md (it names the record source "CRM setting"): a gap.
AUTO_CREATED_SOURCES = frozenset({"CRM_SETTING"})
# Words that identify no one ("Telecom", "Services"), common whatever the names being matched hold.
COMMON_WORDS = frozenset(
    word for line in (DATA_DIR / "common_name_words.txt").read_text(encoding="utf-8").splitlines()
    if (word := line.split("#", 1)[0].strip())
)
# Output columns beyond the ids.
CATEGORY, MATCHED_DOMAIN, NAME_SCORE, SECOND_SCORE, REASONS = "category", "matched_domain", "name_score", \
    "second_score", "reasons"


class Category(StrEnum):
    ALREADY_LINKED = "already_linked"
    LINKED_BY_BAN = "linked_by_ban"
    AUTO_LINK = "auto_link"
    REVIEW = "review"
    MANY_TO_ONE = "many_to_one"
    NO_CANDIDATE = "no_candidate"
    DUPLICATE_BAN = "duplicate_ban"
    COMPANY_ALONE = "company_alone"


class DomainKind(StrEnum):
    KEY = "key"  # one customer, one company
    SHARED = "shared"  # a few customers, one company: one organisation's accounts


@dataclass(frozen=True)
class MatchPolicy:
    domains: DomainPolicy = field(default_factory=DomainPolicy.bundled)
    auto_name_min: float = 90.0  # the name score a domain match needs to link on its own
    review_name_min: float = 75.0  # below this a name alone is no candidate
    gap: float = 10.0  # the lead over the second-best candidate (and over rival customers) an auto-link needs
    legal_form_penalty: float = 10.0
    token_match_min: float = 80.0  # two tokens this similar count as the same (a typo)
    common_share: float = 0.002  # a token on more than this share of names (and common_min) is common
    common_min: int = 20
    block_max: int = 200  # a blocking key on more names than this (either side) is too common to block on
    prefilter_min: float = 65.0  # the cheap whole-name score below which a blocked pair is not scored further
    auto_created_name_weight: float = 0.5
    workers: int = 2


@dataclass
class MatchResult:
    """`links`: every proposed pair (by BAN, auto, review; review keeps every candidate a person should see);
    `clusters`: customers that share one company; the rest as named."""

    links: pd.DataFrame
    clusters: pd.DataFrame
    customers_without_candidate: pd.DataFrame
    companies_alone: pd.DataFrame
    duplicate_bans: pd.DataFrame
    already_linked: pd.DataFrame

    def counts(self) -> dict[str, int]:
        per_customer = self.links.drop_duplicates(CUSTOMER_ID)[CATEGORY].value_counts()
        return {
            Category.ALREADY_LINKED.value: len(self.already_linked),
            Category.LINKED_BY_BAN.value: int(per_customer.get(Category.LINKED_BY_BAN, 0)),
            Category.AUTO_LINK.value: int(per_customer.get(Category.AUTO_LINK, 0)),
            Category.REVIEW.value: int(per_customer.get(Category.REVIEW, 0)),
            Category.MANY_TO_ONE.value: int(self.clusters[CUSTOMER_ID].nunique()),
            Category.NO_CANDIDATE.value: len(self.customers_without_candidate),
            Category.DUPLICATE_BAN.value: int(self.duplicate_bans[CUSTOMER_ID].notna().sum()),
            Category.COMPANY_ALONE.value: len(self.companies_alone),
        }

    def category_of(self) -> pd.Series:
        """Each customer's category (customer id -> category), for measuring against a known truth."""
        parts = [
            pd.Series(Category.ALREADY_LINKED.value, index=self.already_linked[CUSTOMER_ID]),
            self.links.drop_duplicates(CUSTOMER_ID).set_index(CUSTOMER_ID)[CATEGORY],
            pd.Series(Category.MANY_TO_ONE.value, index=self.clusters[CUSTOMER_ID].unique()),
            pd.Series(Category.NO_CANDIDATE.value, index=self.customers_without_candidate[CUSTOMER_ID]),
            pd.Series(Category.DUPLICATE_BAN.value, index=self.duplicate_bans[CUSTOMER_ID].dropna()),
        ]
        return pd.concat(parts).astype(str)


def match(customers: pd.DataFrame, companies: pd.DataFrame, policy: MatchPolicy | None = None) -> MatchResult:
    """Match every customer to the companies (the frames' columns are CUSTOMER_COLUMNS and COMPANY_COLUMNS)."""
    policy = policy or MatchPolicy()
    customers, companies = _cleaned(customers, CUSTOMER_COLUMNS, BAN), _cleaned(companies, COMPANY_COLUMNS, COMPANY_BAN)
    bans = _Bans.of(customers, companies)
    pool_customers = customers[bans.open_customers & ~customers[CUSTOMER_ID].isin(bans.settled_customers)]
    pool_companies = companies[companies[COMPANY_BAN].isna() & ~companies[COMPANY_ID].isin(bans.taken_companies)]
    domains = _domain_pairs(customers, companies, pool_customers, pool_companies, policy.domains)
    names = _Names(pool_customers, pool_companies, policy)
    candidates = names.scored(pd.concat([names.blocked_pairs(), domains[[CUSTOMER_ID, COMPANY_ID]]])
                              .drop_duplicates(ignore_index=True))
    candidates = candidates.merge(domains, on=[CUSTOMER_ID, COMPANY_ID], how="left")
    candidates = candidates[candidates["domain_kind"].notna() | (candidates[NAME_SCORE] >= policy.review_name_min)]
    candidates = candidates.assign(auto_created=candidates[COMPANY_ID].isin(
        pool_companies.loc[pool_companies[OBJECT_SOURCE].isin(AUTO_CREATED_SOURCES), COMPANY_ID]))
    clusters, rest = _clusters(candidates, names, policy)
    links = pd.concat([bans.links, _classify(rest, policy)], ignore_index=True)
    matched = set(links[CUSTOMER_ID]) | set(clusters[CUSTOMER_ID])
    without = pool_customers[~pool_customers[CUSTOMER_ID].isin(matched)]
    candidates_seen = set(links[COMPANY_ID]) | set(clusters[COMPANY_ID])
    alone = pool_companies[~pool_companies[COMPANY_ID].isin(candidates_seen)]
    return MatchResult(
        links=links,
        clusters=clusters,
        customers_without_candidate=_without_candidate(without, names),
        companies_alone=pd.concat([bans.companies_alone,
                                   alone[[COMPANY_ID]].assign(**{REASONS: "no customer matched it"})],
                                  ignore_index=True),
        duplicate_bans=bans.duplicates,
        already_linked=bans.already_linked,
    )


# --- inputs -------------------------------------------------------------------------------------------------


def _text(series: pd.Series) -> pd.Series:
    """Trimmed text, None for missing or blank; object dtype (its isin and merges hash, Arrow strings' loop)."""
    stripped = series.astype("string").str.strip()
    keep = (stripped.notna() & stripped.ne("")).fillna(False).to_numpy(dtype=bool)
    return stripped.astype(object).where(keep, None)


def _cleaned(frame: pd.DataFrame, columns: Iterable[str], ban: str) -> pd.DataFrame:
    """The columns matching reads, as trimmed text (None for blank), BANs in upper case."""
    out = frame.loc[:, list(columns)].copy()
    for name in out.columns:
        out[name] = _text(out[name])
    out[ban] = out[ban].str.upper()
    return out.reset_index(drop=True)


# --- BAN ----------------------------------------------------------------------------------------------------


@dataclass
class _Bans:
    """What the BANs settle: links by BAN, duplicates, companies whose BAN rules them out of the pool."""

    open_customers: pd.Series  # mask: not linked yet
    settled_customers: set[str]
    taken_companies: set[str]
    links: pd.DataFrame
    duplicates: pd.DataFrame
    companies_alone: pd.DataFrame
    already_linked: pd.DataFrame

    @classmethod
    def of(cls, customers: pd.DataFrame, companies: pd.DataFrame) -> _Bans:
        linked = customers[LINKED_COMPANY].notna()
        taken = set(customers.loc[linked, LINKED_COMPANY])
        with_ban = companies[companies[COMPANY_BAN].notna()]
        twice = with_ban[with_ban[COMPANY_BAN].duplicated(keep=False)]
        duplicated = twice.groupby(COMPANY_BAN)[COMPANY_ID].agg(list)
        open_customers = customers[~linked]
        unique = with_ban[~with_ban[COMPANY_BAN].isin(duplicated.index) & ~with_ban[COMPANY_ID].isin(taken)]
        by_ban = open_customers[[CUSTOMER_ID, BAN]].merge(unique[[COMPANY_ID, COMPANY_BAN]],
                                                          left_on=BAN, right_on=COMPANY_BAN)
        links = by_ban[[CUSTOMER_ID, COMPANY_ID]].assign(**{
            CATEGORY: Category.LINKED_BY_BAN.value, MATCHED_DOMAIN: None, NAME_SCORE: np.nan,
            SECOND_SCORE: np.nan, REASONS: "warp_ban equals the BAN"})
        duplicates = duplicated.rename("company_ids").reset_index().rename(columns={COMPANY_BAN: BAN}).merge(
            open_customers[[CUSTOMER_ID, BAN]], on=BAN, how="left")
        customer_bans = set(customers[BAN].dropna())
        linked_bans = set(customers.loc[linked, BAN].dropna())
        unknown = unique[~unique[COMPANY_BAN].isin(customer_bans)][[COMPANY_ID]].assign(
            **{REASONS: "its warp_ban names no WARP customer"})
        elsewhere = unique[unique[COMPANY_BAN].isin(linked_bans)][[COMPANY_ID]].assign(
            **{REASONS: "its warp_ban is a customer's linked to another company"})
        known = set(companies[COMPANY_ID])
        return cls(
            open_customers=~linked,
            settled_customers=set(links[CUSTOMER_ID]) | set(duplicates[CUSTOMER_ID].dropna()),
            taken_companies=taken | set(links[COMPANY_ID]),
            links=links,
            duplicates=duplicates,
            companies_alone=pd.concat([unknown, elsewhere], ignore_index=True),
            already_linked=customers.loc[linked, [CUSTOMER_ID, LINKED_COMPANY]].assign(
                company_found=lambda f: f[LINKED_COMPANY].isin(known)),
        )


# --- domains ------------------------------------------------------------------------------------------------


def _domain_pairs(customers: pd.DataFrame, companies: pd.DataFrame, pool_customers: pd.DataFrame,
                  pool_companies: pd.DataFrame, policy: DomainPolicy) -> pd.DataFrame:
    """(customer, company, matched domain, kind) for pool pairs sharing a usable domain. Holders are counted over
    every customer and company, linked or not: a domain a linked customer also uses is not one customer's. Only
    the pool customers' domains are looked for among the others (a host not ending in one is never reduced)."""
    pool = pd.DataFrame({CUSTOMER_ID: pool_customers[CUSTOMER_ID].to_numpy(),
                         MATCHED_DOMAIN: registrable_domains(pool_customers[EMAIL]).to_numpy()})
    pool = pool[pool[MATCHED_DOMAIN].notna() & ~pool[MATCHED_DOMAIN].isin(policy.excluded)]
    wanted = set(pool[MATCHED_DOMAIN])
    email_hosts = hosts(customers[EMAIL])
    nearby = email_hosts[ending_in(email_hosts, wanted).to_numpy()]
    customer_holders = registrable_domains(nearby).value_counts()
    held = company_domains(companies, company_id=COMPANY_ID, columns=(DOMAIN, WEBSITE),
                           list_column=ADDITIONAL_DOMAINS, among=wanted)
    company_holders = held.groupby("domain")[COMPANY_ID].nunique()
    holders = pool[MATCHED_DOMAIN].map(customer_holders)
    one_company = pool[MATCHED_DOMAIN].map(company_holders).eq(1)
    pool = pool.assign(domain_kind=np.where(holders.eq(1), DomainKind.KEY.value, DomainKind.SHARED.value))
    pool = pool[one_company & holders.le(policy.max_customers)]
    targets = held[held[COMPANY_ID].isin(pool_companies[COMPANY_ID])].rename(columns={"domain": MATCHED_DOMAIN})
    return pool.merge(targets, on=MATCHED_DOMAIN)[[CUSTOMER_ID, COMPANY_ID, MATCHED_DOMAIN, "domain_kind"]]


# --- names --------------------------------------------------------------------------------------------------


def _deletions(token: str) -> list[str]:
    """The token and each form of it with one letter left out: two tokens one edit apart share one of them."""
    if len(token) < 5:
        return [token]
    return [token, *(token[:i] + token[i + 1:] for i in range(len(token)))]


class _Names:
    """The pool's normalised names, how rare each token is, blocking keys and the weighted name score."""

    def __init__(self, customers: pd.DataFrame, companies: pd.DataFrame, policy: MatchPolicy) -> None:
        self.policy = policy
        self.customers = dict(zip(customers[CUSTOMER_ID], map(normalize_name, customers[NAME]), strict=True))
        self.companies = dict(zip(companies[COMPANY_ID], map(normalize_name, companies[COMPANY_NAME]), strict=True))
        frequency: dict[str, int] = {}
        names = [n for n in (*self.customers.values(), *self.companies.values()) if n is not None]
        for name in names:
            for token in set(name.tokens):
                frequency[token] = frequency.get(token, 0) + 1
        self.frequency = frequency
        total = max(1, len(names))
        self.common_above = max(policy.common_min, policy.common_share * total)
        # Rarer tokens weigh more; a listed common word weighs as little as the most frequent token.
        floor = math.log((total + 1) / (max(frequency.values(), default=0) + 1)) + 1.0
        self.weight = {token: floor if token in COMMON_WORDS else math.log((total + 1) / (count + 1)) + 1.0
                       for token, count in frequency.items()}

    def common(self, token: str) -> bool:
        return token in COMMON_WORDS or self.frequency.get(token, 0) > self.common_above

    def is_common(self, name: CompanyName | None) -> bool:
        """Every token common: `Telecom Services` names no one in particular."""
        return name is not None and all(self.common(t) for t in name.tokens)

    def _keys(self, names: dict[str, CompanyName | None], id_column: str) -> pd.DataFrame:
        """Blocking keys: the rarest token with its one-letter-less forms (a typo there still meets), and the
        second rarest as it is (a typo in the rarest one is met there)."""
        ids: list[str] = []
        keys: list[str] = []
        for key_id, name in names.items():
            if name is None:
                continue
            rare = sorted((t for t in set(name.tokens) if not self.common(t)),
                          key=lambda t: (self.frequency[t], t))[:2]
            variants = [*_deletions(rare[0]), *rare[1:]] if rare else []
            ids.extend([key_id] * len(variants))
            keys.extend(variants)
        keys = pd.DataFrame({id_column: np.array(ids, dtype=object), "key": np.array(keys, dtype=object)})
        keys = keys.drop_duplicates()
        sizes = keys["key"].map(keys["key"].value_counts())
        return keys[sizes <= self.policy.block_max]

    def blocked_pairs(self) -> pd.DataFrame:
        """Customer–company pairs sharing a blocking key whose whole names are at least roughly alike."""
        pairs = self._keys(self.customers, CUSTOMER_ID).merge(self._keys(self.companies, COMPANY_ID), on="key")
        pairs = pairs[[CUSTOMER_ID, COMPANY_ID]].drop_duplicates(ignore_index=True)
        if pairs.empty:
            return pairs
        left = [self.customers[c].text for c in pairs[CUSTOMER_ID].tolist()]  # type: ignore[union-attr]
        right = [self.companies[h].text for h in pairs[COMPANY_ID].tolist()]  # type: ignore[union-attr]
        rough = process.cpdist(left, right, scorer=fuzz.token_set_ratio, workers=self.policy.workers)
        return pairs[np.asarray(rough) >= self.policy.prefilter_min].reset_index(drop=True)

    def score(self, a: CompanyName | None, b: CompanyName | None) -> tuple[float, bool]:
        """0-100: tokens alike on both sides, each weighted by its rarity; minus the penalty when both names carry
        a legal form and the forms differ (returned too)."""
        if a is None or b is None:
            return 0.0, False
        best = max(self._weighted(x, y) for x in _variants(a) for y in _variants(b))
        differs = a.legal_form is not None and b.legal_form is not None and a.legal_form != b.legal_form
        return max(0.0, best - (self.policy.legal_form_penalty if differs else 0.0)), differs

    def _weighted(self, a: tuple[str, ...], b: tuple[str, ...]) -> float:
        floor = self.policy.token_match_min
        total = 0.0
        matched = 0.0
        for mine, theirs in ((a, b), (b, a)):
            for token in mine:
                weight = self.weight.get(token, 1.0)
                total += weight
                alike = max((fuzz.ratio(token, other) for other in theirs), default=0.0)
                matched += weight * alike / 100.0 if alike >= floor else 0.0
        return 100.0 * matched / total if total else 0.0

    def scored(self, pairs: pd.DataFrame) -> pd.DataFrame:
        customer_ids, company_ids = pairs[CUSTOMER_ID].tolist(), pairs[COMPANY_ID].tolist()
        results = [self.score(self.customers.get(c), self.companies.get(h))
                   for c, h in zip(customer_ids, company_ids, strict=True)]
        flags = {key: (self.is_common(name), _mixed(name))
                 for side in (self.customers, self.companies) for key, name in side.items()}
        none = (False, False)
        pair_flags = [(flags.get(c, none), flags.get(h, none)) for c, h in zip(customer_ids, company_ids, strict=True)]
        return pairs.assign(**{NAME_SCORE: np.array([round(s, 1) for s, _ in results], dtype=float)},
                            legal_form_differs=[d for _, d in results],
                            common_name=[a[0] or b[0] for a, b in pair_flags],
                            mixed_script=[a[1] or b[1] for a, b in pair_flags])


def _variants(name: CompanyName) -> Iterable[tuple[str, ...]]:
    yield name.tokens
    if name.trade_name:
        yield tuple(name.trade_name.split())


def _mixed(name: CompanyName | None) -> bool:
    return name is not None and name.mixed_script


# --- deciding -----------------------------------------------------------------------------------------------


def _strength(candidates: pd.DataFrame, policy: MatchPolicy) -> pd.Series:
    name = candidates[NAME_SCORE].where(~candidates["auto_created"],
                                        candidates[NAME_SCORE] * policy.auto_created_name_weight)
    kind = candidates["domain_kind"]
    bonus = np.where(kind.eq(DomainKind.KEY.value), 100.0, np.where(kind.eq(DomainKind.SHARED.value), 50.0, 0.0))
    return name.astype(float) + bonus


def _clusters(candidates: pd.DataFrame, names: _Names, policy: MatchPolicy) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Several customers for one company: a domain a few customers share with one company, or customers of one
    normalised name whose best candidate is the same company. Returns (cluster rows, the other candidates)."""
    shared = candidates[candidates["domain_kind"].eq(DomainKind.SHARED.value)]
    by_domain = shared[shared.groupby(COMPANY_ID)[CUSTOMER_ID].transform("nunique") > 1]
    ranked = candidates.assign(strength=_strength(candidates, policy)).sort_values(
        [CUSTOMER_ID, "strength"], ascending=[True, False])
    best = ranked.drop_duplicates(CUSTOMER_ID)
    best = best[best[NAME_SCORE] >= policy.auto_name_min]
    best = best.assign(text=[getattr(names.customers.get(c), "text", None) for c in best[CUSTOMER_ID]])
    same_name = best[best.groupby([COMPANY_ID, "text"])[CUSTOMER_ID].transform("nunique") > 1]
    rows = pd.concat([by_domain, same_name.drop(columns=["text", "strength"])], ignore_index=True)
    rows = rows.drop_duplicates([CUSTOMER_ID], ignore_index=True)
    size = rows.groupby(COMPANY_ID)[CUSTOMER_ID].transform("nunique")
    clusters = rows.assign(**{CATEGORY: Category.MANY_TO_ONE.value, REASONS: [
        f"{n} customers for this company" + (f"; shared domain {d}" if isinstance(d, str) else "; same name")
        for n, d in zip(size, rows[MATCHED_DOMAIN], strict=True)]})
    rest = candidates[~candidates[CUSTOMER_ID].isin(clusters[CUSTOMER_ID])]
    return clusters[[CUSTOMER_ID, COMPANY_ID, CATEGORY, MATCHED_DOMAIN, NAME_SCORE, REASONS]], rest


def _classify(candidates: pd.DataFrame, policy: MatchPolicy) -> pd.DataFrame:
    """Per customer: auto-link the best candidate on strong, uncontested evidence; else every candidate to review."""
    if candidates.empty:
        return pd.DataFrame(columns=[CUSTOMER_ID, COMPANY_ID, CATEGORY, MATCHED_DOMAIN, NAME_SCORE, SECOND_SCORE,
                                     REASONS])
    ranked = candidates.assign(strength=_strength(candidates, policy)).sort_values(
        [CUSTOMER_ID, "strength"], ascending=[True, False], ignore_index=True)
    position = ranked.groupby(CUSTOMER_ID).cumcount()
    second = ranked[position == 1].set_index(CUSTOMER_ID)["strength"]
    ranked[SECOND_SCORE] = ranked[CUSTOMER_ID].map(second)
    contested = ranked["strength"] - _rival_strength(ranked) < policy.gap
    clear_lead = ranked[SECOND_SCORE].isna() | (ranked["strength"] - ranked[SECOND_SCORE] >= policy.gap)
    strong = (ranked["domain_kind"].eq(DomainKind.KEY.value) & (ranked[NAME_SCORE] >= policy.auto_name_min)
              & ~ranked["common_name"] & ~ranked["mixed_script"])
    auto = (position == 0) & strong & clear_lead & ~contested
    auto_customers = set(ranked.loc[auto, CUSTOMER_ID])
    keep = auto | ~ranked[CUSTOMER_ID].isin(auto_customers)
    ranked[CATEGORY] = np.where(auto, Category.AUTO_LINK.value, Category.REVIEW.value)
    ranked[REASONS] = [_reasons(row) for row in ranked.itertuples(index=False)]
    columns = [CUSTOMER_ID, COMPANY_ID, CATEGORY, MATCHED_DOMAIN, NAME_SCORE, SECOND_SCORE, REASONS]
    return ranked.loc[keep, columns].reset_index(drop=True)


def _rival_strength(ranked: pd.DataFrame) -> pd.Series:
    """For each candidate row, the strongest other customer's strength for the same company (NaN: none)."""
    by_company = ranked.sort_values([COMPANY_ID, "strength"], ascending=[True, False])
    place = by_company.groupby(COMPANY_ID).cumcount()
    first = by_company[place == 0].set_index(COMPANY_ID)["strength"]
    second = by_company[place == 1].set_index(COMPANY_ID)["strength"]
    companies = by_company[COMPANY_ID]
    rival = np.where(place == 0, companies.map(second), companies.map(first))
    return pd.Series(rival, index=by_company.index, dtype=float).reindex(ranked.index)


def _reasons(row: Any) -> str:
    domain = getattr(row, MATCHED_DOMAIN)
    parts = [f"domain {domain}" + (" (shared)" if row.domain_kind == DomainKind.SHARED else "")
             if isinstance(domain, str) else "no domain", f"name {getattr(row, NAME_SCORE):.0f}"]
    second = getattr(row, SECOND_SCORE)
    if not pd.isna(second):
        parts.append(f"second-best {second:.0f} vs {row.strength:.0f}")
    for flag, text in (("legal_form_differs", "legal form differs"), ("common_name", "common name"),
                       ("mixed_script", "mixed scripts"), ("auto_created", "company made by HubSpot (CRM setting)")):
        if getattr(row, flag):
            parts.append(text)
    return "; ".join(parts)


def _without_candidate(customers: pd.DataFrame, names: _Names) -> pd.DataFrame:
    def reason(customer_id: str, email: object) -> str:
        if names.customers.get(customer_id) is None and not isinstance(email, str):
            return "no name and no email to match on"
        return "no company matched (create in HubSpot)"

    return pd.DataFrame({CUSTOMER_ID: customers[CUSTOMER_ID].to_numpy(), REASONS: [
        reason(c, e) for c, e in zip(customers[CUSTOMER_ID], customers[EMAIL], strict=True)]})
