"""`warp-sync hubspot ...`: HubSpot-side setup."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from warp_sync_pipeline.core.hubspot import HubSpotClient
    from warp_sync_pipeline.core.hubspot.properties import EnsureResult


@click.group("hubspot")
def hubspot() -> None:
    """HubSpot: the company properties warp-sync relies on."""


@hubspot.command("setup")
@click.option("--without-database", is_flag=True,
              help="Only warp-sync's own properties; do not read the mapping table.")
def setup(without_database: bool) -> None:
    """Create the company properties the field mapping needs in HubSpot (HUBSPOT_BASE_URL, HUBSPOT_ACCESS_TOKEN).

    warp-sync's own properties, then one for each row of hubspot_field_mappings that HubSpot lacks (its type from
    the row), then every mapped field is checked against its property: its type, its options, whether integrations
    may write it, and the account's validation rules. Safe to run again: existing properties are left alone,
    missing enumeration options are added, and a property that cannot hold its field's values is reported (exit
    status 2). A handful of requests; no shared request budget.
    """
    from warp_sync_pipeline.core.hubspot import HubSpotError, PropertySchemaMismatch, client_from_env
    from warp_sync_pipeline.core.settings import SettingsError

    try:
        with client_from_env() as client:
            click.echo(f"HubSpot: {client.base_url}")
            result = client.ensure_properties()
            _report_ensured(result)
            if not without_database:
                _ensure_mapped(client)
    except (SettingsError, HubSpotError, PropertySchemaMismatch) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


def _ensure_mapped(client: HubSpotClient) -> None:
    """Create what the mapping table needs and HubSpot lacks, then check every mapped field's property."""
    from warp_sync_pipeline.core.db import make_engine
    from warp_sync_pipeline.core.field_properties import check_properties, definition_for
    from warp_sync_pipeline.core.fields import FieldRuleError, load_rules
    from warp_sync_pipeline.devstack.runtime import ensure_runtime

    engine = make_engine(ensure_runtime(with_dagster=False).database_url)
    try:
        with engine.connect() as conn:
            rules = load_rules(conn)
    except FieldRuleError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    finally:
        engine.dispose()
    missing = check_properties(rules, client).missing
    for name in missing:
        rule = rules.for_property(name)
        assert rule is not None  # missing lists the rules' own properties
        client.create_property(definition_for(rule))
        click.echo(f"created  {name} (mapped from {rules.warp_field(name)})")
    checked = check_properties(rules, client)
    for note in checked.notes:
        click.echo(f"note: {note}")
    if checked.problems:
        for problem in checked.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(2)
    click.echo(f"every mapped field's property can hold its values ({len(rules)} fields)")


def _report_ensured(result: EnsureResult) -> None:
    for name in result.created:
        click.echo(f"created  {name}")
    for name in result.existing:
        added = result.options_added.get(name)
        click.echo(f"exists   {name}" + (f" (options added: {', '.join(added)})" if added else ""))
    click.echo(f"{len(result.created)} created, {len(result.existing)} already present")
