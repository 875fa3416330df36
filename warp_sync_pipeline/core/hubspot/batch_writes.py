"""Batch writes of companies (create, update, upsert): 100 inputs a call, per-record results and errors (a 207's,
or a 200's on 2026-09 paths) matched back to the inputs, and a batch HubSpot refuses whole bisected until each
bad input stands alone."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from warp_sync_pipeline.core.hubspot.batch_reads import BATCH_SIZE, BatchReader, chunks, error_context
from warp_sync_pipeline.core.hubspot.errors import (
    AuthFailed,
    Conflict,
    HubSpotError,
    NotFound,
    OutcomeUnknown,
    ValidationFailed,
)
from warp_sync_pipeline.core.hubspot.models import Company, RecordOutcome
from warp_sync_pipeline.core.hubspot.transport import Effect, Transport
from warp_sync_pipeline.core.hubspot.versions import ApiVersion

log = logging.getLogger("warp_sync.hubspot")

# The outcomes a step settled, by input index.
Outcomes = dict[int, RecordOutcome]


@dataclass
class WriteItem:
    """One batch input with its place in the caller's list."""

    index: int
    key: str | None
    body: dict[str, Any]
    trace: str = ""

    def outcome(self, *, company: Company | None = None, error: HubSpotError | None = None,
                created: bool | None = None) -> RecordOutcome:
        return RecordOutcome(index=self.index, key=self.key, company=company, error=error, created=created)


@dataclass(frozen=True)
class _Write:
    """What one batch write does to every chunk."""

    operation: str  # create, update or upsert: the path's last segment
    effect: Effect
    id_property: str | None

    def key_of(self, company: Company) -> str | None:
        """The input key a result answers: its `id_property` value, else its id."""
        return company.properties.get(self.id_property) if self.id_property else company.id


class BatchWriter:
    """Writes batches through a transport.

    `multi_status`: send objectWriteTraceId on update/upsert inputs, asking for 207 per-record answers. With
    False, HubSpot refuses such a batch whole for one bad input, and the writer bisects. Creates always send
    them: without, results could not be matched back to inputs.
    """

    def __init__(self, transport: Transport, paths: ApiVersion, reader: BatchReader, *, multi_status: bool) -> None:
        self._transport = transport
        self._paths = paths
        self._reader = reader
        self._multi_status = multi_status

    def write(
        self, operation: str, items: list[WriteItem], *, effect: Effect, id_property: str | None
    ) -> list[RecordOutcome]:
        """One outcome per item, in item order (each item's index is its place in `items`)."""
        write = _Write(operation, effect, id_property)
        call_tag = uuid.uuid4().hex[:12]
        for item in items:
            item.trace = f"{call_tag}-{item.index}"
        outcomes: Outcomes = {}
        for chunk in chunks(items, BATCH_SIZE):
            outcomes.update(self._write_chunk(write, chunk))
        unnamed = [item for item in items if item.index not in outcomes]
        if unnamed and operation != "create":
            outcomes.update(self._read_back(unnamed, id_property=id_property))
        return [outcomes[item.index] if item.index in outcomes else item.outcome(error=OutcomeUnknown(
            "HubSpot's answer named this input neither as a result nor as an error")) for item in items]

    def _write_chunk(self, write: _Write, chunk: list[WriteItem]) -> Outcomes:
        with_trace = self._multi_status or write.operation == "create"
        body = {"inputs": [{**item.body, "objectWriteTraceId": item.trace} if with_trace else item.body
                           for item in chunk]}
        try:
            data = self._transport.call(
                "POST", f"{self._paths.companies}/batch/{write.operation}", json=body, effect=write.effect
            )
        except AuthFailed:
            raise  # nothing else will work either; the caller pauses
        except HubSpotError as exc:
            return self._refused(write, chunk, exc)
        # An input named both as a result and as an error takes the error.
        return {**_matched_results(write, chunk, data or {}), **self._matched_errors(chunk, data or {})}

    def _refused(self, write: _Write, chunk: list[WriteItem], exc: HubSpotError) -> Outcomes:
        """The outcomes of a chunk whose call failed whole (after retries)."""
        if isinstance(exc, NotFound):
            return self._without_missing(write, chunk, exc)
        if isinstance(exc, ValidationFailed | Conflict):
            # HubSpot refused the whole batch for some record(s) in it: split until each bad
            # record stands alone, so the good ones are written and the bad ones named.
            return self._split(write, chunk, exc)
        return {item.index: item.outcome(error=exc) for item in chunk}

    def _without_missing(self, write: _Write, chunk: list[WriteItem], exc: NotFound) -> Outcomes:
        """A whole batch refused for the records it could not find (HubSpot's usual form for batch update, trace
        ids or not): those named are set aside as missing and the rest written now; unnamed, split."""
        named = set((exc.context or {}).get("ids", []))
        missing = [item for item in chunk if item.key in named]
        if not missing:
            return self._split(write, chunk, exc)
        outcomes = {item.index: item.outcome(error=exc) for item in missing}
        rest = [item for item in chunk if item.key not in named]
        if rest:
            outcomes.update(self._write_chunk(write, rest))
        return outcomes

    def _split(self, write: _Write, chunk: list[WriteItem], exc: HubSpotError) -> Outcomes:
        """Halve a refused batch until each bad record stands alone (its outcome `exc`)."""
        if len(chunk) == 1:
            return {chunk[0].index: chunk[0].outcome(error=exc)}
        middle = len(chunk) // 2
        outcomes: Outcomes = {}
        for half in (chunk[:middle], chunk[middle:]):
            outcomes.update(self._write_chunk(write, half))
        return outcomes

    def _matched_errors(self, chunk: list[WriteItem], data: Mapping[str, Any]) -> Outcomes:
        """The inputs the answer's `errors[]` name, by trace id or by key, each with its entry's error."""
        by_trace = {item.trace: item for item in chunk}
        by_key = {item.key: item for item in chunk if item.key is not None}
        outcomes: Outcomes = {}
        for entry in data.get("errors", []):
            error = self._transport.record_error(entry)
            matched = [by_trace[t] for t in error_context(entry, "objectWriteTraceId") if t in by_trace]
            matched += [by_key[k] for k in error_context(entry, "ids") + error_context(entry, "id") if k in by_key]
            outcomes.update({item.index: item.outcome(error=error) for item in matched})
        return outcomes

    def _read_back(self, items: list[WriteItem], *, id_property: str | None) -> Outcomes:
        """Inputs HubSpot's answer named neither as a result nor as an error are read back, never assumed written:
        one whose every sent value reads back as sent counts as written; any other stays an unknown outcome."""
        sent = {item.key: dict(item.body.get("properties") or {}) for item in items if item.key is not None}
        names = sorted({name for values in sent.values() for name in values})
        try:
            read = self._reader.read(list(sent), properties=names, id_property=id_property)
        except HubSpotError as exc:
            log.warning("could not read back %d unanswered batch inputs: %s", len(items), type(exc).__name__)
            return {}
        by_key = {outcome.key: outcome for outcome in read}
        outcomes: Outcomes = {}
        for item in items:
            found = by_key.get(item.key)
            if found is None or found.company is None:
                continue
            values = sent.get(item.key, {})
            if all(_same_value(found.company.properties.get(name), value) for name, value in values.items()):
                outcomes[item.index] = item.outcome(company=found.company)
        return outcomes


def _matched_results(write: _Write, chunk: list[WriteItem], data: Mapping[str, Any]) -> Outcomes:
    """The inputs the answer's `results[]` name (by trace id, else by key), each with its company."""
    by_trace = {item.trace: item for item in chunk}
    by_key = {item.key: item for item in chunk if item.key is not None}
    outcomes: Outcomes = {}
    for result in data.get("results", []):
        company = Company.from_api(result)
        item = by_trace.get(str(result.get("objectWriteTraceId")))
        if item is None:
            key = write.key_of(company)
            item = by_key.get(key) if key is not None else None
        if item is None:
            log.warning("HubSpot batch %s returned company %s matching no input", write.operation, company.id)
            continue
        outcomes[item.index] = item.outcome(company=company, created=_created(write, result))
    return outcomes


def _created(write: _Write, result: Mapping[str, Any]) -> bool | None:
    """HubSpot's `new` where it says it (upsert); a create's results are all new; otherwise unknown."""
    created = result.get("new")
    if created is not None:
        return bool(created)
    return True if write.operation == "create" else None


def _same_value(held: str | None, sent: str | None) -> bool:
    """HubSpot keeps numbers canonically ("1500.50" reads back "1500.5"): equal as text, or as numbers."""
    if (held or "") == (sent or ""):
        return True
    try:
        return Decimal(str(held)) == Decimal(str(sent))
    except (InvalidOperation, ValueError):
        return False
