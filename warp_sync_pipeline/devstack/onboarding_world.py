"""A generated day-one world with known truth: WARP's customers and a portal's companies, and who is whom.

Used by the matching tests (small) and `bench/bench_onboarding_match.py` (a million of each). Shares of
customers, by how their company can be found:
- BAN (85%): the company carries `warp_ban`; its name may be written differently.
- domain (5%): no BAN on the company; the customer's email domain is one of the company's domains (`domain`,
  `website` or `hs_additional_domains`); half named alike (expected: auto-link), half named by HubSpot from the
  domain (record source CRM setting; expected: review).
- name (5%): no BAN, no usable domain (public mail or none); half written alike, half with a typo or another
  legal form (expected: review, the true company first).
- none (3%): no company (expected: to create).
- decoys (2%): empty or whitespace names, one domain on many companies, public mail domains, mixed-script names,
  very common names, customers without email, BANs HubSpot holds twice; none has a true company here, and none
  may be auto-linked.
- clusters: organisations with two or three customers (billing accounts) on one company's domain (expected: one
  company for several customers).
Companies without any customer (the sales team's own prospects) make up the rest of the portal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from warp_sync_pipeline.core.onboarding.matching import (
    ADDITIONAL_DOMAINS,
    BAN,
    COMPANY_BAN,
    COMPANY_ID,
    COMPANY_NAME,
    CUSTOMER_ID,
    DOMAIN,
    EMAIL,
    LINKED_COMPANY,
    NAME,
    OBJECT_SOURCE,
    WEBSITE,
    Category,
)

_SYLLABLES = ("ac", "al", "am", "an", "ar", "ba", "be", "bo", "bri", "ca", "cel", "cor", "da", "del", "dor", "el",
              "en", "er", "fa", "fen", "fi", "ga", "gel", "glo", "ha", "hel", "hor", "in", "is", "ja", "ka", "kel",
              "kor", "la", "lem", "lin", "lo", "ma", "mar", "mel", "mi", "mo", "na", "nel", "nor", "no", "or", "pa",
              "pel", "pi", "po", "qua", "ra", "ren", "ri", "ro", "sa", "sel", "si", "sol", "ta", "tel", "ter", "ti",
              "to", "tra", "tur", "ul", "va", "vel", "vi", "vo", "wen", "wi", "xa", "ya", "zan", "zel", "zo", "zu")
_COMMON_WORDS = ("Telecom", "Services", "Networks", "Solutions", "Systems", "Group", "Holdings", "Communications",
                 "Logistics", "Consulting", "Trading", "Partners")
_LEGAL_FORMS = ("Ltd", "Limited", "Inc", "LLC", "GmbH", "S.A.", "plc", "Corp", "AG", "B.V.", "")
_TLDS = ("com", "co.uk", "de", "fr", "net", "io", "nl", "com.au")
_PUBLIC_MAIL = ("gmail.com", "yahoo.com", "outlook.com", "gmx.de", "web.de", "hotmail.com")

Kind = str  # the truth: ban, domain_same_name, domain_brand_name, name_alike, name_typo, none, decoy_*, cluster


@dataclass
class World:
    customers: pd.DataFrame  # matching.CUSTOMER_COLUMNS plus `kind` and `true_company` (None: no counterpart)
    companies: pd.DataFrame  # matching.COMPANY_COLUMNS

    def expected(self) -> pd.Series:
        """Each customer's expected category (customer id -> category); decoys have none (they must only never be
        auto-linked), except a BAN HubSpot holds twice."""
        return self.customers.set_index(CUSTOMER_ID)["kind"].map(_EXPECTED)


_EXPECTED = {
    "ban": Category.LINKED_BY_BAN.value,
    "domain_same_name": Category.AUTO_LINK.value,
    "domain_brand_name": Category.REVIEW.value,
    "name_alike": Category.REVIEW.value,
    "name_typo": Category.REVIEW.value,
    "none": Category.NO_CANDIDATE.value,
    "cluster": Category.MANY_TO_ONE.value,
    "decoy_duplicate_ban": Category.DUPLICATE_BAN.value,
}


class _Words:
    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def distinctive(self, n: int, syllables: int) -> np.ndarray:
        picks = self.rng.integers(0, len(_SYLLABLES), size=(n, syllables))
        table = np.array(_SYLLABLES, dtype=object)
        return np.array(["".join(row) for row in table[picks]], dtype=object)

    def names(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(display name, stem for domains, legal form) for `n` organisations; stems are unique."""
        stems = self._unique_stems(n)
        second = self.distinctive(n, 2)
        two_words = self.rng.random(n) < 0.4
        common = np.array(_COMMON_WORDS, dtype=object)[self.rng.integers(0, len(_COMMON_WORDS), n)]
        with_common = self.rng.random(n) < 0.5
        forms = np.array(_LEGAL_FORMS, dtype=object)[self.rng.integers(0, len(_LEGAL_FORMS), n)]
        names = [" ".join(p for p in (s.capitalize(), w.capitalize() if t else "", c if k else "", f) if p)
                 for s, w, t, c, k, f in zip(stems, second, two_words, common, with_common, forms, strict=True)]
        return np.array(names, dtype=object), stems, forms

    def _unique_stems(self, n: int) -> np.ndarray:
        stems = pd.unique(self.distinctive(int(n * 1.3) + 10, 3))
        while len(stems) < n:
            stems = pd.unique(np.concatenate([stems, self.distinctive(n, 4)]))
        return self.rng.permutation(stems)[:n]


def _typo(rng: np.random.Generator, name: str) -> str:
    """One letter dropped or swapped inside the first word, and the legal form changed."""
    first, _, rest = name.partition(" ")
    i = int(rng.integers(1, max(2, len(first) - 1)))
    first = first[:i] + first[i + 1:] if rng.random() < 0.5 else first[:i - 1] + first[i] + first[i - 1] + first[i + 1:]
    words = [w for w in rest.split() if w not in _LEGAL_FORMS]
    return " ".join([first, *words, str(rng.choice(["Ltd", "Inc", "GmbH"]))])


def generate(customers: int, *, seed: int = 7, prospects_share: float = 0.0) -> World:
    """A world of `customers` customers and about as many companies (plus `prospects_share` more on their own)."""
    rng = np.random.default_rng(seed)
    kinds = _kinds(rng, customers)
    words = _Words(rng)
    names, stems, _forms = words.names(customers)
    tlds = np.array(_TLDS, dtype=object)[rng.integers(0, len(_TLDS), customers)]
    domains = np.array([f"{s}.{t}" for s, t in zip(stems, tlds, strict=True)], dtype=object)
    builder = _Builder(rng, customers)
    for index, kind in enumerate(kinds):
        builder.add(index, kind, names[index], domains[index])
    prospects = int(customers * prospects_share)
    if prospects:
        p_names, p_stems, _ = words.names(prospects)
        for name, stem in zip(p_names, p_stems, strict=True):
            builder.company(None, name, f"{stem}-prospect.com", None, "CRM_UI")
    return builder.world()


def _kinds(rng: np.random.Generator, n: int) -> np.ndarray:
    shares = {"ban": 0.85, "domain_same_name": 0.025, "domain_brand_name": 0.025, "name_alike": 0.025,
              "name_typo": 0.025, "none": 0.03, "cluster": 0.01, "decoy": 0.01}
    kinds = rng.choice(list(shares), size=n, p=list(shares.values()))
    decoys = ("decoy_empty_name", "decoy_shared_domain", "decoy_public_mail", "decoy_mixed_script",
              "decoy_common_name", "decoy_no_email", "decoy_duplicate_ban")
    picked = rng.choice(decoys, size=n)
    return np.where(kinds == "decoy", picked, kinds)


class _Builder:
    def __init__(self, rng: np.random.Generator, n: int) -> None:
        self.rng = rng
        self.customer_rows: list[tuple[object, ...]] = []
        self.company_rows: list[tuple[object, ...]] = []
        self.cluster_domain: str | None = None
        self.cluster_left = 0
        self.cluster_company: str | None = None

    def company(self, ban: str | None, name: str | None, domain: str | None, additional: str | None,
                source: str, website: str | None = None) -> str:
        company_id = str(10_000_000 + len(self.company_rows))
        self.company_rows.append((company_id, ban, name, domain, website, additional, source))
        return company_id

    def customer(self, index: int, name: str, email: str | None, kind: Kind, truth: str | None) -> None:
        ban = f"ZT-{index:09d}"
        self.customer_rows.append((f"00000000-0000-4000-8000-{index:012d}", ban, name, email, None, kind, truth))

    def add(self, index: int, kind: Kind, name: str, domain: str) -> None:  # noqa: C901, PLR0912 - one branch per kind
        rng, ban, email = self.rng, f"ZT-{index:09d}", f"billing@{domain}"
        if kind == "ban":
            shown = name.upper() if rng.random() < 0.1 else name
            self.customer(index, name, email, kind, self.company(ban, shown, domain, None, "INTEGRATION"))
        elif kind == "domain_same_name":
            # The domain in one of the three places HubSpot keeps a company's domains.
            spot = rng.integers(0, 3)
            company = self.company(None, name, domain if spot == 0 else None,
                                   f"legacy-{index}.com;{domain}" if spot == 2 else None, "CRM_UI",
                                   website=f"https://www.{domain}/" if spot == 1 else None)
            self.customer(index, name, email, kind, company)
        elif kind == "domain_brand_name":
            brand = domain.split(".")[0].upper()
            self.customer(index, name, email, kind, self.company(None, brand, domain, None, "CRM_SETTING"))
        elif kind in ("name_alike", "name_typo"):
            shown = name if kind == "name_alike" else _typo(rng, name)
            mail = f"{name.split()[0].lower()}{index}@{rng.choice(_PUBLIC_MAIL)}" if rng.random() < 0.7 else None
            self.customer(index, name, mail, kind, self.company(None, shown, None, None, "CRM_UI"))
        elif kind == "none":
            self.customer(index, name, email, kind, None)
        elif kind == "cluster":
            self._cluster(index, name, domain)
        else:
            self._decoy(index, kind, name, domain)

    def _cluster(self, index: int, name: str, domain: str) -> None:
        if self.cluster_left == 0:
            self.cluster_left = int(self.rng.integers(2, 4))
            self.cluster_domain = domain
            self.cluster_company = self.company(None, name, domain, None, "CRM_UI")
        account = f"{name} (account {self.cluster_left})"
        self.customer(index, account, f"billing{self.cluster_left}@{self.cluster_domain}", "cluster",
                      self.cluster_company)
        self.cluster_left -= 1

    def _decoy(self, index: int, kind: Kind, name: str, domain: str) -> None:
        rng, email = self.rng, f"billing@{domain}"
        if kind == "decoy_empty_name":
            self.company(None, rng.choice(["", "   ", "-"]), None, None, "CRM_UI")
            self.customer(index, rng.choice(["", "  "]), None, kind, None)
        elif kind == "decoy_shared_domain":
            for _ in range(3):  # one domain on several companies: nobody's key
                self.company(None, f"{name} Branch {rng.integers(1, 99)}", domain, None, "CRM_UI")
            self.customer(index, f"Other {name}", email, kind, None)
        elif kind == "decoy_public_mail":
            self.company(None, f"{name} Plus", "gmail.com", None, "CRM_UI")
            self.customer(index, f"{name} Minus", f"someone{index}@gmail.com", kind, None)
        elif kind == "decoy_mixed_script":
            spoof = name.replace("a", "\u0430", 1).replace("o", "\u043e", 1)  # Cyrillic look-alikes
            self.company(None, spoof, f"{domain}.example", None, "CRM_UI")
            self.customer(index, name, email, kind, None)
        elif kind == "decoy_common_name":
            self.company(None, "Telecom Services", None, None, "CRM_UI")
            self.customer(index, "Telecom Services Ltd", None, kind, None)
        elif kind == "decoy_no_email":
            self.customer(index, f"{name} Holdings", None, kind, None)
        elif kind == "decoy_duplicate_ban":
            ban = f"ZT-{index:09d}"
            self.company(ban, name, None, None, "IMPORT")
            self.company(ban, f"{name} (copy)", None, None, "IMPORT")
            self.customer(index, name, email, kind, None)

    def world(self) -> World:
        customers = pd.DataFrame(self.customer_rows, columns=[CUSTOMER_ID, BAN, NAME, EMAIL, LINKED_COMPANY, "kind",
                                                              "true_company"])
        companies = pd.DataFrame(self.company_rows, columns=[COMPANY_ID, COMPANY_BAN, COMPANY_NAME, DOMAIN, WEBSITE,
                                                             ADDITIONAL_DOMAINS, OBJECT_SOURCE])
        return World(customers, companies)
