"""A loopback TCP proxy a test puts between a process and its server, to cut connections for real.

It relays bytes both ways and can: cut every open connection, refuse new ones, or cut one connection at the
moment its client sends a given message (say the COMMIT of a create), before or after the server gets it.
Nothing in the code under test is patched: the client sees a connection lost, as in production.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy.engine import make_url

CHUNK = 65536


@dataclass
class _Trap:
    """Cut the connection whose client sent `after` when it then sends `at`."""

    after: bytes
    at: bytes
    deliver: bool  # forward `at` to the server (and wait for its answer) before cutting
    refuse_afterwards: bool  # then cut every connection and refuse new ones, as if the server went away
    fired: threading.Event = field(default_factory=threading.Event)


@dataclass(eq=False)  # kept in a set: hashed by identity
class _Pair:
    client: socket.socket
    server: socket.socket
    seen: bytes = b""  # everything the client sent that a trap still looks for (trimmed as it goes)
    armed: bool = False  # this connection sent the trap's `after`
    muted: bool = False  # the server's answers are swallowed (the answer to a delivered COMMIT)
    answered: threading.Event = field(default_factory=threading.Event)

    def close(self) -> None:
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: set[_Pair] = set()
        self._refusing = False
        self._trap: _Trap | None = None
        self._closed = False
        threading.Thread(target=self._accept, name="tcp-proxy-accept", daemon=True).start()

    def url_for(self, database_url: str) -> str:
        """The same database URL, through this proxy."""
        return make_url(database_url).set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    # --- faults ----------------------------------------------------------------------------------------------

    def cut_all(self) -> None:
        with self._lock:
            pairs, self._pairs = set(self._pairs), set()
        for pair in pairs:
            pair.close()

    def refuse(self, refusing: bool = True) -> None:
        """While refusing, a new connection is accepted and closed at once (the server seems down)."""
        self._refusing = refusing

    def cut_at(self, *, after: bytes, at: bytes, deliver: bool, refuse_afterwards: bool = False) -> threading.Event:
        """Cut the first connection that sends `after` and then `at`; the event is set once it is cut."""
        trap = _Trap(after, at, deliver, refuse_afterwards)
        self._trap = trap
        return trap.fired

    def heal(self) -> None:
        self._trap = None
        self._refusing = False

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        self.cut_all()

    # --- relaying --------------------------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._refusing:
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            pair = _Pair(client, server)
            with self._lock:
                self._pairs.add(pair)
            threading.Thread(target=self._client_to_server, args=(pair,), daemon=True).start()
            threading.Thread(target=self._server_to_client, args=(pair,), daemon=True).start()

    def _client_to_server(self, pair: _Pair) -> None:
        try:
            while data := pair.client.recv(CHUNK):
                trap = self._trap
                if trap is not None and not trap.fired.is_set() and self._springs(pair, trap, data):
                    self._spring(pair, trap, data)
                    return
                pair.server.sendall(data)
        except OSError:
            pass
        self._drop(pair)

    def _springs(self, pair: _Pair, trap: _Trap, data: bytes) -> bool:
        pair.seen = (pair.seen + data)[-CHUNK:]
        if not pair.armed and trap.after in pair.seen:
            pair.armed = True
            pair.seen = pair.seen[pair.seen.index(trap.after) + len(trap.after):]
        return pair.armed and trap.at in pair.seen

    def _spring(self, pair: _Pair, trap: _Trap, data: bytes) -> None:
        if trap.refuse_afterwards:
            self._refusing = True
        if trap.deliver:
            pair.muted = True
            pair.server.sendall(data)
            pair.answered.wait(10)  # the server has done what it was sent; its answer is lost
        self._trap = None
        self._drop(pair)
        if trap.refuse_afterwards:
            self.cut_all()  # the server is gone for every connection, not only this one
        trap.fired.set()

    def _server_to_client(self, pair: _Pair) -> None:
        try:
            while data := pair.server.recv(CHUNK):
                if pair.muted:
                    pair.answered.set()
                    continue
                pair.client.sendall(data)
        except OSError:
            pass
        self._drop(pair)

    def _drop(self, pair: _Pair) -> None:
        with self._lock:
            self._pairs.discard(pair)
        pair.close()


@contextlib.contextmanager
def tcp_proxy_for(database_url: str) -> Iterator[tuple[TcpProxy, str]]:
    """A proxy in front of the database URL's server; yields it and the URL through it."""
    url = make_url(database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    try:
        yield proxy, proxy.url_for(database_url)
    finally:
        proxy.close()
