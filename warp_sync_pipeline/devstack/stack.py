"""Background services of the local stack (sandbox, mail catcher, Dagster UI, receiver).

Each service runs detached in a session of its own, so it outlives the command that started it and
`warp-sync stop` can end it with its whole process group (`dagster dev` ignores SIGTERM when started
from a non-interactive script, hence the group kill and the SIGKILL fallback).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx

from warp_sync_pipeline.core.settings import state_dir


@dataclass(frozen=True)
class Service:
    name: str
    pid: int
    url: str | None
    log: str


def run_dir() -> Path:
    path = state_dir() / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _record(name: str) -> Path:
    return run_dir() / f"{name}.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purposes.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return False
    return True


def running(name: str) -> Service | None:
    path = _record(name)
    if not path.exists():
        return None
    service = Service(**json.loads(path.read_text()))
    if _alive(service.pid):
        return service
    path.unlink(missing_ok=True)
    return None


def start(name: str, argv: list[str], *, env: dict[str, str], url: str | None = None,
          ready_url: str | None = None, ready: Callable[[], bool] | None = None, timeout_s: float = 60.0,
          cwd: Path | None = None) -> Service:
    """Start `argv` detached unless it already runs; wait until `ready_url` answers (or `ready()` is true)."""
    if ready_url:
        ready = partial(_answers, ready_url)
    existing = running(name)
    if existing:
        return existing
    log_path = run_dir() / f"{name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    service = Service(name, proc.pid, url, str(log_path))
    _record(name).write_text(json.dumps(service.__dict__))
    if ready is not None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {log_path}")
            if ready():
                return service
            time.sleep(0.3)
        stop(name)
        raise RuntimeError(f"{name} did not become ready within {timeout_s:.0f}s; see {log_path}")
    return service


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code < 500
    except httpx.HTTPError:
        return False


def stop(name: str, *, grace_s: float = 10.0) -> bool:
    service = running(name)
    if service is None:
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(service.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and _alive(service.pid):
        time.sleep(0.1)
    if _alive(service.pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(service.pid, signal.SIGKILL)
    _record(name).unlink(missing_ok=True)
    return True


def stop_all() -> list[str]:
    stopped = []
    for path in sorted(run_dir().glob("*.json")):
        if stop(path.stem):
            stopped.append(path.stem)
    return stopped
