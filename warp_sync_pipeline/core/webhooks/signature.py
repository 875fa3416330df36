"""HubSpot request signatures (hubspot-api.md §5): v3 always, v1/v2 only when enabled.

v3 is base64(HMAC-SHA256(client secret, method + URI + raw body + timestamp)) over the public URI
HubSpot called, after HubSpot's percent-decoding list, with the timestamp (epoch ms) no more than
five minutes away from now in either direction. Everything is compared as bytes in constant time,
and anything malformed in the headers is a `SignatureRejected` (the receiver answers 401), never an
exception from the comparison itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass

from warp_sync_pipeline.core.settings import WarpSettings, load_settings

SIGNATURE_V3_HEADER = "X-HubSpot-Signature-v3"
TIMESTAMP_HEADER = "X-HubSpot-Request-Timestamp"
SIGNATURE_HEADER = "X-HubSpot-Signature"
SIGNATURE_VERSION_HEADER = "X-HubSpot-Signature-Version"

MAX_TIMESTAMP_SKEW_MS = 5 * 60 * 1000

# HubSpot decodes exactly these escapes in the URI before signing (not the "?" that starts the query).
URI_DECODINGS = {
    "3A": ":", "2F": "/", "3F": "?", "40": "@", "21": "!", "24": "$",
    "27": "'", "28": "(", "29": ")", "2A": "*", "2C": ",", "3B": ";",
}
_PERCENT_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_TIMESTAMP = re.compile(r"[0-9]{1,15}")


class SignatureRejected(Exception):
    """The request cannot be trusted; `code` is stable, `message` safe to answer (no secret in it)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class SignatureSettings:
    """Client secrets (current first, then the previous one during a rotation) and allowed versions."""

    secrets: tuple[str, ...]
    allow_v1: bool = False
    allow_v2: bool = False
    max_skew_ms: int = MAX_TIMESTAMP_SKEW_MS

    @property
    def configured(self) -> bool:
        return bool(self.secrets)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SignatureSettings:
        """HUBSPOT_CLIENT_SECRET, HUBSPOT_CLIENT_SECRET_PREVIOUS, WARP_WEBHOOK_ALLOW_V1/_V2."""
        return cls.from_settings(load_settings(environ))

    @classmethod
    def from_settings(cls, settings: WarpSettings) -> SignatureSettings:
        current, previous = settings.hubspot_client_secret, settings.hubspot_client_secret_previous
        return cls(
            secrets=tuple(s for s in (current, previous) if s),
            allow_v1=settings.webhook_allow_v1,
            allow_v2=settings.webhook_allow_v2,
        )

    def __repr__(self) -> str:  # never show the secrets
        return (f"SignatureSettings(secrets=<{len(self.secrets)} hidden>, allow_v1={self.allow_v1}, "
                f"allow_v2={self.allow_v2}, max_skew_ms={self.max_skew_ms})")


def decode_uri_for_signing(uri: str, *, lowercase_escapes: bool = True) -> str:
    """Apply HubSpot's decoding list in one pass (so `%253A` stays `%253A`).

    Percent-escapes are case-insensitive (RFC 3986), so `%3a` decodes too; `lowercase_escapes=False`
    decodes only the upper-case spelling HubSpot's list shows.
    """

    def replace(match: re.Match[str]) -> str:
        hex_digits = match.group(1)
        key = hex_digits.upper() if lowercase_escapes else hex_digits
        return URI_DECODINGS.get(key, match.group(0))

    return _PERCENT_ESCAPE.sub(replace, uri) if "%" in uri else uri


def signing_uris(uri: str) -> list[str]:
    """The URI forms a valid v3/v2 signature may cover (one, or two when lower-case escapes occur)."""
    forms = [decode_uri_for_signing(uri)]
    upper_only = decode_uri_for_signing(uri, lowercase_escapes=False)
    if upper_only != forms[0]:
        forms.append(upper_only)
    return forms


def v3_signature(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """base64(HMAC-SHA256(secret, method + uri + body + timestamp)); `uri` already decoded."""
    message = (method + uri).encode("utf-8") + body + timestamp.encode("ascii")
    return base64.b64encode(hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()).decode("ascii")


def v2_signature(secret: str, method: str, uri: str, body: bytes) -> str:
    return hashlib.sha256((secret + method + uri).encode("utf-8") + body).hexdigest()


def v1_signature(secret: str, body: bytes) -> str:
    return hashlib.sha256(secret.encode("utf-8") + body).hexdigest()


def _ascii_header(headers: Mapping[str, str], name: str, missing_code: str, malformed_code: str) -> str:
    value = headers.get(name.lower())
    if value is None or not value.strip():
        raise SignatureRejected(missing_code, f"the {name} header is missing")
    if not value.isascii():
        raise SignatureRejected(malformed_code, f"the {name} header is not ASCII")
    return value.strip()


def _matches(expected: list[str], provided: str) -> bool:
    provided_bytes = provided.encode("ascii")
    matched = False
    for candidate in expected:
        # Check every candidate (no early exit), each compared in constant time.
        matched |= hmac.compare_digest(candidate.encode("ascii"), provided_bytes)
    return matched


def verify_request(
    settings: SignatureSettings,
    *,
    method: str,
    uri: str,
    body: bytes,
    headers: Mapping[str, str],
    now_ms: int,
) -> str:
    """Check a request's signature; return the version that passed ("v3", "v2" or "v1").

    `uri` is the full public URI as HubSpot called it (scheme, host, raw path, query when present),
    not yet decoded. `headers` may be any mapping; names are matched case-insensitively.
    Raises `SignatureRejected` with a stable code.
    """
    if not settings.secrets:
        raise SignatureRejected("WEBHOOKS_NOT_CONFIGURED", "no HubSpot client secret is configured")
    lowered = {str(k).lower(): v for k, v in headers.items()}

    if SIGNATURE_V3_HEADER.lower() in lowered:
        provided = _ascii_header(lowered, SIGNATURE_V3_HEADER, "SIGNATURE_MISSING", "SIGNATURE_INVALID")
        raw_timestamp = _ascii_header(lowered, TIMESTAMP_HEADER, "TIMESTAMP_MISSING", "TIMESTAMP_INVALID")
        if not _TIMESTAMP.fullmatch(raw_timestamp):
            raise SignatureRejected("TIMESTAMP_INVALID", f"the {TIMESTAMP_HEADER} header is not epoch milliseconds")
        if abs(now_ms - int(raw_timestamp)) > settings.max_skew_ms:
            raise SignatureRejected(
                "TIMESTAMP_OUT_OF_WINDOW",
                f"the request timestamp is more than {settings.max_skew_ms // 1000} seconds from the server's clock",
            )
        expected = [
            v3_signature(secret, method, form, body, raw_timestamp)
            for secret in settings.secrets
            for form in signing_uris(uri)
        ]
        if not _matches(expected, provided):
            raise SignatureRejected("SIGNATURE_INVALID", "the v3 signature does not match")
        return "v3"

    if SIGNATURE_HEADER.lower() not in lowered:
        raise SignatureRejected("SIGNATURE_MISSING", f"the {SIGNATURE_V3_HEADER} header is missing")
    provided = _ascii_header(lowered, SIGNATURE_HEADER, "SIGNATURE_MISSING", "SIGNATURE_INVALID").lower()
    version = (lowered.get(SIGNATURE_VERSION_HEADER.lower()) or "v1").strip().lower()
    if version == "v1" and settings.allow_v1:
        expected = [v1_signature(secret, body) for secret in settings.secrets]
    elif version == "v2" and settings.allow_v2:
        expected = [v2_signature(secret, method, form, body) for secret in settings.secrets for form in signing_uris(uri)]
    else:
        shown = version if version.isascii() and version.isprintable() and len(version) <= 8 else "unknown"
        raise SignatureRejected(
            "SIGNATURE_VERSION_DISABLED",
            f"signature version {shown!r} is not accepted; send {SIGNATURE_V3_HEADER}",
        )
    if not _matches(expected, provided):
        raise SignatureRejected("SIGNATURE_INVALID", f"the {version} signature does not match")
    return version
