"""`warp-sync reconcile` (a run of the reconciliation job, submitted to the run queue and followed) and
`warp-sync demo-seed`.

Both work from a shell with the stack's environment (WARP_DATABASE_URL, DAGSTER_HOME, HUBSPOT_BASE_URL,
HUBSPOT_ACCESS_TOKEN, SMTP_*); without WARP_DATABASE_URL they use the private PostgreSQL, like `warp-sync db`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from warp_sync_pipeline.core.settings import SettingsError, load_settings

if TYPE_CHECKING:
    from warp_sync_pipeline.core.reconcile.results import Report


def _dagster_ui() -> str:
    """Where the Dagster UI is: WARP_DAGSTER_UI_URL; else the local stack's port (`make dev` serves it there);
    else port 3000, where `dg dev` alone serves it."""
    from warp_sync_pipeline.cli_stack import kept_demo_settings

    configured = load_settings().dagster_ui_url
    if configured:
        return configured
    kept = kept_demo_settings()
    return f"http://127.0.0.1:{kept['dagster_port'] if kept else 3000}"


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.command("reconcile")
@click.option("--dry-run", is_flag=True, help="Compute the plan and the report; change neither side.")
@click.option("--allow-mass-write", is_flag=True,
              help="Let this run write even when the plan would change more than the brake allows.")
@click.option("--no-follow", is_flag=True, help="Submit the run and print its id; do not wait for it.")
@click.option("--rule-draft", default=None, metavar="NAME",
              help="Preview rule draft NAME (`warp-sync rules draft`): a dry run whose report compares the draft's "
                   "plan with the live rules' on the same pull.")
@click.option("--incremental", is_flag=True,
              help="Reconcile only what moved since the last good run (the schedule's choice on most nights); "
                   "without one, the run sweeps in full.")
def reconcile(dry_run: bool, allow_mass_write: bool, no_follow: bool, rule_draft: str | None,
              incremental: bool) -> None:
    """Submit a run of the reconciliation job to the Dagster run queue and follow it to its end.

    The run is built from the code location (WARP_DAGSTER_WORKSPACE, else the local stack's while its code server
    runs, else the checkout's workspace.yaml), like a run launched in the UI: it waits for another reconciliation or full pull to finish, the run-status sensors see
    it, and the UI can re-execute it. A Dagster daemon must be running (`make demo` and `make dev` start one). The
    shell shows each stage's progress, then the report's counts; the exit status is the run's (0 succeeded).
    """
    import uuid

    import dagster as dg

    from warp_sync_pipeline.core.db import make_engine
    from warp_sync_pipeline.devstack.runtime import ensure_runtime
    from warp_sync_pipeline.runs import DRY_RUN_TAG, RECONCILIATION_JOB_NAME, RULE_DRAFT_TAG, STARTED_FROM_TAG
    from warp_sync_pipeline.shell_runs import ShellRunError, daemon_problem, launch

    try:
        runtime = ensure_runtime()
        workspace = _workspace()
    except SettingsError as exc:
        _fail(str(exc))
    if not workspace.is_file():
        _fail(f"WARP_DAGSTER_WORKSPACE: no workspace file at {workspace}")
    run_id = str(uuid.uuid4())
    dry_run = dry_run or rule_draft is not None  # a preview never writes
    settings: dict[str, Any] = {"dry_run": dry_run, "allow_mass_write": allow_mass_write,
                                "mode": "incremental" if incremental else "full"}
    tags = {DRY_RUN_TAG: "true" if dry_run else "false", STARTED_FROM_TAG: "shell"}
    if rule_draft:
        settings["rule_draft"], tags[RULE_DRAFT_TAG] = rule_draft, rule_draft
    config = {"resources": {"reconciliation": {"config": settings}}}
    click.echo(f"==> reconciliation{' (dry run)' if dry_run else ''}{' allowing mass writes' if allow_mass_write else ''}"
               f"{f' previewing rule draft {rule_draft}' if rule_draft else ''}")
    with dg.DagsterInstance.get() as instance:
        problem = daemon_problem(instance)
        if problem:
            _fail(f"{problem}, so a queued run would never start: start it with `make dev` (or `make demo`), or "
                  f"`dagster-daemon run -w {workspace}` with this DAGSTER_HOME")
        started = time.monotonic()
        try:
            launch(workspace, RECONCILIATION_JOB_NAME, run_id=run_id, run_config=config, tags=tags)
        except ShellRunError as exc:
            _fail(str(exc))
        click.echo(f"    run {run_id} submitted to the run queue: {_dagster_ui()}/runs/{run_id}")
        if no_follow:
            return
        engine = make_engine(runtime.database_url)
        try:
            status = _follow(instance, engine, run_id)
            _finish(instance, engine, run_id, status, time.monotonic() - started)
        finally:
            engine.dispose()


def _workspace() -> Path:
    """WARP_DAGSTER_WORKSPACE; else the local stack's (its code server has the stack's settings) while it runs;
    else the checkout's workspace.yaml."""
    from warp_sync_pipeline.core.settings import project_root, state_dir
    from warp_sync_pipeline.devstack import stack

    configured = load_settings().dagster_workspace
    if configured:
        return Path(configured).resolve()
    local = state_dir() / "workspace.yaml"
    if local.exists() and stack.running("code-server") is not None:
        return local
    return project_root() / "workspace.yaml"


def _follow(instance: Any, engine: Any, run_id: str) -> Any:
    """Print the run's status changes and each stage's progress until it ends; return its final status."""
    import dagster as dg

    from warp_sync_pipeline.core.reconciliation_runs import get_run
    from warp_sync_pipeline.shell_runs import ShellRunError, queued_behind, watch

    def progress() -> dict[str, str]:
        record = get_run(engine, run_id)
        return record.progress if record else {}

    status = None
    try:
        for event in watch(instance, run_id, progress):
            status = event.status
            if event.progress:
                click.echo(f"    {event.progress}")
            elif status == dg.DagsterRunStatus.QUEUED:
                run = instance.get_run_by_id(run_id)
                behind = queued_behind(instance, run) if run else []
                click.echo("    queued" + (f" behind {', '.join(behind)} (one full pull at a time)" if behind else ""))
            else:
                click.echo(f"    {status.value.lower()}")
    except ShellRunError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail(f"stopped following; run {run_id} goes on (cancel it in the UI: {_dagster_ui()}/runs/{run_id})",
              code=130)
    return status


def _finish(instance: Any, engine: Any, run_id: str, status: Any, seconds: float) -> None:
    import dagster as dg

    from warp_sync_pipeline.core.reconcile.results import Report
    from warp_sync_pipeline.core.reconciliation_runs import get_run
    from warp_sync_pipeline.runs import failure_messages
    from warp_sync_pipeline.shell_runs import materialization_metadata

    if status != dg.DagsterRunStatus.SUCCESS:
        reasons = failure_messages(instance, run_id) or ["no reason recorded"]
        verb = "was cancelled" if status == dg.DagsterRunStatus.CANCELED else "failed"
        _fail(f"reconciliation run {run_id} {verb}: " + "\n       ".join(reasons) +
              f"\n       see its steps in the Dagster UI ({_dagster_ui()}/runs/{run_id})", code=1)
    record = get_run(engine, run_id)
    report = Report.read(record.report) if record and record.report else None
    email = materialization_metadata(instance, run_id, "reconciliation_report").get("email", "unknown")
    _print_summary(run_id, record.status if record else "unknown", report, str(email), seconds)
    _print_preview(engine, run_id)


def _print_preview(engine: Any, run_id: str) -> None:
    """What a run under a rule draft found: per field, the live rules' counts beside the draft's."""
    from warp_sync_pipeline.cli_rules import preview_lines
    from warp_sync_pipeline.core.rule_drafts import preview_of_run

    stored = preview_of_run(engine, run_id)
    if stored is None:
        return
    click.echo(f"rule draft {stored.summary.get('draft')}: live rules -> draft, on this run's pull")
    for line in preview_lines(stored.summary):
        click.echo(f"    {line}")


def _print_summary(run_id: str, status: str, report: Report | None, email: str, seconds: float) -> None:
    from warp_sync_pipeline.core.wording import count_label

    counts = {count_label(name): value for name, value in (report.counts if report else {}).items()}
    width = max((len(name) for name in counts), default=10)
    click.echo(f"    run {run_id}: {status}{' (dry run)' if report and report.dry_run else ''} in {seconds:.1f}s")
    click.echo("")
    for name, value in counts.items():
        click.echo(f"    {name:<{width}}  {value:>10,}")
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
    click.echo("next: warp-sync reconcile --dry-run  (then without --dry-run to write both sides)")
