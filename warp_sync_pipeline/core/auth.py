"""Admin credentials: named bearer tokens stored hashed, each carrying roles.

Tokens are 256-bit random strings, so a single SHA-256 is the right hash (a slow password hash
buys nothing against a random secret and would slow every request). `WARP_API_TOKEN` is the
bootstrap credential with every role, compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import sqlalchemy as sa

from warp_sync_pipeline.core.errors import Failure, ServiceError
from warp_sync_pipeline.core.settings import load_settings

TOKEN_PREFIX = "wsk_"
BOOTSTRAP_NAME = "bootstrap"


class Role(StrEnum):
    ADMIN = "admin"
    RESOLVER = "resolver"


# What each role may do (DESIGN.md, Security). Routes ask for a permission, never for a role.
PERMISSIONS: dict[str, frozenset[Role]] = {
    "customers:create": frozenset({Role.ADMIN}),
    "customers:update": frozenset({Role.ADMIN}),
    "customers:read": frozenset({Role.ADMIN}),
    "sync:push": frozenset({Role.ADMIN}),
    "sync:reconcile": frozenset({Role.ADMIN}),
    "history:read": frozenset({Role.ADMIN}),
    "conflicts:read": frozenset({Role.ADMIN, Role.RESOLVER}),
    "conflicts:resolve": frozenset({Role.RESOLVER}),
    "onboarding:read": frozenset({Role.ADMIN}),
    "onboarding:approve": frozenset({Role.ADMIN}),
    "links:manage": frozenset({Role.ADMIN}),
    "rules:read": frozenset({Role.ADMIN}),
    "rules:publish": frozenset({Role.ADMIN}),
}


class AuthError(ServiceError):
    """401 UNAUTHORIZED (no or a bad token) or 403 FORBIDDEN (the credential lacks the permission)."""


@dataclass(frozen=True)
class Principal:
    name: str
    roles: frozenset[Role]

    def may(self, permission: str) -> bool:
        return bool(self.roles & PERMISSIONS[permission])


@dataclass(frozen=True)
class IssuedCredential:
    id: int
    name: str
    roles: tuple[str, ...]
    token: str  # shown once; only its hash is stored


credentials = sa.table(
    "admin_credentials",
    sa.column("id"), sa.column("name"), sa.column("token_hash"), sa.column("roles"),
    sa.column("created_at"), sa.column("last_used_at"), sa.column("revoked_at"),
)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_roles(raw: Iterable[str]) -> tuple[Role, ...]:
    roles: list[Role] = []
    for item in raw:
        try:
            role = Role(item.strip().lower())
        except ValueError:
            raise ValueError(f"unknown role {item!r}; roles are {', '.join(r.value for r in Role)}") from None
        if role not in roles:
            roles.append(role)
    if not roles:
        raise ValueError("a credential needs at least one role")
    return tuple(roles)


def issue(engine: sa.Engine, name: str, roles: Iterable[str]) -> IssuedCredential:
    name = name.strip()
    if not name:
        raise ValueError("a credential needs a name")
    parsed = parse_roles(roles)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        new_id = conn.execute(
            sa.insert(credentials)
            .values(name=name, token_hash=hash_token(token), roles=[r.value for r in parsed])
            .returning(credentials.c.id)
        ).scalar_one()
    return IssuedCredential(new_id, name, tuple(r.value for r in parsed), token)


def revoke(engine: sa.Engine, *, credential_id: int | None = None, name: str | None = None) -> int:
    """Revoke one credential by id, or every active one of a name; returns how many."""
    if (credential_id is None) == (name is None):
        raise ValueError("revoke takes an id or a name")
    condition = credentials.c.id == credential_id if credential_id is not None else credentials.c.name == name
    with engine.begin() as conn:
        result = conn.execute(
            sa.update(credentials)
            .where(condition, credentials.c.revoked_at.is_(None))
            .values(revoked_at=sa.func.now())
        )
    return result.rowcount


def list_active(engine: sa.Engine) -> list[dict[str, object]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(credentials.c.id, credentials.c.name, credentials.c.roles, credentials.c.created_at,
                      credentials.c.last_used_at)
            .where(credentials.c.revoked_at.is_(None))
            .order_by(credentials.c.id)
        ).mappings()
        return [dict(r) for r in rows]


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def authenticate(engine: sa.Engine, token: str, *, bootstrap_token: str | None = None) -> Principal | None:
    """The principal a token names, or None. Every comparison is constant-time or by hash.

    `bootstrap_token` None means "read WARP_API_TOKEN"; an empty string means "no bootstrap".
    """
    bootstrap = bootstrap_token if bootstrap_token is not None else load_settings().api_token
    if bootstrap and hmac.compare_digest(token.encode("utf-8"), bootstrap.encode("utf-8")):
        return Principal(BOOTSTRAP_NAME, frozenset(Role))
    with engine.begin() as conn:
        row = conn.execute(
            sa.update(credentials)
            .where(credentials.c.token_hash == hash_token(token), credentials.c.revoked_at.is_(None))
            .values(last_used_at=sa.func.now())
            .returning(credentials.c.name, credentials.c.roles)
        ).first()
    if row is None:
        return None
    return Principal(row.name, frozenset(Role(r) for r in row.roles))


def authorize(engine: sa.Engine, authorization: str | None, permission: str,
              *, bootstrap_token: str | None = None) -> Principal:
    """Check an Authorization header for a permission; raises AuthError 401/403."""
    token = bearer_token(authorization)
    if token is None:
        raise AuthError(Failure.UNAUTHENTICATED, "UNAUTHORIZED", "A bearer token is required in the Authorization header.")
    principal = authenticate(engine, token, bootstrap_token=bootstrap_token)
    if principal is None:
        raise AuthError(Failure.UNAUTHENTICATED, "UNAUTHORIZED", "The bearer token is not valid.")
    if not principal.may(permission):
        raise AuthError(Failure.FORBIDDEN, "FORBIDDEN", f"Credential {principal.name!r} may not {permission.replace(':', ' ')}.")
    return principal
