"""Names and domains as matching keys: what each reduces to, and what never counts."""

from __future__ import annotations

import pytest

from warp_sync_pipeline.core.onboarding.domains import DomainPolicy, registrable_domain
from warp_sync_pipeline.core.onboarding.names import normalize_name
from warp_sync_pipeline.core.settings import load_settings


@pytest.mark.parametrize(
    ("raw", "text", "legal_form"),
    [
        ("Acme Telecom GmbH & Co. KG", "acme telecom", "gmbh co kg"),
        ("ACME-Telecom", "acme telecom", None),
        ("The Acme Co.", "acme", "co"),
        ("Telefónica S.A.", "telefonica", "sa"),
        ("Smith & Sons Limited", "smith and sons", "ltd"),
        ("Smith + Sons Ltd.", "smith and sons", "ltd"),
        ("A.B.C. Telecom, Inc.", "abc telecom", "inc"),
        ("  Zürich   Versicherung  AG ", "zurich versicherung", "ag"),
        ("The", "the", None),  # nothing but the article: kept, not emptied
        ("Ltd", "ltd", None),  # nothing but a legal form: kept
    ],
)
def test_a_name_reduces_to_what_identifies_the_organisation(raw: str, text: str, legal_form: str | None) -> None:
    name = normalize_name(raw)
    assert name is not None
    assert (name.text, name.legal_form) == (text, legal_form)


@pytest.mark.parametrize("raw", [None, "", "   ", "-", "!!!", "\u200b"])
def test_a_name_with_nothing_to_match_on_is_none(raw: str | None) -> None:
    assert normalize_name(raw) is None


def test_a_trade_name_is_kept_beside_the_legal_name() -> None:
    name = normalize_name("Northwind Holdings Ltd d/b/a Northwind Mobile")
    assert name is not None and (name.text, name.trade_name, name.legal_form) == (
        "northwind holdings", "northwind mobile", "ltd")
    assert normalize_name("d/b/a Fastnet").text == "fastnet"  # type: ignore[union-attr]


def test_letters_of_other_scripts_are_kept_and_a_mix_of_scripts_is_flagged() -> None:
    greek = normalize_name("Ολυμπιακή Τηλεπικοινωνίες")
    spoof = normalize_name("\u0410cme Ltd")  # a Cyrillic А passing for a Latin A
    assert greek is not None and not greek.mixed_script and greek.text == "ολυμπιακη τηλεπικοινωνιεσ"  # casefold: final sigma too
    assert spoof is not None and spoof.mixed_script and spoof.text != "acme"


@pytest.mark.parametrize(
    ("raw", "domain"),
    [
        ("ops@Mail.Example.co.uk", "example.co.uk"),
        ("https://www.shop.example.com/about?x=1", "example.com"),
        ("www.example.de:8443", "example.de"),
        ("example.com.", "example.com"),
        ("team@bücher.de", "xn--bcher-kva.de"),
        ("someone.github.io", "someone.github.io"),  # a private suffix: each site its own owner
        ("co.uk", None),
        ("192.168.1.10", None),
        ("localhost", None),
        ("not a domain", None),
        (None, None),
    ],
)
def test_every_form_reduces_to_the_registrable_domain(raw: str | None, domain: str | None) -> None:
    assert registrable_domain(raw) == domain


def test_public_mail_isp_and_the_operators_own_domains_are_never_keys() -> None:
    settings = load_settings({"WARP_ONBOARDING_OWN_DOMAINS": "zentel.example, https://www.zentel-group.com",
                              "WARP_ONBOARDING_EXCLUDED_DOMAINS": "partner.example",
                              "WARP_ONBOARDING_MAX_CUSTOMERS_PER_DOMAIN": "4"})
    policy = DomainPolicy.from_settings(settings)
    assert {"gmail.com", "t-online.de", "comcast.net", "zentel.example", "zentel-group.com",
            "partner.example"} <= policy.excluded
    assert "acme.com" not in policy.excluded
    assert policy.max_customers == 4
