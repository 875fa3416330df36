"""`warp-sync reconcile` (the reconciliation job, run in this process) and `warp-sync demo-seed`.

Both work from a shell with the stack's environment (WARP_DATABASE_URL, DAGSTER_HOME, HUBSPOT_BASE_URL,
HUBSPOT_ACCESS_TOKEN, SMTP_*); without WARP_DATABASE_URL they use the private PostgreSQL, like `warp-sync db`.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import click

from warp_sync_pipeline.core.settings import SettingsError, load_settings

if TYPE_CHECKING:
    from warp_sync_pipeline.core.reconcile.results import Report


def _dagster_ui() -> str:
    """Where the Dagster UI is: `make dev` sets WARP_DAGSTER_UI_URL; `dg dev` alone serves port 3000."""
    return load_settings().dagster_ui_url or "http://127.0.0.1:3000"


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.command("reconcile")
@click.option("--dry-run", is_flag=True, help="Compute the plan and the report; change neither side.")
@click.option("--allow-mass-write", is_flag=True,
              help="Let this run write even when the plan would change more than the brake allows.")
def reconcile(dry_run: bool, allow_mass_write: bool) -> None:
    """Run the reconciliation job now, in this process, and print its summary.

    The run is stored in the Dagster instance of DAGSTER_HOME (open it in the UI with `make dev`), its row and
    report in hubspot_reconciliation_runs, and the report is emailed when SMTP is configured.
    """
    import warnings

    import dagster as dg

    # Dagster's own run-status sensors pass a beta parameter; the warning says nothing about our code.
    warnings.filterwarnings("ignore", category=dg.BetaWarning)

    from warp_sync_pipeline.core.db import make_engine
    from warp_sync_pipeline.core.reconcile.results import Report
    from warp_sync_pipeline.core.reconciliation_runs import get_run, mark_failed
    from warp_sync_pipeline.devstack.runtime import ensure_runtime
    from warp_sync_pipeline.runs import DRY_RUN_TAG, RECONCILIATION_JOB_NAME

    try:
        runtime = ensure_runtime()
        from warp_sync_pipeline.definitions import defs

        job = defs().resolve_job_def(RECONCILIATION_JOB_NAME)
    except SettingsError as exc:
        _fail(str(exc))
    settings: dict[str, Any] = {"dry_run": dry_run, "allow_mass_write": allow_mass_write}
    started = time.monotonic()
    click.echo(f"==> reconciliation{' (dry run)' if dry_run else ''}{' allowing mass writes' if allow_mass_write else ''}")
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            instance=instance,
            # The steps' debug lines stay in the run's event log (the UI); the shell gets the summary.
            run_config={"resources": {"reconciliation": {"config": settings}},
                        "loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            tags={DRY_RUN_TAG: "true" if dry_run else "false"},
            raise_on_error=False,
        )
    run_id = result.run_id
    engine = make_engine(runtime.database_url)
    try:
        if not result.success:
            failure = result.get_run_failure_event()
            reason = (failure.message if failure else "") or "the run failed"
            # Nothing else may be watching (the daemon runs with `make dev` only): mark the row here.
            mark_failed(engine, run_id, f"Run failed: {reason}", dry_run=dry_run)
            _fail(f"reconciliation run {run_id} failed: {reason}\n"
                  f"       see its steps in the Dagster UI ({_dagster_ui()}/runs/{run_id}, `make dev`)", code=1)
        record = get_run(engine, run_id)
    finally:
        engine.dispose()
    # The report as the run made it (the stored JSON keeps its keys in jsonb's order, not the report's).
    made = result.output_for_node("reconciliation_report") or (record.report if record else None)
    report = Report.read(made) if made else None
    email = _email_outcome(result)
    _print_summary(run_id, record.status if record else "unknown", report, email, time.monotonic() - started)


def _email_outcome(result: Any) -> str:
    for materialization in result.asset_materializations_for_node("reconciliation_report"):
        value = materialization.metadata.get("email")
        if value is not None:
            return str(value.value)
    return "unknown"


def _print_summary(run_id: str, status: str, report: Report | None, email: str, seconds: float) -> None:
    counts = report.counts if report else {}
    width = max((len(name) for name in counts), default=10)
    click.echo(f"    run {run_id}: {status}{' (dry run)' if report and report.dry_run else ''} in {seconds:.1f}s")
    click.echo("")
    for name, value in counts.items():
        click.echo(f"    {name.replace('_', ' '):<{width}}  {value:>10,}")
    for alert in report.alerts if report else []:
        click.echo(f"    ALERT: {alert}")
    for note in report.notes if report else []:
        click.echo(f"    note: {note}")
    click.echo("")
    click.echo(f"report:    hubspot_reconciliation_runs row {run_id} (columns report, report_markdown)")
    click.echo(f"email:     {email}")
    click.echo(f"Dagster:   {_dagster_ui()}/runs/{run_id}  (`make dev` serves the UI; the asset "
               "reconciliation_report shows the report)")


@click.command("demo-seed")
@click.option("--customers", type=click.IntRange(50, 2_000_000), default=1000, show_default=True,
              help="About how many customers (and their companies) to seed.")
@click.option("--replace", is_flag=True, help="Empty WARP's customer tables first (a demo database only).")
@click.option("--manual-field", default="contact_email", show_default=True,
              help="Two-way field switched to MANUAL review, so a MANUAL conflict is among the cases ('' for none).")
def demo_seed(customers: int, replace: bool, manual_field: str) -> None:
    """Seed WARP and the HubSpot sandbox with every kind of difference for a reconciliation to find.

    Writes to the sandbox only (HUBSPOT_BASE_URL must point at it) and refuses a WARP database that already
    holds customers unless --replace.
    """
    from hubspot_sandbox.control import SandboxControl, SandboxControlError
    from warp_sync_pipeline.core.db import make_engine
    from warp_sync_pipeline.core.hubspot import DEFAULT_BASE_URL, HubSpotError, client_from_env
    from warp_sync_pipeline.core.migrations import upgrade
    from warp_sync_pipeline.devstack.demo_seed import DemoSeedError, seed_demo
    from warp_sync_pipeline.devstack.runtime import ensure_runtime

    try:
        runtime = ensure_runtime(with_dagster=False)
        base_url = load_settings().hubspot_base_url
        if base_url is None or base_url == DEFAULT_BASE_URL:
            raise SettingsError("HUBSPOT_BASE_URL", "must point at the HubSpot sandbox: demo-seed never writes to HubSpot")
        engine = make_engine(runtime.database_url)
        upgrade(engine)
        client = client_from_env(engine)
    except SettingsError as exc:
        _fail(str(exc))
    started = time.monotonic()
    click.echo(f"==> seeding about {customers:,} customers into WARP and the sandbox at {base_url}")
    try:
        with client, SandboxControl(base_url) as control:
            seeded = seed_demo(engine, client=client, seed_companies=control.seed, customers=customers,
                               manual_field=manual_field or None, replace=replace)
    except DemoSeedError as exc:
        _fail(f"{exc.code}: {exc}")
    except (SandboxControlError, HubSpotError) as exc:
        _fail(f"the sandbox refused: {exc}")
    finally:
        engine.dispose()
    data = seeded.data
    click.echo(f"    {len(data.customers):,} customers, {len(data.companies):,} companies "
               f"in {time.monotonic() - started:.1f}s")
    if manual_field:
        click.echo(f"    rule changed: {manual_field} is settled by MANUAL review (hubspot_field_mappings)")
    click.echo(f"    expected: {len(data.expected_changes):,} field changes, {len(data.expected_orphans):,} orphans, "
               f"{len(data.expected_duplicates):,} duplicate BAN(s), {len(data.expected_links):,} link(s) by BAN")
    for case, count in sorted(data.cases.items()):
        if case != "in_sync":
            click.echo(f"      {count:>5,} x {case}")
    click.echo(f"      {data.cases.get('in_sync', 0):>5,} x in sync")
    click.echo("next: warp-sync reconcile [--dry-run]")
