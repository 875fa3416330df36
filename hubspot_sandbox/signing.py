"""HubSpot's webhook request signatures (v1 and v3), as the sandbox computes them when it delivers."""

from __future__ import annotations

import base64
import hashlib
import hmac

# v3: HubSpot signs the URI with these escapes decoded (receivers are told to decode them too).
V3_DECODED_ESCAPES = {
    "%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'", "%28": "(",
    "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";",
}


def decode_uri_for_v3(uri: str) -> str:
    for escape, char in V3_DECODED_ESCAPES.items():
        uri = uri.replace(escape, char).replace(escape.lower(), char)
    return uri


def v1_signature(client_secret: str, body: bytes) -> str:
    """Lowercase hex SHA-256 of client secret + raw body."""
    return hashlib.sha256(client_secret.encode() + body).hexdigest()


def v3_signature(client_secret: str, method: str, uri: str, body: bytes, timestamp_ms: int) -> str:
    """Base64 HMAC-SHA256 (key: client secret) of method + decoded URI + body + timestamp."""
    message = method.encode() + decode_uri_for_v3(uri).encode() + body + str(timestamp_ms).encode()
    digest = hmac.new(client_secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()
