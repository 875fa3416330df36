"""v3 (and opt-in v1/v2) verification against signatures computed here with hmac/hashlib."""

from __future__ import annotations

import hashlib

import pytest

from tests.plugins.signing import PREVIOUS_SECRET, SECRET, now_ms, v1_headers, v3, v3_headers
from warp_sync_pipeline.core.settings import SettingsError
from warp_sync_pipeline.core.webhooks.signature import (
    SignatureRejected,
    SignatureSettings,
    decode_uri_for_signing,
    verify_request,
)

BODY = b'[{"eventId":1,"subscriptionType":"company.creation","objectId":123,"occurredAt":1564113600000}]'
# As it arrives: a query, escapes HubSpot decodes (%3A %2F %40 %2C %28 %29 %21), one it keeps (%20),
# and a double-escaped %253A that must stay as it is (one decoding pass).
RAW_URI = "https://hooks.example.com/v1/webhooks/hubspot/company?portal=62515&note=a%3Ab%2Fc%40d%20e%2C%28x%29%21&k=%253A"
SIGNED_URI = "https://hooks.example.com/v1/webhooks/hubspot/company?portal=62515&note=a:b/c@d%20e,(x)!&k=%253A"

SETTINGS = SignatureSettings(secrets=(SECRET,))


def verify(headers: dict[str, str], *, settings: SignatureSettings = SETTINGS, uri: str = RAW_URI,
           body: bytes = BODY, method: str = "POST", now: int | None = None) -> str:
    return verify_request(settings, method=method, uri=uri, body=body, headers=headers,
                          now_ms=now_ms() if now is None else now)


def rejected(headers: dict[str, str], **kwargs: object) -> str:
    with pytest.raises(SignatureRejected) as info:
        verify(headers, **kwargs)  # type: ignore[arg-type]
    return info.value.code


def test_the_decoding_list_is_applied_once_and_only_to_listed_escapes() -> None:
    assert decode_uri_for_signing(RAW_URI) == SIGNED_URI
    every = "%3A%2F%3F%40%21%24%27%28%29%2A%2C%3B"
    assert decode_uri_for_signing(every) == ":/?@!$'()*,;"
    assert decode_uri_for_signing("%20%25%3D%26%2B%7E") == "%20%25%3D%26%2B%7E"
    assert decode_uri_for_signing("%3a%2f") == ":/"


def test_a_v3_signature_over_the_decoded_uri_with_query_passes() -> None:
    assert verify(v3_headers(SIGNED_URI, BODY)) == "v3"


def test_a_v3_signature_over_the_undecoded_uri_fails() -> None:
    assert rejected(v3_headers(RAW_URI, BODY)) == "SIGNATURE_INVALID"


def test_a_v3_signature_over_a_fully_decoded_uri_fails() -> None:
    from urllib.parse import unquote

    assert rejected(v3_headers(unquote(RAW_URI), BODY)) == "SIGNATURE_INVALID"


def test_lower_case_escapes_verify_whether_or_not_the_sender_decoded_them() -> None:
    raw = "https://hooks.example.com/hook?a=%3a%2f"
    assert verify(v3_headers("https://hooks.example.com/hook?a=:/", BODY), uri=raw) == "v3"
    assert verify(v3_headers("https://hooks.example.com/hook?a=%3a%2f", BODY), uri=raw) == "v3"


def test_body_method_and_secret_are_all_covered() -> None:
    headers = v3_headers(SIGNED_URI, BODY)
    assert rejected(headers, body=BODY.replace(b"123", b"124")) == "SIGNATURE_INVALID"
    assert rejected(headers, method="PUT") == "SIGNATURE_INVALID"
    assert rejected(v3_headers(SIGNED_URI, BODY, secret="someone-else")) == "SIGNATURE_INVALID"


def test_the_timestamp_is_part_of_the_signature() -> None:
    headers = v3_headers(SIGNED_URI, BODY)
    headers["X-HubSpot-Request-Timestamp"] = str(int(headers["X-HubSpot-Request-Timestamp"]) + 1)
    assert rejected(headers) == "SIGNATURE_INVALID"


@pytest.mark.parametrize(
    ("offset_ms", "accepted"),
    [
        (-300_000, True),
        (-300_001, False),
        (-3_600_000, False),
        (299_000, True),  # a sender's clock a little ahead is fine ...
        (300_000, True),
        (300_001, False),  # ... but not more than five minutes ahead
        (86_400_000, False),
    ],
)
def test_the_timestamp_must_be_within_five_minutes_either_way(offset_ms: int, accepted: bool) -> None:
    now = now_ms()
    headers = v3_headers(SIGNED_URI, BODY, timestamp_ms=now + offset_ms)
    if accepted:
        assert verify(headers, now=now) == "v3"
    else:
        assert rejected(headers, now=now) == "TIMESTAMP_OUT_OF_WINDOW"


@pytest.mark.parametrize(
    "timestamp",
    ["abc", "1.5e12", "-1700000000000", "0x1A", "\u0661\u0667\u0660\u0660\u0660", "12345678901234567890"],
)
def test_a_malformed_timestamp_is_rejected_not_an_error(timestamp: str) -> None:
    headers = v3_headers(SIGNED_URI, BODY)
    headers["X-HubSpot-Request-Timestamp"] = timestamp
    assert rejected(headers) == "TIMESTAMP_INVALID"


def test_a_missing_timestamp_or_signature_is_rejected() -> None:
    headers = v3_headers(SIGNED_URI, BODY)
    del headers["X-HubSpot-Request-Timestamp"]
    assert rejected(headers) == "TIMESTAMP_MISSING"
    assert rejected({"Content-Type": "application/json"}) == "SIGNATURE_MISSING"
    assert rejected({**v3_headers(SIGNED_URI, BODY), "X-HubSpot-Signature-v3": "  "}) == "SIGNATURE_MISSING"


@pytest.mark.parametrize("signature", ["sïgnature", "\u00ff" * 44, "🙂", "not-base64-at-all"])
def test_a_non_ascii_or_garbled_signature_is_rejected_not_an_error(signature: str) -> None:
    headers = {**v3_headers(SIGNED_URI, BODY), "X-HubSpot-Signature-v3": signature}
    assert rejected(headers) == "SIGNATURE_INVALID"


def test_header_names_are_case_insensitive() -> None:
    headers = {k.lower(): v for k, v in v3_headers(SIGNED_URI, BODY).items()}
    assert verify(headers) == "v3"


def test_the_previous_secret_is_accepted_only_while_configured() -> None:
    headers = v3_headers(SIGNED_URI, BODY, secret=PREVIOUS_SECRET)
    assert rejected(headers) == "SIGNATURE_INVALID"
    rotating = SignatureSettings(secrets=(SECRET, PREVIOUS_SECRET))
    assert verify(headers, settings=rotating) == "v3"
    assert verify(v3_headers(SIGNED_URI, BODY), settings=rotating) == "v3"


def test_v1_is_refused_unless_enabled() -> None:
    assert rejected(v1_headers(BODY)) == "SIGNATURE_VERSION_DISABLED"
    enabled = SignatureSettings(secrets=(SECRET,), allow_v1=True)
    assert verify(v1_headers(BODY), settings=enabled) == "v1"
    assert rejected(v1_headers(BODY, secret="wrong"), settings=enabled) == "SIGNATURE_INVALID"


def test_hubspots_published_v1_example_verifies_when_v1_is_enabled() -> None:
    # The worked example on HubSpot's v1 request-validation page.
    secret = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
    body = (b'[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,'
            b'"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"changeSource":"CRM",'
            b'"changeFlag":"NEW","appId":54321}]')
    headers = {"X-HubSpot-Signature": "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de",
               "X-HubSpot-Signature-Version": "v1"}
    assert verify(headers, settings=SignatureSettings(secrets=(secret,), allow_v1=True), body=body) == "v1"


def test_v2_is_refused_unless_enabled_and_covers_method_and_decoded_uri() -> None:
    signature = hashlib.sha256(SECRET.encode() + b"POST" + SIGNED_URI.encode() + BODY).hexdigest()
    headers = {"X-HubSpot-Signature": signature, "X-HubSpot-Signature-Version": "v2"}
    assert rejected(headers) == "SIGNATURE_VERSION_DISABLED"
    enabled = SignatureSettings(secrets=(SECRET,), allow_v2=True)
    assert verify(headers, settings=enabled) == "v2"
    assert rejected(headers, settings=enabled, method="PUT") == "SIGNATURE_INVALID"


def test_a_present_v3_header_decides_even_when_v1_is_enabled() -> None:
    enabled = SignatureSettings(secrets=(SECRET,), allow_v1=True)
    headers = {**v1_headers(BODY), **v3_headers(SIGNED_URI, BODY, secret="wrong")}
    assert rejected(headers, settings=enabled) == "SIGNATURE_INVALID"


def test_without_a_secret_nothing_verifies() -> None:
    assert rejected(v3_headers(SIGNED_URI, BODY), settings=SignatureSettings(secrets=())) == "WEBHOOKS_NOT_CONFIGURED"


def test_settings_come_from_the_environment_and_hide_the_secrets() -> None:
    settings = SignatureSettings.from_env({
        "HUBSPOT_CLIENT_SECRET": "s1", "HUBSPOT_CLIENT_SECRET_PREVIOUS": "s0", "WARP_WEBHOOK_ALLOW_V2": "yes",
    })
    assert settings.secrets == ("s1", "s0")
    assert (settings.allow_v1, settings.allow_v2) == (False, True)
    assert "s1" not in repr(settings) and "s0" not in repr(settings)
    with pytest.raises(SettingsError, match="WARP_WEBHOOK_ALLOW_V1"):
        SignatureSettings.from_env({"WARP_WEBHOOK_ALLOW_V1": "maybe"})


def test_the_helper_matches_a_known_v3_value() -> None:
    # Guards the test helper itself; the value is from `openssl dgst -sha256 -hmac secret -binary | base64`.
    assert v3("secret", "POST", "https://x/y", b"[]", "0") == "ZfJiD9rrV248n9d7K/gAVkdMDxB8UQm/s9D7T1hOEJQ="
