"""Domains as matching keys: every domain a company has, and the domain of a customer's contact email.

Each is reduced to its registrable domain (`https://www.Shop.Example.co.uk/x` -> `example.co.uk`) by the Public
Suffix List snapshot bundled in the `publicsuffixlist` wheel (its version is the snapshot's date; nothing is
fetched at run time), after lower-casing and IDNA encoding (`bücher.de` -> `xn--bcher-kva.de`). A domain is a
key only where it can name one organisation: never a public mail provider, an ISP's mail domain or the operator's
own (lists in `data/`, extended by settings), and never a domain more than a few customers use.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import idna
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from publicsuffixlist import PublicSuffixList

from warp_sync_pipeline.core.settings import WarpSettings

DATA_DIR = Path(__file__).parent / "data"
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://")
_HOST_END = re.compile(r"[/?#:\s;,]")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")


@cache
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList()  # the bundled snapshot (publicsuffixlist's own data file)


def registrable_domain(raw: str | None) -> str | None:
    """The registrable domain of an email address, URL or host name; None when there is none (a bare public
    suffix such as `co.uk`, an IP address, text that is not a host)."""
    if raw is None:
        return None
    text = str(raw).strip().lower()
    if "@" in text:
        text = text.rsplit("@", 1)[1]
    return _registrable(_HOST_END.split(_SCHEME.sub("", text), maxsplit=1)[0].strip("."))


def _registrable(host: str) -> str | None:
    """A host (lower case) reduced to its registrable domain: IDNA-encoded, then the Public Suffix List."""
    if not host or "." not in host or _IPV4.match(host):
        return None
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError:
            return None
    return _suffixes().privatesuffix(host)


def hosts(values: pd.Series) -> pd.Series:
    """The host of each email address, URL or host name (lower case; None where there is none), cut in Arrow's
    vectorized kernels: what `registrable_domain` does first, without the Public Suffix List."""
    text = pa.array(values.astype(object).where(values.notna(), None), type=pa.large_string(), from_pandas=True)
    text = pc.utf8_lower(pc.utf8_trim_whitespace(text))
    text = pc.replace_substring_regex(text, pattern=r"^.*@", replacement="")
    text = pc.replace_substring_regex(text, pattern=_SCHEME.pattern, replacement="")
    text = pc.replace_substring_regex(text, pattern=_HOST_END.pattern + ".*$", replacement="")
    text = pc.utf8_trim(text, characters=".")
    host = pd.Series(text.to_numpy(zero_copy_only=False), index=values.index, dtype=object)
    return host.where(host.notna() & host.ne(""), None)


def ending_in(host: pd.Series, domains: set[str] | frozenset[str]) -> pd.Series:
    """Which hosts are one of `domains` or under one (a registrable domain is the host's last labels)."""
    found = pd.Series(False, index=host.index)
    text = pa.array(host.where(host.notna(), None).astype(object), type=pa.large_string(), from_pandas=True)
    for labels in range(1, 5):
        tail = pc.extract_regex(text, pattern=rf"(?P<tail>(?:[^.]+\.){{{labels}}}[^.]+)$")
        tails = pd.Series(pc.struct_field(tail, "tail").to_numpy(zero_copy_only=False), index=host.index, dtype=object)
        found |= tails.isin(domains).to_numpy()
    return found


def registrable_domains(values: pd.Series) -> pd.Series:
    """`registrable_domain` of each value (None where there is none), each distinct host computed once."""
    host = hosts(values)
    distinct = host.dropna().unique()
    found = {candidate: _registrable(candidate) for candidate in distinct}
    return host.astype(object).map(found).where(host.notna(), None).astype(object)


def company_domains(companies: pd.DataFrame, *, company_id: str, columns: Iterable[str],
                    list_column: str | None = None, among: set[str] | None = None) -> pd.DataFrame:
    """(company id, registrable domain) for every domain a company has: each of `columns` (`domain`,
    `website`) and each `;`-separated entry of `list_column` (`hs_additional_domains`); distinct pairs. With
    `among`, only those domains (the others are not reduced at all: a million companies' domains cost seconds)."""
    parts = [companies[[company_id, name]].rename(columns={name: "raw"}) for name in columns]
    if list_column is not None:
        listed = companies[[company_id, list_column]].dropna(subset=[list_column])
        listed = listed.assign(raw=listed[list_column].astype(str).str.split(";")).explode("raw")
        parts.append(listed[[company_id, "raw"]])
    raw = pd.concat(parts, ignore_index=True).dropna(subset=["raw"])
    if among is not None:
        raw = raw[ending_in(hosts(raw["raw"]), among).to_numpy()]
    pairs = pd.DataFrame({company_id: raw[company_id].to_numpy(),
                          "domain": registrable_domains(raw["raw"]).to_numpy()})
    pairs = pairs.dropna(subset=["domain"])
    if among is not None:
        pairs = pairs[pairs["domain"].isin(among)]
    return pairs.drop_duplicates(ignore_index=True)


def read_domain_list(path: Path) -> frozenset[str]:
    """A bundled list: one domain per line, `#` comments; each reduced to its registrable domain."""
    entries = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return frozenset(d for d in (registrable_domain(e) for e in entries if e) if d)


@dataclass(frozen=True)
class DomainPolicy:
    """Which domains may be keys. `max_customers`: a domain on more customers than this belongs to a provider
    or a group, not to one organisation (up to it, the customers are one organisation's accounts)."""

    excluded: frozenset[str]
    max_customers: int = 3

    @classmethod
    def bundled(cls, *, own: Iterable[str] = (), extra: Iterable[str] = (), max_customers: int = 3) -> DomainPolicy:
        listed = read_domain_list(DATA_DIR / "public_mail_domains.txt") | read_domain_list(DATA_DIR / "isp_domains.txt")
        added = {d for d in (registrable_domain(x) for x in (*own, *extra)) if d}
        return cls(excluded=listed | frozenset(added), max_customers=max_customers)

    @classmethod
    def from_settings(cls, settings: WarpSettings) -> DomainPolicy:
        return cls.bundled(own=_split(settings.onboarding_own_domains), extra=_split(settings.onboarding_excluded_domains),
                           max_customers=settings.onboarding_max_customers_per_domain)


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").replace(";", ",").split(",") if part.strip()]
