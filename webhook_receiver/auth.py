"""Route guard: `@require("customers:create")` checks the Authorization header for a permission."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app, g, request

from warp_sync_pipeline.core.auth import AuthError, authorize
from webhook_receiver.errors import ApiError

F = TypeVar("F", bound=Callable[..., Any])


def require(permission: str) -> Callable[[F], F]:
    def decorate(view: F) -> F:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                g.principal = authorize(
                    current_app.extensions["warp_db"],
                    request.headers.get("Authorization"),
                    permission,
                    bootstrap_token=current_app.config.get("WARP_API_TOKEN"),
                )
            except AuthError as exc:
                raise ApiError(exc.status, exc.code, exc.message) from None
            return view(*args, **kwargs)

        return guarded  # type: ignore[return-value]

    return decorate
