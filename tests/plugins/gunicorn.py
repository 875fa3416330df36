"""The receiver under a real gunicorn, for tests that need its processes (raw request URIs, killed workers)."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from tests import REPO
from tests.plugins.signing import SECRET
from warp_sync_pipeline.devstack.localpg import free_port


@dataclass
class Gunicorn:
    master: subprocess.Popen
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def worker_pids(self) -> list[int]:
        """The master's children (its workers), from /proc."""
        children = Path(f"/proc/{self.master.pid}/task/{self.master.pid}/children").read_text().split()
        return [int(pid) for pid in children]


@contextlib.contextmanager
def running_gunicorn(database_url: str, control_socket: Path, *options: str,
                     env: Mapping[str, str] | None = None) -> Iterator[Gunicorn]:
    """The receiver under gunicorn on a free port (its own process group), its control socket where given."""
    port = free_port()
    environ = {**os.environ, "WARP_DATABASE_URL": database_url, "HUBSPOT_CLIENT_SECRET": SECRET, **(env or {})}
    environ.pop("WARP_PUBLIC_BASE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--worker-class", "gthread", "--threads", "2", *options,
         "--bind", f"127.0.0.1:{port}", "--control-socket", str(control_socket), "webhook_receiver:create_app()"],
        cwd=REPO, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200 and control_socket.exists():
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
            time.sleep(0.1)
        yield Gunicorn(proc, port)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
