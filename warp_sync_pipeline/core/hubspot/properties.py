"""The HubSpot company properties warp-sync owns: the one place their schema is defined.

Value sets are DESIGN.md's. `ensure_properties()` on the client creates whatever is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

GROUP_NAME = "companyinformation"  # HubSpot's default company property group
# HubSpot keeps a single-line text value up to this many characters (hubspot-api.md, property field types).
TEXT_VALUE_LIMIT = 65_536


@dataclass(frozen=True)
class PropertyOption:
    value: str
    label: str

    def to_api(self, display_order: int) -> dict[str, Any]:
        return {"value": self.value, "label": self.label, "hidden": False, "displayOrder": display_order}


@dataclass(frozen=True)
class PropertyDefinition:
    """A HubSpot property as `POST /crm/v3/properties/companies` takes it."""

    name: str
    label: str
    type: str  # bool, date, datetime, enumeration, number, phone_number, string
    field_type: str  # text, number, select, checkbox, ...
    description: str
    has_unique_value: bool = False
    options: tuple[PropertyOption, ...] = field(default_factory=tuple)
    group_name: str = GROUP_NAME

    def to_api(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "fieldType": self.field_type,
            "groupName": self.group_name,
            "description": self.description,
            "hasUniqueValue": self.has_unique_value,
        }
        if self.options:
            body["options"] = [o.to_api(i) for i, o in enumerate(self.options)]
        return body

    def differences(self, existing: dict[str, Any]) -> list[str]:
        """What an existing HubSpot property lacks compared with this definition (empty: it fits)."""
        problems: list[str] = []
        if existing.get("type") != self.type:
            problems.append(f"type is {existing.get('type')!r}, expected {self.type!r}")
        if existing.get("fieldType") != self.field_type:
            problems.append(f"fieldType is {existing.get('fieldType')!r}, expected {self.field_type!r}")
        if bool(existing.get("hasUniqueValue")) != self.has_unique_value:
            # HubSpot cannot change uniqueness after creation; the create flow relies on it.
            problems.append(f"hasUniqueValue is {bool(existing.get('hasUniqueValue'))}, expected {self.has_unique_value}")
        have = {str(o.get("value")) for o in existing.get("options") or [] if isinstance(o, dict)}
        missing = [o.value for o in self.options if o.value not in have]
        if missing:
            problems.append(f"options missing: {', '.join(missing)}")
        return problems


def _options(*values: str) -> tuple[PropertyOption, ...]:
    return tuple(PropertyOption(v, v.capitalize() if v.islower() else v) for v in values)


# The unique property holding a company's BAN: creates are keyed by it, and a company found by it.
BAN_PROPERTY = "warp_ban"

COMPANY_PROPERTIES: tuple[PropertyDefinition, ...] = (
    PropertyDefinition(
        BAN_PROPERTY, "WARP BAN", "string", "text",
        "WARP billing account number (ZT- and nine digits). Unique; set by WARP at creation, never changed.",
        has_unique_value=True,
    ),
    PropertyDefinition(
        "warp_status", "WARP status", "enumeration", "select", "Account status in WARP (WARP owns it).",
        options=_options("PENDING", "ACTIVE", "SUSPENDED", "CLOSED"),
    ),
    PropertyDefinition(
        "warp_credit_limit", "WARP credit limit", "number", "number",
        "Credit limit, two decimals (edited on both sides; HubSpot wins a conflict).",
    ),
    PropertyDefinition(
        "warp_current_balance", "WARP current balance", "number", "number",
        "Current balance, two decimals (WARP owns it).",
    ),
    PropertyDefinition(
        "warp_services", "WARP services", "enumeration", "checkbox",
        "Enabled services, ';'-joined (WARP owns them).",
        options=_options("voice", "messaging", "data"),
    ),
    PropertyDefinition(
        "warp_payment_terms", "WARP payment terms", "enumeration", "select",
        "Payment terms (HubSpot owns them).",
        options=_options("PREPAID", "NET15", "NET30", "NET45", "NET60"),
    ),
    PropertyDefinition(
        "warp_contact_email", "WARP contact email", "string", "text",
        "Billing contact email (edited on both sides; the latest change wins).",
    ),
)

PROPERTIES_BY_NAME: dict[str, PropertyDefinition] = {p.name: p for p in COMPANY_PROPERTIES}
UNIQUE_PROPERTIES: frozenset[str] = frozenset(p.name for p in COMPANY_PROPERTIES if p.has_unique_value)
# Every property warp-sync reads from a company: ours plus HubSpot's name.
SYNCED_PROPERTIES: tuple[str, ...] = ("name", *(p.name for p in COMPANY_PROPERTIES))


@dataclass(frozen=True)
class EnsureResult:
    """What `ensure_properties()` did: names created now, and names already in place."""

    created: list[str]
    existing: list[str]
    options_added: dict[str, list[str]] = field(default_factory=dict)
