"""Route guard: `@require("customers:create")` checks the Authorization header for a permission."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app, g, request

from warp_sync_pipeline.core.auth import authorize
from webhook_receiver.resources import receiver_resources

F = TypeVar("F", bound=Callable[..., Any])


def require(permission: str) -> Callable[[F], F]:
    def decorate(view: F) -> F:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            # An AuthError (401/403) is answered by the receiver's error handler.
            g.principal = authorize(
                receiver_resources().db,
                request.headers.get("Authorization"),
                permission,
                bootstrap_token=current_app.config.get("WARP_API_TOKEN"),
            )
            return view(*args, **kwargs)

        return guarded  # type: ignore[return-value]

    return decorate
