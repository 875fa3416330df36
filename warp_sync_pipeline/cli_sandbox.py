"""`warp-sync sandbox`: run the local HubSpot (a development tool; never deployed)."""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

import click

from hubspot_sandbox.config import UNIQUE_CONFLICT_FORMS
from warp_sync_pipeline.core.settings import SettingsError, load_settings, require


@click.command("sandbox")
@click.option("--port", type=click.IntRange(0, 65535), default=8090, show_default=True,
              help="Port to listen on (0 picks a free one and prints it).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on. Keep loopback: the /_sandbox switches need no token.")
@click.option("--rate-limit", "rate_limit", type=click.IntRange(0), default=100, show_default=True,
              help="Requests per token and rolling 10 seconds; 0 turns the limit off.")
@click.option("--search-per-second", type=click.IntRange(0), default=5, show_default=True,
              help="Search requests per second; 0 turns the limit off.")
@click.option("--unique-conflict-form", type=click.Choice(UNIQUE_CONFLICT_FORMS), default=UNIQUE_CONFLICT_FORMS[0],
              show_default=True, help="How a duplicate unique value is refused (HubSpot's captured 400 by default).")
@click.option("--verbose", is_flag=True, help="Log every request.")
def sandbox(port: int, host: str, rate_limit: int, search_per_second: int, unique_conflict_form: str,
            verbose: bool) -> None:
    """Serve a local HubSpot (CRM v3 companies, properties, webhooks) until interrupted.

    It accepts the token in HUBSPOT_ACCESS_TOKEN, signs webhooks with HUBSPOT_CLIENT_SECRET and
    delivers them to HUBSPOT_WEBHOOK_TARGET_URL (unset: no deliveries).
    """
    import logging

    from hubspot_sandbox.server import SandboxServer

    try:
        settings = load_settings()
        access_token = require(settings.hubspot_access_token, "HUBSPOT_ACCESS_TOKEN")
        client_secret = require(settings.hubspot_client_secret, "HUBSPOT_CLIENT_SECRET")
        target = settings.hubspot_webhook_target_url
    except SettingsError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(message)s")
    server = SandboxServer(
        host, port, access_token=access_token, client_secret=client_secret, webhook_target_url=target,
        rate_limit_per_10s=rate_limit or None, search_per_second=search_per_second or None,
        unique_conflict_form=unique_conflict_form,
    )
    try:
        server.start()
    except OSError as exc:
        click.echo(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", err=True)
        sys.exit(2)
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    click.echo(f"HubSpot sandbox listening on {server.base_url}", nl=True)
    click.echo(f"webhooks: {target or 'off (HUBSPOT_WEBHOOK_TARGET_URL unset)'}; "
               f"rate limit: {rate_limit or 'off'} per 10 s; search: {search_per_second or 'off'} per s")
    sys.stdout.flush()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        click.echo("HubSpot sandbox stopped")
