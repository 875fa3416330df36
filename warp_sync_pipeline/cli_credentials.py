"""`warp-sync credentials add|revoke|list`: named admin credentials with roles."""

from __future__ import annotations

import sys

import click


def _engine():  # noqa: ANN202
    from warp_sync_pipeline.core.db import make_engine
    from warp_sync_pipeline.devstack.runtime import ensure_runtime

    return make_engine(ensure_runtime(with_dagster=False).database_url)


@click.group("credentials")
def credentials() -> None:
    """Admin credentials for the API and the review pages (stored hashed)."""


@credentials.command("add")
@click.argument("name")
@click.option("--role", "roles", multiple=True, required=True, help="admin and/or resolver (repeatable).")
def add(name: str, roles: tuple[str, ...]) -> None:
    """Issue a credential; its token is printed once and never stored."""
    from warp_sync_pipeline.core.auth import issue

    try:
        issued = issue(_engine(), name, roles)
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(f"credential {issued.id} for {issued.name!r} with roles {', '.join(issued.roles)}")
    click.echo(f"token (shown once): {issued.token}")


@credentials.command("revoke")
@click.option("--id", "credential_id", type=int, default=None, help="The credential's id (from `credentials list`).")
@click.option("--name", default=None, help="Revoke every active credential of this name.")
def revoke(credential_id: int | None, name: str | None) -> None:
    """Revoke a credential by --id, or every active one of --name; their sessions end at the next request."""
    from warp_sync_pipeline.core.auth import revoke as revoke_credentials

    try:
        count = revoke_credentials(_engine(), credential_id=credential_id, name=name)
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(f"revoked {count} credential(s)")


@credentials.command("list")
def list_() -> None:
    """The active credentials: id, name, roles, when made and last used (never the tokens)."""
    from warp_sync_pipeline.core.auth import list_active

    for row in list_active(_engine()):
        click.echo(f"{row['id']:>5}  {row['name']:<24} {','.join(row['roles']):<16} "
                   f"created {row['created_at']:%Y-%m-%d} last used {row['last_used_at'] or 'never'}")
