"""Company property definitions and HubSpot's value typing and validation.

A new portal starts with HubSpot's standard company properties (`standard_properties()`); custom
ones arrive through the properties API. `normalize_value` turns a written value into the string
HubSpot stores, or says why HubSpot would refuse it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from hubspot_sandbox.wire import PropertyProblem, iso_ms, parse_time_ms

PROPERTY_TYPES = ("bool", "date", "datetime", "enumeration", "number", "phone_number", "string")
FIELD_TYPES = (
    "booleancheckbox", "calculation_equation", "checkbox", "date", "file", "html", "number",
    "phonenumber", "radio", "select", "text", "textarea",
)
# Which field types HubSpot pairs with each property type.
COMPATIBLE_FIELD_TYPES: dict[str, frozenset[str]] = {
    "bool": frozenset({"booleancheckbox", "calculation_equation"}),
    "date": frozenset({"date"}),
    "datetime": frozenset({"date"}),
    "enumeration": frozenset({"checkbox", "radio", "select", "booleancheckbox"}),
    "number": frozenset({"number", "calculation_equation"}),
    "phone_number": frozenset({"phonenumber", "text"}),
    "string": frozenset({"text", "textarea", "file", "html", "phonenumber"}),
}
MAX_STRING_LENGTH = 65_536
MAX_UNIQUE_PROPERTIES = 10
PROPERTY_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
NUMBER_PATTERN = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
DATE_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Maintained by HubSpot itself: never written through the API.
SYSTEM_PROPERTIES = frozenset({"hs_object_id", "hs_lastmodifieddate", "createdate", "hs_merged_object_ids"})
# Always in a read's `properties`, requested or not (as real responses show).
ALWAYS_RETURNED = ("createdate", "hs_lastmodifieddate", "hs_object_id")
DEFAULT_RETURNED = ("name", "domain")
# Property changes HubSpot does not send webhooks for (documented), plus values it sets itself.
UNSUBSCRIBABLE = frozenset({"hs_lastmodifieddate", "num_unique_conversion_events", "hs_object_id", "createdate",
                            "hs_merged_object_ids"})
DEFAULT_GROUPS = (
    ("companyinformation", "Company information", 0),
    ("socialmediainformation", "Social media information", 1),
    ("analyticsinformation", "Web analytics history", 2),
)


@dataclass
class PropertyDefinition:
    name: str
    label: str
    type: str
    field_type: str
    group_name: str
    created_ms: int
    description: str = ""
    options: list[dict[str, Any]] = field(default_factory=list)
    display_order: int = -1
    has_unique_value: bool = False
    hidden: bool = False
    form_field: bool = True
    hubspot_defined: bool = False
    read_only_value: bool = False
    calculated: bool = False
    updated_ms: int = 0
    archived_ms: int | None = None

    @property
    def multi_select(self) -> bool:
        return self.type == "enumeration" and self.field_type == "checkbox"

    def option_values(self) -> list[str]:
        return [str(o.get("value")) for o in self.options]

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "fieldType": self.field_type,
            "description": self.description,
            "groupName": self.group_name,
            "options": [dict(o) for o in self.options],
            "displayOrder": self.display_order,
            "calculated": self.calculated,
            "externalOptions": False,
            "hasUniqueValue": self.has_unique_value,
            "hidden": self.hidden,
            "modificationMetadata": {
                "archivable": not self.hubspot_defined,
                "readOnlyDefinition": self.hubspot_defined,
                "readOnlyValue": self.read_only_value,
            },
            "formField": self.form_field,
            "createdAt": iso_ms(self.created_ms),
            "updatedAt": iso_ms(self.updated_ms or self.created_ms),
            "archived": self.archived_ms is not None,
        }
        if self.hubspot_defined:
            wire["hubspotDefined"] = True
        if self.type == "number":
            wire["showCurrencySymbol"] = False
        if self.archived_ms is not None:
            wire["archivedAt"] = iso_ms(self.archived_ms)
        return wire


def _options(*values: str) -> list[dict[str, Any]]:
    return [{"label": v.replace("_", " ").title(), "value": v, "displayOrder": i, "hidden": False}
            for i, v in enumerate(values)]


def standard_properties(created_ms: int) -> dict[str, PropertyDefinition]:
    """The company properties a new HubSpot portal has (the ones integrations commonly touch)."""

    def std(name: str, label: str, type_: str, field_type: str, group: str = "companyinformation",
            options: list[dict[str, Any]] | None = None, read_only: bool = False) -> PropertyDefinition:
        return PropertyDefinition(
            name=name, label=label, type=type_, field_type=field_type, group_name=group, created_ms=created_ms,
            options=options or [], hubspot_defined=True, read_only_value=read_only, calculated=read_only,
            form_field=not read_only,
        )

    definitions = [
        std("name", "Company name", "string", "text"),
        std("domain", "Company domain name", "string", "text"),
        std("website", "Website URL", "string", "text"),
        std("hs_additional_domains", "Additional Domains", "string", "text"),
        # Where the record came from (INTEGRATION, CRM_UI, IMPORT, CRM_SETTING for a company HubSpot made from a
        # contact's email domain); HubSpot sets it.
        std("hs_object_source", "Record source", "string", "text", read_only=True),
        std("description", "Description", "string", "textarea"),
        std("phone", "Phone Number", "string", "phonenumber"),
        std("address", "Street Address", "string", "text"),
        std("address2", "Street Address 2", "string", "text"),
        std("city", "City", "string", "text"),
        std("state", "State/Region", "string", "text"),
        std("zip", "Postal Code", "string", "text"),
        std("country", "Country/Region", "string", "text"),
        std("timezone", "Time Zone", "string", "text"),
        std("founded_year", "Year Founded", "string", "text"),
        std("industry", "Industry", "enumeration", "select", options=_options(
            "TELECOMMUNICATIONS", "WIRELESS", "COMPUTER_SOFTWARE", "INFORMATION_TECHNOLOGY_AND_SERVICES",
            "INTERNET", "FINANCIAL_SERVICES", "RETAIL", "HOSPITAL_HEALTH_CARE")),
        std("type", "Type", "enumeration", "select", options=_options(
            "PROSPECT", "PARTNER", "RESELLER", "VENDOR", "OTHER")),
        std("lifecyclestage", "Lifecycle Stage", "enumeration", "radio", options=_options(
            "subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer",
            "evangelist", "other")),
        std("hs_lead_status", "Lead Status", "enumeration", "radio", options=_options(
            "NEW", "OPEN", "IN_PROGRESS", "OPEN_DEAL", "UNQUALIFIED", "ATTEMPTED_TO_CONTACT", "CONNECTED",
            "BAD_TIMING")),
        std("is_public", "Is Public", "bool", "booleancheckbox", options=[
            {"label": "True", "value": "true", "displayOrder": 0, "hidden": False},
            {"label": "False", "value": "false", "displayOrder": 1, "hidden": False}]),
        std("numberofemployees", "Number of Employees", "number", "number"),
        std("annualrevenue", "Annual Revenue", "number", "number"),
        std("hubspot_owner_id", "Company owner", "string", "text"),
        std("closedate", "Close Date", "datetime", "date"),
        std("first_deal_created_date", "First Deal Created Date", "datetime", "date", read_only=True),
        std("notes_last_updated", "Last Activity Date", "datetime", "date", read_only=True),
        std("num_associated_contacts", "Number of Associated Contacts", "number", "number", read_only=True),
        std("num_unique_conversion_events", "Number of Form Submissions", "number", "number",
            group="analyticsinformation", read_only=True),
        std("linkedin_company_page", "LinkedIn Company Page", "string", "text", group="socialmediainformation"),
        std("facebook_company_page", "Facebook Company Page", "string", "text", group="socialmediainformation"),
        std("twitterhandle", "Twitter Handle", "string", "text", group="socialmediainformation"),
        std("createdate", "Create Date", "datetime", "date", read_only=True),
        std("hs_lastmodifieddate", "Last Modified Date", "datetime", "date", read_only=True),
        std("hs_object_id", "Record ID", "number", "number", read_only=True),
        std("hs_merged_object_ids", "Merged Company IDs", "enumeration", "checkbox", read_only=True),
    ]
    for order, definition in enumerate(definitions):
        definition.display_order = order
    return {d.name: d for d in definitions}


def wire_text(value: Any) -> str | None:
    """A JSON value as the text HubSpot would store (numbers and booleans arrive unquoted too)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    return None


def normalize_value(definition: PropertyDefinition, raw: Any) -> str:
    """The stored form of `raw` for this property ("" clears it); raises RefusedValue when refused."""
    name = definition.name
    text = wire_text(raw)
    if text is None:
        raise _problem(name, "INVALID_PROPERTY_VALUE", f"{raw!r} is not a property value; send a string.", raw)
    if text == "":
        return ""
    kind = definition.type
    if kind in ("string", "phone_number"):
        if len(text) > MAX_STRING_LENGTH:
            raise _problem(name, "STRING_TOO_LONG",
                           f"Value for {name} is {len(text)} characters; the limit is {MAX_STRING_LENGTH}.", text)
        return text
    if text != text.strip():
        raise _problem(name, "LEADING_TRAILING_WHITESPACE",
                       f"{text!r} has leading or trailing whitespace, which is not allowed for {kind} property "
                       f"{name}.", text)
    typed = _TYPED.get(kind)
    return text if typed is None else typed(definition, text)


def _normalize_bool(definition: PropertyDefinition, text: str) -> str:
    lowered = text.lower()
    if lowered not in ("true", "false"):
        raise _problem(definition.name, "INVALID_BOOLEAN", f"{text} was not a valid boolean (true or false).", text)
    return lowered


def _normalize_datetime(definition: PropertyDefinition, text: str) -> str:
    try:
        return iso_ms(parse_time_ms(text))
    except (ValueError, OverflowError):
        raise _problem(definition.name, "INVALID_DATETIME",
                       f"{text} was not a valid datetime; use ISO-8601 or epoch milliseconds.", text) from None


# How each property type checks and stores a (non-empty, trimmed) value; other types keep the text.
_TYPED: dict[str, Any] = {
    "number": lambda definition, text: _normalize_number(definition.name, text),
    "bool": _normalize_bool,
    "date": lambda definition, text: _normalize_date(definition.name, text),
    "datetime": _normalize_datetime,
    "enumeration": lambda definition, text: _normalize_enumeration(definition, text),
}


class RefusedValue(ValueError):
    """A value HubSpot would refuse; `problem` says why in HubSpot's terms."""

    def __init__(self, problem: PropertyProblem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def _problem(name: str, code: str, message: str, value: Any) -> RefusedValue:
    return RefusedValue(PropertyProblem(name=name, code=code, message=message,
                                        value=None if value is None else str(value)))


def _normalize_number(name: str, text: str) -> str:
    if not NUMBER_PATTERN.match(text):
        # HubSpot answers INVALID_INTEGER for a bad value in a number property (seen for decimals too).
        raise _problem(name, "INVALID_INTEGER", f"{text} was not a valid number.", text)
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise _problem(name, "INVALID_INTEGER", f"{text} was not a valid number.", text) from None
    # HubSpot keeps numbers as numbers: "1500.50" reads back as "1500.5", "10000.00" as "10000".
    canonical = format(number.normalize(), "f")
    return "0" if canonical in ("-0", "+0") else canonical


def _normalize_date(name: str, text: str) -> str:
    try:
        if DATE_PATTERN.match(text):
            return date.fromisoformat(text).isoformat()
        moment = datetime.fromtimestamp(parse_time_ms(text) / 1000, tz=UTC)
    except (ValueError, OverflowError, OSError):
        raise _problem(name, "INVALID_DATE",
                       f"{text} was not a valid date; use YYYY-MM-DD or epoch milliseconds at midnight UTC.",
                       text) from None
    if (moment.hour, moment.minute, moment.second, moment.microsecond) != (0, 0, 0, 0):
        raise _problem(name, "INVALID_DATE", f"{text} is not midnight UTC; a date property holds a day.", text)
    return moment.date().isoformat()


def _normalize_enumeration(definition: PropertyDefinition, text: str) -> str:
    allowed = definition.option_values()
    chosen = [part for part in text.split(";") if part != ""] if definition.multi_select else [text]
    for part in chosen:
        if part != part.strip():
            raise _problem(definition.name, "LEADING_TRAILING_WHITESPACE",
                           f"{part!r} has leading or trailing whitespace, which is not allowed for enumeration "
                           f"property {definition.name}.", text)
        if part not in allowed:
            raise _problem(definition.name, "INVALID_OPTION",
                           f"{part} was not one of the allowed options: [{', '.join(allowed)}]", text)
    return ";".join(chosen)


def validate_definition(payload: dict[str, Any], *, existing_groups: set[str]) -> list[str]:
    """Problems with a property-create body, in words; empty when HubSpot would accept it."""
    problems: list[str] = []
    for required in ("name", "label", "type", "fieldType", "groupName"):
        if not isinstance(payload.get(required), str) or not payload.get(required):
            problems.append(f"{required} is required")
    if problems:
        return problems
    if not PROPERTY_NAME_PATTERN.match(payload["name"]):
        problems.append(f"name {payload['name']!r} must start with a lowercase letter and hold only a-z, 0-9 and _")
    kind, field_type = payload["type"], payload["fieldType"]
    if kind not in PROPERTY_TYPES:
        problems.append(f"type {kind!r} is not one of {', '.join(PROPERTY_TYPES)}")
    if field_type not in FIELD_TYPES:
        problems.append(f"fieldType {field_type!r} is not one of {', '.join(FIELD_TYPES)}")
    if kind in COMPATIBLE_FIELD_TYPES and field_type in FIELD_TYPES and field_type not in COMPATIBLE_FIELD_TYPES[kind]:
        problems.append(f"fieldType {field_type} cannot be used with type {kind}")
    if payload["groupName"] not in existing_groups:
        problems.append(f"property group {payload['groupName']!r} does not exist")
    options = payload.get("options")
    if options is not None and not isinstance(options, list):
        problems.append("options must be a list")
    elif kind == "enumeration":
        if not options:
            problems.append("options are required for an enumeration property")
        else:
            problems.extend(_option_problems(options))
    return problems


def _option_problems(options: list[Any]) -> list[str]:
    problems: list[str] = []
    seen: set[str] = set()
    for option in options:
        if not isinstance(option, dict) or not isinstance(option.get("value"), str) or not option.get("label"):
            problems.append("each option needs a string label and value")
            continue
        if option["value"] in seen:
            problems.append(f"option value {option['value']!r} appears twice")
        seen.add(option["value"])
    return problems


def wire_options(options: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    result = []
    for order, option in enumerate(options or []):
        entry = {
            "label": str(option["label"]),
            "value": str(option["value"]),
            "displayOrder": option.get("displayOrder", order),
            "hidden": bool(option.get("hidden", False)),
        }
        if option.get("description"):
            entry["description"] = str(option["description"])
        result.append(entry)
    return result
