"""Inbound HubSpot webhooks: signature verification and event storage (plain Python, no Flask)."""

from warp_sync_pipeline.core.webhooks.events import (
    DEDUPE_KEY_SQL,
    HANDLED_SUBSCRIPTION_TYPES,
    MAX_EVENTS_PER_BATCH,
    BatchRejected,
    EventBatch,
    StoreCounts,
    dedupe_key,
    parse_batch,
    prepare_event,
    store_batch,
)
from warp_sync_pipeline.core.webhooks.signature import (
    SignatureRejected,
    SignatureSettings,
    decode_uri_for_signing,
    v3_signature,
    verify_request,
)

__all__ = [
    "DEDUPE_KEY_SQL",
    "HANDLED_SUBSCRIPTION_TYPES",
    "MAX_EVENTS_PER_BATCH",
    "BatchRejected",
    "EventBatch",
    "SignatureRejected",
    "SignatureSettings",
    "StoreCounts",
    "decode_uri_for_signing",
    "dedupe_key",
    "parse_batch",
    "prepare_event",
    "store_batch",
    "v3_signature",
    "verify_request",
]
