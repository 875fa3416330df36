"""Whether each mapped field's HubSpot property can hold the same values as its WARP column (issue 18, item 2).

Checked when a rule draft is validated or published and by `warp-sync hubspot setup`, never when the flows load the
rules (that must not call HubSpot). A property can hold a field when its type fits the field's (`SHAPES`),
an enumeration or a set of flags offers every option the field's row lists, HubSpot lets integrations write it
when warp-sync writes it (`modificationMetadata.readOnlyValue`), and the account's property validation rules
(`GET /crm/v3/property-validations/0-2`: format, maximum length, blocked email domains) do not refuse values WARP
holds as a matter of course. `definition_for` is the property `warp-sync hubspot setup` creates for a field the
table maps and HubSpot lacks.

hubspot-api.md names the validations endpoint but not its answer's shape; read here as
`{"results": [{"propertyName", "propertyValidationRules": [{"ruleType", "ruleArguments"}]}]}` (the most plausible
reading of HubSpot's property-validations reference); an account or a token that cannot read it (404, 403) is
checked without its rules, and the check says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from warp_sync_pipeline.core.fields import Direction, FieldRule, FieldRules
from warp_sync_pipeline.core.hubspot.errors import HubSpotError
from warp_sync_pipeline.core.hubspot.properties import PROPERTIES_BY_NAME, PropertyDefinition, PropertyOption
from warp_sync_pipeline.core.normalize import FieldType


@dataclass(frozen=True)
class PropertyShape:
    """The HubSpot property a field type needs: its `type`, the `fieldType` setup makes it with, and the field
    types that hold its values (None: any)."""

    type: str
    created_as: str
    holds: frozenset[str] | None = None


SHAPES: Mapping[FieldType, PropertyShape] = {
    FieldType.BAN: PropertyShape("string", "text"),
    FieldType.STRING: PropertyShape("string", "text"),
    FieldType.EMAIL: PropertyShape("string", "text"),
    FieldType.ENUMERATION: PropertyShape("enumeration", "select", frozenset({"select", "radio"})),
    FieldType.SERVICES: PropertyShape("enumeration", "checkbox", frozenset({"checkbox"})),
    FieldType.AMOUNT: PropertyShape("number", "number"),
    FieldType.INTEGER: PropertyShape("number", "number"),
    FieldType.BOOLEAN: PropertyShape("bool", "booleancheckbox", frozenset({"booleancheckbox"})),
    FieldType.DATE: PropertyShape("date", "date"),
}


@dataclass(frozen=True)
class PropertyCheck:
    problems: list[str]
    missing: list[str]  # properties HubSpot lacks (setup creates them)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.missing


def definition_for(rule: FieldRule) -> PropertyDefinition:
    """The company property a mapped field needs (warp-sync's own where it defines one)."""
    if rule.hubspot_property in PROPERTIES_BY_NAME:
        return PROPERTIES_BY_NAME[rule.hubspot_property]
    spec = rule.spec
    shape = SHAPES[spec.type]
    options = tuple(PropertyOption(o, o) for o in spec.options)
    if spec.type is FieldType.BOOLEAN:
        options = (PropertyOption("true", "Yes"), PropertyOption("false", "No"))
    label = "WARP " + rule.warp_field.replace("_", " ")
    return PropertyDefinition(rule.hubspot_property, label, shape.type, shape.created_as,
                              f"WARP's customers.{rule.warp_field} ({spec.type.value}), synced by warp-sync.",
                              options=options)


def _writes_to_hubspot(rule: FieldRule) -> bool:
    return rule.direction is not Direction.HUBSPOT_TO_WARP


def property_problems(rule: FieldRule, prop: Mapping[str, Any], validations: Sequence[Mapping[str, Any]]) -> list[str]:
    """Why `prop` cannot hold the values of `rule`'s field (empty: it can)."""
    spec = rule.spec
    where = f"{rule.warp_field} -> {rule.hubspot_property}"
    shape = SHAPES[spec.type]
    problems = []
    if prop.get("type") != shape.type:
        problems.append(f"{where}: HubSpot's property is {prop.get('type')!r}, a {spec.type.value} field needs "
                        f"{shape.type!r}")
    elif shape.holds is not None and prop.get("fieldType") not in shape.holds:
        problems.append(f"{where}: HubSpot's property shows as {prop.get('fieldType')!r}, a {spec.type.value} field "
                        f"needs {' or '.join(sorted(shape.holds))}")
    offered = {str(o.get("value")) for o in prop.get("options") or [] if isinstance(o, Mapping)}
    if spec.type in (FieldType.ENUMERATION, FieldType.SERVICES):
        lacking = [o for o in spec.options if o not in offered]
        if lacking:
            problems.append(f"{where}: HubSpot's property lacks the options {', '.join(lacking)}")
    if _writes_to_hubspot(rule) and (prop.get("modificationMetadata") or {}).get("readOnlyValue"):
        problems.append(f"{where}: HubSpot's property is read-only for integrations, and the rule writes it")
    problems += [f"{where}: {p}" for p in _validation_problems(rule, validations)]
    return problems


def _validation_problems(rule: FieldRule, validations: Sequence[Mapping[str, Any]]) -> list[str]:
    """HubSpot's validation rules that refuse values WARP's column may hold (HubSpot applies them to API writes)."""
    if not _writes_to_hubspot(rule):
        return []
    problems = []
    for item in validations:
        kind = str(item.get("ruleType") or "")
        arguments = [str(a) for a in item.get("ruleArguments") or []]
        if kind == "MAX_LENGTH" and rule.spec.type in (FieldType.STRING, FieldType.EMAIL):
            problems.append(f"HubSpot refuses values longer than {arguments[0] if arguments else '?'} characters, "
                            "and WARP's column holds longer ones")
        elif kind in ("FORMAT", "REGEX", "ALPHA_ONLY", "NUMERIC_ONLY") and rule.spec.type is FieldType.STRING:
            problems.append(f"HubSpot checks the value's format ({kind}{': ' + ', '.join(arguments) if arguments else ''})"
                            ", which WARP does not")
        elif kind in ("EMAIL_BLOCKED_DOMAINS", "BLOCKED_DOMAINS") and rule.spec.type is FieldType.EMAIL:
            problems.append(f"HubSpot refuses emails at {', '.join(arguments) or 'some domains'}, which WARP "
                            "accepts")
    return problems


def _validations(client: Any) -> tuple[dict[str, list[Mapping[str, Any]]], list[str]]:
    try:
        answer = client.property_validations()
    except HubSpotError as exc:
        if exc.status in (403, 404):
            return {}, [f"HubSpot's property validation rules could not be read ({exc.status}): not checked"]
        raise
    rules: dict[str, list[Mapping[str, Any]]] = {}
    for entry in (answer or {}).get("results") or []:
        if isinstance(entry, Mapping):
            rules[str(entry.get("propertyName"))] = list(entry.get("propertyValidationRules") or [])
    return rules, []


def check_properties(rules: FieldRules, client: Any) -> PropertyCheck:
    """Every mapped field against its HubSpot property (one list call, one validations call)."""
    existing = {str(p.get("name")): p for p in client.list_properties()}
    validations, notes = _validations(client)
    problems: list[str] = []
    missing: list[str] = []
    for rule in rules.values():
        prop = existing.get(rule.hubspot_property)
        if prop is None:
            missing.append(rule.hubspot_property)
            continue
        problems += property_problems(rule, prop, validations.get(rule.hubspot_property, []))
    return PropertyCheck(problems, missing, notes)
