"""The core says what went wrong (a kind), the receiver which HTTP status says it (issue 14)."""

from __future__ import annotations

from warp_sync_pipeline.core.errors import Failure, ServiceError
from webhook_receiver.errors import HTTP_STATUS, ApiError, answer_of


def test_every_kind_of_core_failure_has_one_http_status() -> None:
    assert set(HTTP_STATUS) == set(Failure)
    assert answer_of(ServiceError(Failure.CONTRADICTS_EARLIER, "IDEMPOTENCY_KEY_REUSED", "reused", key="k")) == (
        422, "IDEMPOTENCY_KEY_REUSED", "reused", {"key": "k"})
    assert answer_of(ApiError(415, "UNSUPPORTED_MEDIA_TYPE", "JSON only")) == (415, "UNSUPPORTED_MEDIA_TYPE",
                                                                               "JSON only", {})
