"""How a failure reads wherever it is recorded: one stable code per kind of failure (queue rows, the audit trail,
the nightly's records, the API's answers), and HubSpot's refusals of properties in WARP's field names.

Every flow records failures through these two functions, so the same failure has the same code in the drain, the
nightly and a create: a rate limit is HUBSPOT_RATE_LIMITED everywhere.
"""

from __future__ import annotations

import sqlalchemy as sa

from warp_sync_pipeline.core.fields import FieldRules
from warp_sync_pipeline.core.hubspot.errors import (
    AuthFailed,
    BudgetExhausted,
    HubSpotError,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    ServiceUnavailable,
    UniqueValueConflict,
    ValidationFailed,
)

# Most specific first: the first type that matches names the failure.
_HUBSPOT_CODES: tuple[tuple[type[HubSpotError], str], ...] = (
    (NotFound, "COMPANY_NOT_FOUND"),
    (AuthFailed, "HUBSPOT_AUTH_FAILED"),
    (RateLimited, "HUBSPOT_RATE_LIMITED"),
    (BudgetExhausted, "HUBSPOT_TIME_BUDGET_EXHAUSTED"),
    (ServiceUnavailable, "HUBSPOT_UNAVAILABLE"),
    (OutcomeUnknown, "HUBSPOT_OUTCOME_UNKNOWN"),
    (UniqueValueConflict, "HUBSPOT_UNIQUE_VALUE_CONFLICT"),
    (ValidationFailed, "HUBSPOT_REJECTED_VALUES"),
)


def error_code(exc: BaseException, *, hubspot_property: str | None = None) -> str:
    """The stable code of a failure. For one property's record, HubSpot's own code for that property when it
    refused it (INVALID_OPTION); our own errors carry theirs (`code`); HubSpot's by kind; anything else by its type
    (ValueError -> VALUE_ERROR)."""
    if hubspot_property is not None:
        for refused in getattr(exc, "property_errors", ()):
            if refused.name == hubspot_property and refused.code:
                return str(refused.code)
    own = getattr(exc, "code", None)
    if isinstance(own, str) and own:
        return own
    for kind, code in _HUBSPOT_CODES:
        if isinstance(exc, kind):
            return code
    if isinstance(exc, HubSpotError):
        return "HUBSPOT_ERROR"
    name = type(exc).__name__
    return "".join(f"_{c}" if c.isupper() and i else c for i, c in enumerate(name)).upper()


def refused_fields(error: HubSpotError, rules: FieldRules) -> dict[str, str]:
    """The properties HubSpot refused, by WARP field (the property's own name when no rule maps it), with
    HubSpot's reason."""
    refused: dict[str, str] = {}
    for property_error in error.property_errors:
        rule = rules.for_property(property_error.name)
        refused[rule.warp_field if rule else property_error.name] = (
            property_error.message or property_error.code or "Invalid property value")
    return refused


def describe_failure(exc: BaseException) -> tuple[str, str]:
    """(code, message) of a failure, fit for a report or an audit row: a database error gives its SQLSTATE and the
    first line of its message only (the lines after it, and SQLAlchemy's text, can quote row values)."""
    if isinstance(exc, sa.exc.SQLAlchemyError):
        orig = getattr(exc, "orig", None)
        state = getattr(orig, "pgcode", None)
        first = str(orig).splitlines()[0] if orig is not None and str(orig) else type(exc).__name__
        return (f"PG_{state}" if state else "DATABASE_ERROR"), first
    return error_code(exc), str(exc)
