"""Run the sandbox: a threaded werkzeug server in a background thread, on loopback by default."""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from hubspot_sandbox.app import create_sandbox_app
from hubspot_sandbox.config import SandboxConfig
from hubspot_sandbox.state import SandboxState

log = logging.getLogger("hubspot_sandbox")


class _QuietHandler(WSGIRequestHandler):
    """Request lines go to the `hubspot_sandbox` logger at DEBUG, not to stderr."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s %s", self.command, self.path.split("?")[0], code)

    def log(self, type: str, message: str, *args: Any) -> None:  # noqa: A002 (werkzeug's signature)
        if type == "error":
            log.warning(message.rstrip(), *args)


class SandboxServer:
    """A local HubSpot. `start()` serves it in a background thread; `stop()` ends it.

    Settings beyond the named ones (portal_id, app_id, webhook_retry_initial_seconds, ...) are the
    fields of `SandboxConfig`; they are also what POST /_sandbox/reset restores.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        access_token: str,
        client_secret: str,
        webhook_target_url: str | None = None,
        rate_limit_per_10s: int | None = 100,
        search_per_second: int | None = 5,
        **settings: Any,
    ) -> None:
        config = SandboxConfig(access_token=access_token, client_secret=client_secret).updated({
            "webhook_target_url": webhook_target_url,
            "rate_limit_per_10s": rate_limit_per_10s,
            "search_per_second": search_per_second,
            **settings,
        })
        self.host = host
        self.requested_port = port
        self.state = SandboxState(config)
        self.app = create_sandbox_app(self.state)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the sandbox is not running")
        return self._server.server_port

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> SandboxServer:
        if self._server is not None:
            return self
        if self._stopped:
            raise RuntimeError("a stopped SandboxServer cannot start again; create a new one")
        server = make_server(self.host, self.requested_port, self.app, threaded=True, request_handler=_QuietHandler)
        # Many clients at once (a benchmark, 10 webhook workers, a test's threads): a deep backlog.
        server.socket.listen(256)
        self._server = server
        self.state.start()
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"hubspot-sandbox-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopped = True
        self.state.stop()  # also releases requests held by a timeout fault
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()
