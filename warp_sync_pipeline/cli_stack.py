"""`warp-sync demo`, `warp-sync dev`, `warp-sync stop`: the local stack on one machine."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import click

from warp_sync_pipeline.core.db import make_engine, redacted
from warp_sync_pipeline.core.migrations import upgrade
from warp_sync_pipeline.core.settings import load_settings, state_dir
from warp_sync_pipeline.devstack import stack
from warp_sync_pipeline.devstack.localpg import free_port, port_is_free
from warp_sync_pipeline.devstack.runtime import Runtime, ensure_runtime, local_cluster
from warp_sync_pipeline.runs import CODE_LOCATION

DEMO_RECIPIENTS = "warp-admins@example.com"
# The stack's ports and throwaway secrets, in the state folder.
DEMO_SETTINGS_FILE = "demo-env.json"
DEMO_MAX_CHANGE_SHARE = "0.25"


def _step(message: str) -> float:
    click.echo(f"==> {message}")
    return time.monotonic()


def _done(started: float, detail: str = "") -> None:
    click.echo(f"    {detail}  [{time.monotonic() - started:.1f}s]" if detail else
               f"    done  [{time.monotonic() - started:.1f}s]")


# The stack's services and their ports: settings key -> (service, variable, flag).
DEMO_PORTS = {
    "sandbox_port": ("sandbox", "WARP_DEMO_SANDBOX_PORT", "--sandbox-port"),
    "smtp_port": ("mailcatcher", "WARP_DEMO_SMTP_PORT", "--smtp-port"),
    "receiver_port": ("receiver", "WARP_DEMO_RECEIVER_PORT", "--receiver-port"),
    "dagster_port": ("dagster", "WARP_DEMO_DAGSTER_PORT", "--dagster-port"),
    "code_server_port": ("code-server", "WARP_DEMO_CODE_SERVER_PORT", "--code-server-port"),
    "mailbox_port": ("mailcatcher", "WARP_DEMO_MAILBOX_PORT", "--mailbox-port"),
}
# What the demo itself needs (`make dev` adds the receiver and the UI).
DEMO_SERVICES = ("sandbox_port", "smtp_port", "code_server_port", "mailbox_port")


def demo_settings(ports: dict[str, int | None] | None = None) -> dict[str, str]:
    """The local stack's ports and throwaway secrets, made once and kept private in the state folder. `ports`
    (flags) and WARP_DEMO_*_PORT choose ports; a chosen port replaces the kept one."""
    path = state_dir() / DEMO_SETTINGS_FILE
    settings: dict[str, str] = json.loads(path.read_text()) if path.exists() else {
        "HUBSPOT_ACCESS_TOKEN": "pat-demo-" + secrets.token_hex(16),
        "HUBSPOT_CLIENT_SECRET": secrets.token_hex(24),
        "WARP_API_TOKEN": "wsk_demo_" + secrets.token_urlsafe(24),
        "WARP_SECRET_KEY": secrets.token_urlsafe(32),
    }
    configured = load_settings()
    for key in DEMO_PORTS:
        chosen = (ports or {}).get(key) or getattr(configured, f"demo_{key}")
        settings[key] = str(chosen) if chosen else settings.get(key) or str(free_port())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2))
    path.chmod(0o600)
    return settings


def check_port(settings: dict[str, str], key: str) -> None:
    """Before a service starts: its port must be free (one line naming how to choose another, not a traceback)."""
    service, variable, flag = DEMO_PORTS[key]
    port = int(settings[key])
    if stack.running(service) is None and not port_is_free(port):
        raise click.ClickException(f"port {port} for the {service} is in use by another program: choose another "
                                   f"with {flag} or {variable}")


def port_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The --*-port flags of the commands that bring the stack up."""
    for key, (service, variable, flag) in reversed(DEMO_PORTS.items()):
        command = click.option(flag, key, type=click.IntRange(1, 65535), default=None,
                               help=f"Port of the {service} (else {variable}, else the one kept).")(command)
    return command


def stack_environment(runtime: Runtime, settings: dict[str, str]) -> dict[str, str]:
    """What every process of the local stack sees: the shell's environment under the stack's own variables (the
    demo's values win over a developer's shell, which may point at real systems)."""
    return {**os.environ, **stack_variables(runtime, settings)}


def kept_demo_settings() -> dict[str, str] | None:
    """The stack's settings once `make demo` or `make dev` has made them, else None (nothing is made here)."""
    return demo_settings() if (state_dir() / DEMO_SETTINGS_FILE).exists() else None


def existing_stack_variables(runtime: Runtime) -> dict[str, str]:
    """The stack's variables once `make demo` or `make dev` has made its settings, else only the runtime's (for
    `warp-sync env` and `exec`, so every command the demo prints works under them)."""
    kept = kept_demo_settings()
    return stack_variables(runtime, kept) if kept else runtime.environment()


def stack_variables(runtime: Runtime, settings: dict[str, str]) -> dict[str, str]:
    """The stack's own variables: the database, Dagster, the sandbox, the mail catcher, the receiver."""
    receiver_url = f"http://127.0.0.1:{settings['receiver_port']}"
    return {
        **runtime.environment(),
        "HUBSPOT_BASE_URL": f"http://127.0.0.1:{settings['sandbox_port']}",
        "HUBSPOT_ACCESS_TOKEN": settings["HUBSPOT_ACCESS_TOKEN"],
        "HUBSPOT_CLIENT_SECRET": settings["HUBSPOT_CLIENT_SECRET"],
        "HUBSPOT_WEBHOOK_TARGET_URL": f"{receiver_url}/v1/webhooks/hubspot/company",
        "WARP_PUBLIC_BASE_URL": receiver_url,
        "WARP_API_TOKEN": settings["WARP_API_TOKEN"],
        "WARP_SECRET_KEY": settings["WARP_SECRET_KEY"],
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": settings["smtp_port"],
        "SMTP_STARTTLS": "false",
        "SMTP_FROM": "warp-sync@localhost",
        "WARP_REPORT_RECIPIENTS": DEMO_RECIPIENTS,
        "WARP_DAGSTER_UI_URL": f"http://127.0.0.1:{settings['dagster_port']}",
        "WARP_DAGSTER_WORKSPACE": str(workspace_file(settings)),
        # The demo's data differs on purpose in one record of six or so (every kind of difference, for the report to
        # show): the production brake (5%) would stop its nightly, so the demo allows a quarter.
        "WARP_RECONCILE_MAX_CHANGE_SHARE": DEMO_MAX_CHANGE_SHARE,
    }


def _warp_sync() -> str:
    return str(Path(sys.executable).parent / "warp-sync")


def workspace_file(settings: dict[str, str]) -> Path:
    """The stack's Dagster workspace: its one code server, which the daemon, the UI and `warp-sync reconcile`
    share (as in production)."""
    path = state_dir() / "workspace.yaml"
    text = ("load_from:\n  - grpc_server:\n      host: 127.0.0.1\n"
            f"      port: {settings['code_server_port']}\n      location_name: {CODE_LOCATION}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def _bring_up_dagster(env: dict[str, str], settings: dict[str, str]) -> None:
    """The code server and the daemon (the run queue, sensors, schedules): a run submitted from the shell
    starts only where a daemon runs."""
    bin_dir = Path(sys.executable).parent
    started = _step("Dagster code server and daemon")
    port = settings["code_server_port"]
    stack.start("code-server", [str(bin_dir / "dagster"), "code-server", "start", "-h", "127.0.0.1", "-p", port,
                                "-m", "warp_sync_pipeline.definitions", "--location-name", CODE_LOCATION],
                env=env, ready=_CodeServerCheck(bin_dir, port), timeout_s=180)
    since = time.time()
    daemon = stack.start("daemon", [str(bin_dir / "dagster-daemon"), "run", "-w", env["WARP_DAGSTER_WORKSPACE"]],
                         env=env, ready=partial(_daemon_reporting, since), timeout_s=120)
    _done(started, f"code server on port {port}, daemon log {daemon.log}")


class _CodeServerCheck:
    """The code server serves: its port listens, then Dagster's `grpc-health-check` passes. The health check is a
    Python process of its own (seconds of CPU): asked at most every few seconds, never while the port is shut."""

    EVERY_S = 3.0

    def __init__(self, bin_dir: Path, port: str) -> None:
        self._argv = [str(bin_dir / "dagster"), "api", "grpc-health-check", "-h", "127.0.0.1", "-p", port]
        self._port = int(port)
        self._asked = 0.0

    def __call__(self) -> bool:
        if port_is_free(self._port) or time.monotonic() - self._asked < self.EVERY_S:
            return False
        self._asked = time.monotonic()
        return subprocess.run(self._argv, capture_output=True, check=False).returncode == 0


def _daemon_reporting(since: float) -> bool:
    """The daemon's run queue has reported in since `since` (an older heartbeat may be a stopped daemon's)."""
    import dagster as dg

    from warp_sync_pipeline.shell_runs import QUEUE_DAEMON

    with dg.DagsterInstance.get() as instance:
        beat = instance.get_daemon_heartbeats().get(QUEUE_DAEMON)
    return beat is not None and beat.timestamp >= since


def _bring_up_base(ports: dict[str, int | None], *, services: tuple[str, ...] = DEMO_SERVICES,
                   ) -> tuple[Runtime, dict[str, str], dict[str, str], bool]:
    """The database, the sandbox, the mail catcher, HubSpot's properties and Dagster's code server and daemon;
    every port of `services` checked first, so a clash stops the command before anything starts."""
    settings = demo_settings(ports)
    for key in services:
        check_port(settings, key)
    started = _step("PostgreSQL")
    runtime = ensure_runtime()
    kind = "private cluster (reused if already running)" if runtime.private_cluster else "WARP_DATABASE_URL"
    _done(started, f"{kind}: {redacted(runtime.database_url)}")

    started = _step("migrations")
    applied = upgrade(make_engine(runtime.database_url))
    _done(started, "applied " + ", ".join(applied) if applied else "up to date")

    env = stack_environment(runtime, settings)

    started = _step("HubSpot sandbox")
    sandbox_was_running = stack.running("sandbox") is not None
    sandbox = stack.start("sandbox", [_warp_sync(), "sandbox", "--port", settings["sandbox_port"]], env=env,
                          url=env["HUBSPOT_BASE_URL"], ready_url=f"{env['HUBSPOT_BASE_URL']}/_sandbox/counters")
    _done(started, f"{sandbox.url} ({'reused' if sandbox_was_running else 'started'}; log {sandbox.log})")

    started = _step("mail catcher (SMTP) and its mailbox pages")
    mail_dir = state_dir() / "mail"
    catcher = stack.start("mailcatcher", [_warp_sync(), "mailcatcher", "--port", settings["smtp_port"],
                                          "--folder", str(mail_dir), "--web-port", settings["mailbox_port"]],
                          env=env, url=mailbox_url(settings))
    _wait_for_port(int(settings["smtp_port"]))
    _wait_for_port(int(settings["mailbox_port"]))
    _done(started, f"smtp://127.0.0.1:{settings['smtp_port']}, read at {catcher.url} (saved in {mail_dir})")

    started = _step("HubSpot properties")
    subprocess.run([_warp_sync(), "hubspot", "setup"], env=env, check=True, stdout=subprocess.DEVNULL)
    _done(started, "warp_* company properties present")

    _bring_up_dagster(env, settings)
    return runtime, settings, env, sandbox_was_running


def mailbox_url(settings: dict[str, str]) -> str:
    return f"http://127.0.0.1:{settings['mailbox_port']}/"


def _wait_for_port(port: int, timeout_s: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise click.ClickException(f"nothing is listening on port {port}")


def _customer_count(runtime: Runtime) -> int:
    import sqlalchemy as sa

    engine = make_engine(runtime.database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM customers")).scalar_one()
    finally:
        engine.dispose()


@click.command("demo")
@click.option("--customers", type=int, default=1000, show_default=True, help="How many customers to seed.")
@port_options
def demo(customers: int, **ports: int | None) -> None:
    """Bring the stack up (or reuse it), seed demo data, run the nightly reconciliation, print its report."""
    runtime, settings, env, sandbox_was_running = _bring_up_base(ports)

    existing = _customer_count(runtime)
    if existing and sandbox_was_running:
        click.echo(f"==> demo data: reusing the {existing:,} customers already seeded (and the sandbox's companies)")
    else:
        # A fresh sandbox holds no companies, so WARP's demo customers are seeded again beside them.
        seed = [_warp_sync(), "demo-seed", "--customers", str(customers)] + (["--replace"] if existing else [])
        subprocess.run(seed, env=env, check=True)

    done = subprocess.run([_warp_sync(), "reconcile"], env=env)
    latest = latest_report_mail(state_dir() / "mail")
    click.echo("")
    click.echo(f"emailed report: {mailbox_url(settings)}message/{latest.name}" if latest else
               "emailed report: none saved yet")
    click.echo(f"mailbox:        {mailbox_url(settings)}  (every message as a web page; .eml files in "
               f"{state_dir() / 'mail'})")
    click.echo(f"state folder:   {state_dir()}")
    click.echo(f"DAGSTER_HOME:   {runtime.dagster_home}")
    click.echo(f"sandbox:        {env['HUBSPOT_BASE_URL']}  (switches under /_sandbox/)")
    click.echo("Dagster UI:     make dev   (then open the run printed above; the receiver starts too)")
    click.echo("again:          make demo  (reuses the stack; a second reconciliation finds nothing to change)")
    click.echo("by hand:        warp-sync reconcile --dry-run  (the stack's settings come with it; "
               "`eval \"$(warp-sync env)\"` for other commands)")
    click.echo("stop it all:    make stop")
    if done.returncode != 0:
        sys.exit(done.returncode)


REPORT_SUBJECT = "[warp-sync] Reconciliation"


def latest_report_mail(folder: Path) -> Path | None:
    """The newest saved report (alerts, which the stack's sensors may send meanwhile, are skipped)."""
    from email.parser import BytesHeaderParser

    for path in sorted(folder.glob("*.eml"), reverse=True) if folder.exists() else []:
        with path.open("rb") as handle:
            if (BytesHeaderParser().parse(handle)["Subject"] or "").startswith(REPORT_SUBJECT):
                return path
    return None


@click.command("dev")
@port_options
def dev(**ports: int | None) -> None:
    """The demo stack plus the receiver (gunicorn) and the Dagster UI with its daemon."""
    runtime, settings, env, _ = _bring_up_base(ports, services=tuple(DEMO_PORTS))
    bin_dir = Path(sys.executable).parent

    started = _step("receiver (gunicorn)")
    receiver_url = f"http://127.0.0.1:{settings['receiver_port']}"
    stack.start("receiver", [str(bin_dir / "gunicorn"), "-c", "python:webhook_receiver.gunicorn_conf",
                             "--bind", f"127.0.0.1:{settings['receiver_port']}",
                             "--workers", "2", "--worker-class", "gthread", "--threads", "4",
                             # Its own control socket: gunicorn's default path is shared by every instance.
                             "--control-socket", str(state_dir() / "receiver.ctl"),
                             "webhook_receiver:create_app()"],
                env=env, url=receiver_url, ready_url=f"{receiver_url}/healthz")
    _done(started, receiver_url)

    started = _step("Dagster UI (dagster-webserver, on the stack's code server and daemon)")
    dagster_url = f"http://127.0.0.1:{settings['dagster_port']}"
    stack.start("dagster", [str(bin_dir / "dagster-webserver"), "-h", "127.0.0.1", "-p", settings["dagster_port"],
                            "-w", env["WARP_DAGSTER_WORKSPACE"]],
                env=env, url=dagster_url, ready_url=f"{dagster_url}/server_info", timeout_s=180)
    _done(started, dagster_url)

    click.echo("")
    click.echo(f"Dagster UI:     {dagster_url}")
    click.echo(f"receiver:       {receiver_url}  (bearer token in {state_dir() / DEMO_SETTINGS_FILE})")
    click.echo(f"review pages:   {receiver_url}/review/conflicts")
    click.echo(f"mailbox:        {mailbox_url(settings)}")
    click.echo(f"sandbox:        {env['HUBSPOT_BASE_URL']}  (switches under /_sandbox/)")
    click.echo("stop it all:    make stop")


@click.command("mailcatcher")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback: a dev tool).")
@click.option("--port", default=8025, show_default=True, type=int, help="SMTP port to listen on.")
@click.option("--folder", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where messages are saved (default: <state folder>/mail).")
@click.option("--web-port", type=click.IntRange(1, 65535), default=None,
              help="Also serve the saved messages as web pages on this port (the demo's mailbox).")
def mailcatcher(host: str, port: int, folder: Path | None, web_port: int | None) -> None:
    """A local SMTP server that saves every message as an .eml file (the demo's mail server)."""
    from warp_sync_pipeline.devstack.mailcatcher import serve

    target = folder or state_dir() / "mail"
    pages = f", pages on http://{host}:{web_port}/" if web_port else ""
    click.echo(f"saving mail to {target}, listening on {host}:{port}{pages}")
    serve(target, host, port, web_port=web_port)


@click.command("stop")
def stop() -> None:
    """Stop everything `make demo` / `make dev` left running, then the private PostgreSQL."""
    for name in stack.stop_all():
        click.echo(f"stopped {name}")
    if local_cluster().stop():
        click.echo("stopped private PostgreSQL")
    click.echo("nothing left running")


# What the local stack keeps in the state folder; `clean` removes these and the folder when nothing else is in it
# (WARP_STATE_DIR may name a folder that holds other things).
STATE_ENTRIES = ("run", "mail", "dagster-home", DEMO_SETTINGS_FILE, "workspace.yaml", "receiver.ctl", "postgres")


@click.command("clean")
def clean() -> None:
    """Stop everything, then delete the local stack's state: the private PostgreSQL's data wherever it lives (as
    root it is outside the checkout, under /var/tmp/warp-sync), DAGSTER_HOME's default folder, the mail."""
    import shutil

    for name in stack.stop_all():
        click.echo(f"stopped {name}")
    cluster = local_cluster()
    data = cluster.status().get("data_dir")
    cluster.destroy()
    if data:
        click.echo(f"removed the private PostgreSQL ({Path(str(data)).parent})")
    folder = state_dir()
    for name in STATE_ENTRIES:
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
    click.echo(f"removed the local stack's state ({folder})")



