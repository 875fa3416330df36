"""The `warp-sync` command. Each group is thin: it calls one core service."""

from __future__ import annotations

import json
import os
import sys

import click

from warp_sync_pipeline.core.settings import SettingsError, load_dotenv


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


class _Commands(click.Group):
    """Runs a command; a database that cannot be reached is one line naming the cause and the server (the
    traceback with --debug), not a page of traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            from warp_sync_pipeline.core.db import database_unreachable

            cause = database_unreachable(exc)
            if cause is None or ctx.params.get("debug"):
                raise
            _fail(f"DATABASE_UNAVAILABLE: {cause} (--debug shows the traceback)")


@click.group(cls=_Commands)
@click.version_option(package_name="warp-sync", prog_name="warp-sync")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
def main(debug: bool) -> None:
    """warp-sync: keep WARP customers and HubSpot companies in step. Reads ./.env first, as Dagster's commands do."""
    load_dotenv()


# --- database -------------------------------------------------------------------------------
@main.group()
def db() -> None:
    """The PostgreSQL warp-sync uses (a private one unless WARP_DATABASE_URL is set)."""


@db.command("start")
def db_start() -> None:
    """Start (or reuse) the database and print where it is."""
    from warp_sync_pipeline.core.db import redacted
    from warp_sync_pipeline.devstack.runtime import ensure_runtime

    try:
        runtime = ensure_runtime()
    except SettingsError as exc:
        _fail(str(exc))
    kind = "private cluster" if runtime.private_cluster else "WARP_DATABASE_URL"
    click.echo(f"database ({kind}): {redacted(runtime.database_url)}")
    click.echo(f"dagster storage: {redacted(runtime.dagster_database_url)}")


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply pending sql/NNN_*.sql files in order (safe to run concurrently and repeatedly)."""
    from warp_sync_pipeline.core.db import make_engine
    from warp_sync_pipeline.core.migrations import MigrationError, upgrade
    from warp_sync_pipeline.devstack.runtime import ensure_runtime

    try:
        runtime = ensure_runtime(with_dagster=False)
        engine = make_engine(runtime.database_url)
        applied = upgrade(engine)
    except (SettingsError, MigrationError) as exc:
        _fail(str(exc))
    if applied:
        for name in applied:
            click.echo(f"applied {name}")
    else:
        click.echo("database is up to date")


@db.command("stop")
def db_stop() -> None:
    """Stop the private cluster (nothing happens when WARP_DATABASE_URL points elsewhere)."""
    from warp_sync_pipeline.devstack.runtime import local_cluster

    click.echo("stopped private PostgreSQL" if local_cluster().stop() else "private PostgreSQL was not running")


@db.command("status")
def db_status() -> None:
    """Where the database is and whether it answers: WARP_DATABASE_URL's server when it is set (reachable, and
    the migrations applied), else the private cluster's record. Exits 1 when the database does not answer."""
    from warp_sync_pipeline.core.db import database_unreachable, make_engine, redacted
    from warp_sync_pipeline.core.migrations import applied_versions, discover
    from warp_sync_pipeline.core.settings import load_settings
    from warp_sync_pipeline.devstack.runtime import local_cluster

    try:
        url = load_settings().database_url
    except SettingsError as exc:
        _fail(str(exc))
    if url is None:
        click.echo(json.dumps({"kind": "private cluster", **local_cluster().status()}, indent=2, default=str))
        return
    engine = make_engine(url, pool_size=1, max_overflow=0, connect_args={"connect_timeout": 5})
    status: dict[str, object] = {"kind": "WARP_DATABASE_URL", "url": redacted(url)}
    try:
        applied = applied_versions(engine)
        known = [m.version for m in discover()]
        status.update(reachable=True, migrations_applied=len(applied), migrations_pending=sorted(set(known) - set(applied)))
    except Exception as exc:  # noqa: BLE001 - a status command reports, it does not crash
        status.update(reachable=False, error=database_unreachable(exc) or type(exc).__name__)
    finally:
        engine.dispose()
    click.echo(json.dumps(status, indent=2))
    if not status["reachable"]:
        sys.exit(1)


@main.command("env")
def env() -> None:
    """Print shell exports for the local stack (`eval "$(warp-sync env)"`): the database and Dagster, and once
    `make demo` has run, the sandbox, the mail catcher and the receiver too."""
    import shlex

    from warp_sync_pipeline.cli_stack import existing_stack_variables
    from warp_sync_pipeline.devstack.runtime import ensure_runtime

    for key, value in existing_stack_variables(ensure_runtime()).items():
        click.echo(f"export {key}={shlex.quote(value)}")


@main.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("argv", nargs=-1, type=click.UNPROCESSED, required=True)
def exec_(argv: tuple[str, ...]) -> None:
    """Run a command with the local stack's environment (what `warp-sync env` prints)."""
    from warp_sync_pipeline.cli_stack import existing_stack_variables
    from warp_sync_pipeline.devstack.runtime import ensure_runtime

    os.environ.update(existing_stack_variables(ensure_runtime()))
    os.execvp(argv[0], list(argv))


# --- subcommands of other areas -----------------------------------------------------------------
# Each area keeps its commands in a module of its own (warp_sync_pipeline/cli_<area>.py) and is
# registered here with one line.
from warp_sync_pipeline.cli_stack import clean, demo, dev, mailcatcher, stop  # noqa: E402

main.add_command(demo)
main.add_command(dev)
main.add_command(mailcatcher)
main.add_command(stop)
main.add_command(clean)

from warp_sync_pipeline.cli_hubspot import hubspot  # noqa: E402

main.add_command(hubspot)

from warp_sync_pipeline.cli_sandbox import sandbox  # noqa: E402

main.add_command(sandbox)

from warp_sync_pipeline.cli_credentials import credentials  # noqa: E402

main.add_command(credentials)

from warp_sync_pipeline.cli_queue import queue  # noqa: E402

main.add_command(queue)

from warp_sync_pipeline.cli_events import events  # noqa: E402

main.add_command(events)

from warp_sync_pipeline.cli_reconcile import demo_seed, reconcile  # noqa: E402

main.add_command(reconcile)
main.add_command(demo_seed)

from warp_sync_pipeline.cli_rules import rules  # noqa: E402

main.add_command(rules)


if __name__ == "__main__":
    main()
