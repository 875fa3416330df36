"""`warp-sync demo`, `warp-sync dev`, `warp-sync stop`: the local stack on one machine."""

from __future__ import annotations

import time
from pathlib import Path

import click

from warp_sync_pipeline.core import stack
from warp_sync_pipeline.core.db import make_engine, redacted
from warp_sync_pipeline.core.migrations import upgrade
from warp_sync_pipeline.core.runtime import Runtime, ensure_runtime, local_cluster
from warp_sync_pipeline.core.settings import state_dir


def _step(message: str) -> float:
    click.echo(f"==> {message}")
    return time.monotonic()


def _database() -> Runtime:
    started = _step("PostgreSQL")
    runtime = ensure_runtime()
    kind = "private cluster (reused if already running)" if runtime.private_cluster else "WARP_DATABASE_URL"
    click.echo(f"    {kind}: {redacted(runtime.database_url)}  [{time.monotonic() - started:.1f}s]")
    started = _step("migrations")
    applied = upgrade(make_engine(runtime.database_url))
    click.echo(f"    {'applied ' + ', '.join(applied) if applied else 'up to date'}"
               f"  [{time.monotonic() - started:.1f}s]")
    return runtime


@click.command("demo")
def demo() -> None:
    """Bring the stack up from scratch (or reuse it) and show where everything is."""
    runtime = _database()
    click.echo("")
    click.echo(f"state folder:  {state_dir()}")
    click.echo(f"DAGSTER_HOME:  {runtime.dagster_home}")
    click.echo("stop it all:   make stop")


@click.command("mailcatcher")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8025, show_default=True, type=int)
@click.option("--folder", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where messages are saved (default: <state folder>/mail).")
def mailcatcher(host: str, port: int, folder: Path | None) -> None:
    """A local SMTP server that saves every message as an .eml file (the demo's mail server)."""
    from warp_sync_pipeline.core.mailcatcher import serve

    target = folder or state_dir() / "mail"
    click.echo(f"saving mail to {target}, listening on {host}:{port}")
    serve(target, host, port)


@click.command("stop")
def stop() -> None:
    """Stop everything `make demo` / `make dev` left running, then the private PostgreSQL."""
    for name in stack.stop_all():
        click.echo(f"stopped {name}")
    if local_cluster().stop():
        click.echo("stopped private PostgreSQL")
    click.echo("nothing left running")
