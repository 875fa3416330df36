"""HubSpot's company properties through the API: read, create, change, archive, and `ensure` that warp-sync's
schema (properties.py) is in place."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from warp_sync_pipeline.core.hubspot.errors import Conflict
from warp_sync_pipeline.core.hubspot.properties import COMPANY_PROPERTIES, EnsureResult, PropertyDefinition
from warp_sync_pipeline.core.hubspot.transport import Effect, Transport, path_segment, query_bool
from warp_sync_pipeline.core.hubspot.versions import ApiVersion


class PropertySchemaMismatch(RuntimeError):
    """Existing HubSpot properties differ from COMPANY_PROPERTIES in ways HubSpot cannot change."""

    def __init__(self, problems: Mapping[str, list[str]]) -> None:
        self.problems = dict(problems)
        detail = "; ".join(f"{name}: {', '.join(p)}" for name, p in self.problems.items())
        super().__init__(f"HubSpot properties do not match warp-sync's schema: {detail}")


class PropertySchema:
    def __init__(self, transport: Transport, paths: ApiVersion) -> None:
        self._transport = transport
        self._paths = paths

    def list_all(self, *, archived: bool = False) -> list[dict[str, Any]]:
        """Every company property, as HubSpot's `Property` objects."""
        data = self._transport.call("GET", self._paths.company_properties, params={"archived": query_bool(archived)})
        return list(data.get("results", []))

    def get(self, name: str) -> dict[str, Any]:
        return self._transport.call("GET", f"{self._paths.company_properties}/{path_segment(name)}")

    def create(self, definition: PropertyDefinition | Mapping[str, Any]) -> dict[str, Any]:
        body = definition.to_api() if isinstance(definition, PropertyDefinition) else dict(definition)
        return self._transport.call("POST", self._paths.company_properties, json=body, effect=Effect.WRITE)

    def update(self, name: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        return self._transport.call(
            "PATCH", f"{self._paths.company_properties}/{path_segment(name)}", json=dict(changes),
            effect=Effect.IDEMPOTENT_WRITE,
        )

    def archive(self, name: str) -> None:
        self._transport.call(
            "DELETE", f"{self._paths.company_properties}/{path_segment(name)}", effect=Effect.IDEMPOTENT_WRITE
        )

    def ensure(self, definitions: Sequence[PropertyDefinition] = COMPANY_PROPERTIES) -> EnsureResult:
        """HubSpotClient.ensure_properties."""
        existing = {p.get("name"): p for p in self.list_all()}
        created: list[str] = []
        present: list[str] = []
        options_added: dict[str, list[str]] = {}
        problems: dict[str, list[str]] = {}
        for definition in definitions:
            current = existing.get(definition.name)
            if current is None:
                try:
                    self.create(definition)
                    created.append(definition.name)
                    continue
                except Conflict:  # another process created it a moment ago
                    current = self.get(definition.name)
            present.append(definition.name)
            added, differences = self._complete_options(definition, current)
            if added:
                options_added[definition.name] = added
            if differences:
                problems[definition.name] = differences
        if problems:
            raise PropertySchemaMismatch(problems)
        return EnsureResult(created=created, existing=present, options_added=options_added)

    def _complete_options(self, definition: PropertyDefinition, current: dict[str, Any]) -> tuple[list[str], list[str]]:
        """Add the enumeration options an existing property lacks (when its type fits). Returns the option values
        added, and the differences left, which HubSpot cannot change in place."""
        differences = definition.differences(current)
        have = {str(o.get("value")) for o in current.get("options") or []}
        missing = [o for o in definition.options if o.value not in have]
        if not missing or current.get("type") != definition.type:
            return [], differences
        options = list(current.get("options") or []) + [o.to_api(len(have) + n) for n, o in enumerate(missing)]
        self.update(definition.name, {"options": options})
        return [o.value for o in missing], [d for d in differences if not d.startswith("options missing")]
