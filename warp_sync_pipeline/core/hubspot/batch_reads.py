"""Batch reads of companies: 100 ids a call (50 with history), each answer matched back to the ids asked for,
merged-away ids included."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from warp_sync_pipeline.core.hubspot.errors import AuthFailed, HubSpotError, NotFound
from warp_sync_pipeline.core.hubspot.models import Company, RecordOutcome
from warp_sync_pipeline.core.hubspot.transport import Transport, query_bool
from warp_sync_pipeline.core.hubspot.versions import ApiVersion

# The ids merged into a company ("Merged Company IDs", ;-separated), read with every batch read.
MERGED_IDS_PROPERTY = "hs_merged_object_ids"
BATCH_SIZE = 100  # HubSpot's limit of inputs per batch call
PAGE_MAX_WITH_HISTORY = 50  # list `limit` cap when propertiesWithHistory is asked for


@dataclass(frozen=True)
class _ReadRequest:
    """What one batch read asks of every chunk."""

    properties: list[str]
    properties_with_history: Sequence[str] | None
    id_property: str | None
    archived: bool

    @classmethod
    def of(
        cls,
        properties: Sequence[str] | None,
        properties_with_history: Sequence[str] | None,
        id_property: str | None,
        archived: bool,
    ) -> _ReadRequest:
        wanted = list(properties or [])
        if id_property and id_property not in wanted:
            wanted.append(id_property)  # to match results back to inputs
        if not id_property and MERGED_IDS_PROPERTY not in wanted:
            wanted.append(MERGED_IDS_PROPERTY)
        return cls(wanted, properties_with_history, id_property, archived)

    @property
    def chunk_size(self) -> int:
        # Like list pages, a batch read with history takes at most 50 inputs.
        return PAGE_MAX_WITH_HISTORY if self.properties_with_history else BATCH_SIZE

    def body(self, chunk: list[str]) -> dict[str, Any]:
        body: dict[str, Any] = {"inputs": [{"id": i} for i in chunk], "properties": self.properties}
        if self.properties_with_history:
            body["propertiesWithHistory"] = list(self.properties_with_history)
        if self.id_property:
            body["idProperty"] = self.id_property
        return body

    def key_of(self, company: Company) -> str | None:
        """The input a result answers: its `id_property` value, else its id."""
        return company.properties.get(self.id_property) if self.id_property else company.id


@dataclass
class _ChunkAnswer:
    """The outcomes one call named: `hits` answer the key asked for and replace any earlier outcome; `fallbacks`
    (a merged-away id mapped to its new record, a per-record error) never displace one."""

    hits: dict[str, RecordOutcome]
    fallbacks: dict[str, RecordOutcome]

    def add_to(self, found: dict[str, RecordOutcome]) -> None:
        found.update(self.hits)
        for key, outcome in self.fallbacks.items():
            found.setdefault(key, outcome)


class BatchReader:
    def __init__(self, transport: Transport, paths: ApiVersion) -> None:
        self._transport = transport
        self._paths = paths

    def read(
        self,
        ids: Sequence[str],
        *,
        properties: Sequence[str] | None = None,
        properties_with_history: Sequence[str] | None = None,
        id_property: str | None = None,
        archived: bool = False,
    ) -> list[RecordOutcome]:
        """HubSpotClient.batch_read_companies."""
        request = _ReadRequest.of(properties, properties_with_history, id_property, archived)
        found: dict[str, RecordOutcome] = {}
        for chunk in chunks(list(dict.fromkeys(str(i) for i in ids)), request.chunk_size):
            self._read_chunk(request, chunk).add_to(found)
        return _in_input_order(ids, found)

    def _read_chunk(self, request: _ReadRequest, chunk: list[str]) -> _ChunkAnswer:
        try:
            data = self._transport.call(
                "POST", f"{self._paths.companies}/batch/read", params={"archived": query_bool(request.archived)},
                json=request.body(chunk),
            )
        except AuthFailed:
            raise
        except HubSpotError as exc:
            return _ChunkAnswer(hits={i: RecordOutcome(index=-1, key=i, error=exc) for i in chunk}, fallbacks={})
        answer = _ChunkAnswer(hits={}, fallbacks={})
        for result in data.get("results", []):
            company = Company.from_api(result)
            key = request.key_of(company)
            if key is not None:
                answer.hits[key] = RecordOutcome(index=-1, key=key, company=company)
            if not request.id_property:
                for merged_id in _merged_ids(company, chunk):
                    answer.fallbacks.setdefault(merged_id, RecordOutcome(index=-1, key=merged_id, company=company))
        for entry in data.get("errors", []):
            error = self._transport.record_error(entry)
            for key in error_context(entry, "ids") or error_context(entry, "id"):
                answer.fallbacks.setdefault(key, RecordOutcome(index=-1, key=key, error=error))
        return answer


def _merged_ids(company: Company, asked: list[str]) -> list[str]:
    """The ids asked for that were merged into `company`."""
    merged = (company.properties.get(MERGED_IDS_PROPERTY) or "").split(";")
    return [m.strip() for m in merged if m.strip() in asked]


def _in_input_order(ids: Sequence[str], found: Mapping[str, RecordOutcome]) -> list[RecordOutcome]:
    """One outcome per input, in input order; an id no answer named is NotFound."""
    outcomes = []
    for index, raw in enumerate(ids):
        key = str(raw)
        hit = found.get(key)
        if hit is None:
            hit = RecordOutcome(index=index, key=key, error=NotFound(f"HubSpot returned no company for {key}"))
        outcomes.append(RecordOutcome(index=index, key=key, company=hit.company, error=hit.error))
    return outcomes


def error_context(entry: Mapping[str, Any], key: str) -> list[str]:
    """A `context` value of a batch answer's error entry, as a list of strings."""
    context = entry.get("context")
    if not isinstance(context, Mapping):
        return []
    value = context.get(key)
    if isinstance(value, list):
        return [str(v) for v in value]
    return [] if value is None else [str(value)]


def chunks(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])
