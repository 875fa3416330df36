"""gunicorn settings for a receiver pool whose /metrics sums its workers (Prometheus multiprocess mode):
`gunicorn -c python:webhook_receiver.gunicorn_conf --bind ... 'webhook_receiver:create_app()'`.

prometheus_client decides at import whether it writes to files, so PROMETHEUS_MULTIPROC_DIR is set here, when
gunicorn loads this file, before any worker imports it. Each pool needs a folder of its own (set
PROMETHEUS_MULTIPROC_DIR per pool, or leave it unset for a fresh temporary one): the folder is emptied when the
master starts (files of a previous master would be summed in forever) and a worker that exits is marked dead (its
live gauges stop counting; its counters stay in the sums).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

_GIVEN = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
METRICS_DIR = Path(_GIVEN or tempfile.mkdtemp(prefix="warp-sync-metrics-"))
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(METRICS_DIR)


def on_starting(server: Any) -> None:
    METRICS_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    for path in METRICS_DIR.iterdir():
        if path.is_file():
            path.unlink()


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    if not _GIVEN:  # a temporary folder of our own
        shutil.rmtree(METRICS_DIR, ignore_errors=True)
