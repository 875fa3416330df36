"""`warp-sync rules`: the live field rules, drafts of a change, their preview, publishing and rolling back."""

from __future__ import annotations

import getpass
import sys
from typing import Any, NoReturn

import click


def _engine() -> Any:
    from warp_sync_pipeline.core.db import make_engine
    from warp_sync_pipeline.devstack.runtime import ensure_runtime

    return make_engine(ensure_runtime(with_dagster=False).database_url)


def _fail(exc: Any) -> NoReturn:
    click.echo(f"error: {getattr(exc, 'code', 'ERROR')}: {getattr(exc, 'message', exc)}", err=True)
    sys.exit(2)


def _show_rules(rules: Any) -> None:
    for rule in rules:
        click.echo(f"  {rule.warp_field:<20} {rule.hubspot_property:<24} {rule.direction:<16} {rule.strategy}")


def _hubspot() -> Any:
    """A HubSpot client when HUBSPOT_ACCESS_TOKEN is set (drafts are then checked against HubSpot's properties)."""
    from warp_sync_pipeline.core.hubspot import client_from_env
    from warp_sync_pipeline.core.settings import load_settings

    if not load_settings().hubspot_access_token:
        click.echo("note: HUBSPOT_ACCESS_TOKEN is not set, so HubSpot's properties are not checked", err=True)
        return None
    return client_from_env()


BY_OPTION = click.option("--by", default=None,
                         help="Who does it, for the audit trail (default: the operating-system user).")


@click.group("rules")
def rules() -> None:
    """The field rules (hubspot_field_mappings): change them through a draft, preview it, publish, roll back.

    \b
    warp-sync rules draft create credit-latest            a copy of the live rules
    warp-sync rules draft set credit-latest credit_limit --strategy LATEST_WINS
    warp-sync reconcile --rule-draft credit-latest        a dry run: both plans from the same pull
    warp-sync rules draft show credit-latest              the changes and the latest preview
    warp-sync rules publish credit-latest                 every flow switches at once
    warp-sync rules rollback                              the rules before the last publish
    """


@rules.command("show")
def show() -> None:
    """The live rules."""
    from warp_sync_pipeline.core.rule_drafts import live_rules

    with _engine().connect() as conn:
        _show_rules(live_rules(conn))


@rules.group("draft")
def draft() -> None:
    """Drafts of a rule change."""


@draft.command("create")
@click.argument("name")
@click.option("--note", default="", help="Why the change (shown with the draft).")
@BY_OPTION
def draft_create(name: str, note: str, by: str | None) -> None:
    """A new draft NAME holding a copy of the live rules."""
    from warp_sync_pipeline.core.rule_drafts import RuleDraftError, create_draft

    try:
        made = create_draft(_engine(), name, by or getpass.getuser(), note)
    except RuleDraftError as exc:
        _fail(exc)
    click.echo(f"draft {made.name} created from the live rules ({len(made.rules)} fields)")


@draft.command("set")
@click.argument("name")
@click.argument("field")
@click.option("--property", "hubspot_property", default=None, help="The HubSpot property (a new field needs it).")
@click.option("--direction", default=None, type=click.Choice(["WARP_TO_HUBSPOT", "HUBSPOT_TO_WARP", "BIDIRECTIONAL"]),
              help="Which way the field flows (a new field needs it).")
@click.option("--strategy", default=None, type=click.Choice(["HUBSPOT_WINS", "WARP_WINS", "LATEST_WINS", "MANUAL"]),
              help="Who wins when both sides changed (a one-way field: the side it flows from).")
@click.option("--type", "field_type", default=None,
              type=click.Choice(["string", "email", "enumeration", "amount", "services", "integer", "boolean", "date"]),
              help="What the field holds (a new field needs it); checked against the customers column.")
@click.option("--option", "options", multiple=True, help="An enumeration's value or a set's flag (repeatable, in order).")
@click.option("--scale", type=click.IntRange(0, 6), default=None, help="An amount's decimal places (default 2).")
@click.option("--minimum", default=None, help="The smallest amount or whole number allowed.")
def draft_set(name: str, field: str, hubspot_property: str | None, direction: str | None,
              strategy: str | None, field_type: str | None, options: tuple[str, ...], scale: int | None,
              minimum: str | None) -> None:
    """Change FIELD's rule in draft NAME, or add FIELD (a `customers` column) to it."""
    from warp_sync_pipeline.core.rule_drafts import RuleDraftError, set_rule, validate_draft

    engine = _engine()
    try:
        set_rule(engine, name, field, hubspot_property=hubspot_property, direction=direction, strategy=strategy,
                 field_type=field_type, options=options or None, scale=scale, minimum=minimum)
        validate_draft(engine, name)
    except RuleDraftError as exc:
        _fail(exc)
    click.echo(f"draft {name}: {field} set")


@draft.command("remove")
@click.argument("name")
@click.argument("field")
def draft_remove(name: str, field: str) -> None:
    """Stop syncing FIELD in draft NAME."""
    from warp_sync_pipeline.core.rule_drafts import RuleDraftError, remove_rule

    try:
        remove_rule(_engine(), name, field)
    except RuleDraftError as exc:
        _fail(exc)
    click.echo(f"draft {name}: {field} removed")


@draft.command("show")
@click.argument("name")
def draft_show(name: str) -> None:
    """Draft NAME: its changes to the live rules, whether they are valid, and its latest preview."""
    from warp_sync_pipeline.core.rule_drafts import (
        RuleDraftError,
        draft_previews,
        draft_rules,
        get_draft,
        live_rules,
    )

    engine = _engine()
    with engine.connect() as conn:
        try:
            shown = get_draft(conn, name, any_status=True)
        except RuleDraftError as exc:
            _fail(exc)
        changes = shown.changes(live_rules(conn))
        try:
            draft_rules(conn, shown)
            valid = "valid"
        except RuleDraftError as exc:
            valid = f"NOT VALID: {exc.message}"
    click.echo(f"draft {shown.name} ({shown.status}, by {shown.created_by}, {shown.created_at:%Y-%m-%d %H:%M}); {valid}")
    click.echo("changes to the live rules:" if changes else "no changes to the live rules")
    for line in changes:
        click.echo(f"  {line}")
    previews = draft_previews(engine, name)
    if not previews:
        click.echo(f"no preview yet: `warp-sync reconcile --rule-draft {name}`")
        return
    latest = previews[0]
    click.echo(f"latest preview: run {latest.run_id} at {latest.created_at:%Y-%m-%d %H:%M}")
    for line in preview_lines(latest.summary):
        click.echo(f"  {line}")


def preview_lines(summary: dict[str, Any]) -> list[str]:
    """A stored preview (`RulePreview.to_json`) as lines: per field, live -> draft counts."""
    from warp_sync_pipeline.core.reconcile.preview import OUTCOMES
    from warp_sync_pipeline.core.wording import field_label

    words = {"to_hubspot": "to HubSpot", "to_warp": "to WARP", "conflicts": "conflicts", "invalid": "cannot copy"}
    lines = []
    for name, sides in (summary.get("fields") or {}).items():
        moved = [f"{words[label]} {sides['live'][label]:,} -> {sides['draft'][label]:,}" for label, _ in OUTCOMES
                 if sides["live"][label] or sides["draft"][label]]
        lines.append(f"{field_label(name)}: " + (", ".join(moved) or "nothing"))
    lines.append(f"{int(summary.get('records_total') or 0):,} records would be treated differently")
    return lines


@draft.command("list")
def draft_list() -> None:
    """Every draft, open ones first."""
    from warp_sync_pipeline.core.rule_drafts import list_drafts

    for item in list_drafts(_engine()):
        click.echo(f"{item.name:<24} {item.status:<10} by {item.created_by:<16} {item.created_at:%Y-%m-%d %H:%M}"
                   f"{'  ' + item.note if item.note else ''}")


@draft.command("discard")
@click.argument("name")
def draft_discard(name: str) -> None:
    """Give up draft NAME (it stays listed as discarded)."""
    from warp_sync_pipeline.core.rule_drafts import RuleDraftError, discard_draft

    try:
        discard_draft(_engine(), name)
    except RuleDraftError as exc:
        _fail(exc)
    click.echo(f"draft {name} discarded")


@rules.command("publish")
@click.argument("name")
@BY_OPTION
def publish(name: str, by: str | None) -> None:
    """Make draft NAME the live rules, all at once (the rules it replaces are kept for `rules rollback`)."""
    from warp_sync_pipeline.core.hubspot import HubSpotError
    from warp_sync_pipeline.core.rule_drafts import RuleDraftError, publish_draft

    hubspot = _hubspot()
    try:
        done = publish_draft(_engine(), name, by or getpass.getuser(), hubspot)
    except (RuleDraftError, HubSpotError) as exc:
        _fail(exc)
    finally:
        if hubspot is not None:
            hubspot.close()
    click.echo(f"draft {name} published; the rules it replaced are kept as version {done.version_id}")
    for line in done.changes:
        click.echo(f"  {line}")


@rules.command("rollback")
@click.option("--to", "version_id", type=int, default=None,
              help="A kept version (from `rules versions`); default: the rules before the last publish.")
@BY_OPTION
def rollback(version_id: int | None, by: str | None) -> None:
    """Put kept rules back live (what they replace is kept in turn)."""
    from warp_sync_pipeline.core.rule_drafts import RuleDraftError, roll_back

    try:
        done = roll_back(_engine(), by or getpass.getuser(), version_id)
    except RuleDraftError as exc:
        _fail(exc)
    click.echo(f"rules rolled back; the rules replaced are kept as version {done.version_id}")
    for line in done.changes:
        click.echo(f"  {line}")


@rules.command("versions")
def versions() -> None:
    """The kept versions, newest first: each is the rules a publish or rollback replaced."""
    from warp_sync_pipeline.core.rule_drafts import rule_versions

    for version in rule_versions(_engine()):
        what = (f"replaced by draft {version.draft_name}" if version.draft_name
                else f"replaced by a rollback to version {version.rolled_back_to}")
        click.echo(f"version {version.id}: {what}, by {version.replaced_by} at {version.replaced_at:%Y-%m-%d %H:%M}")
