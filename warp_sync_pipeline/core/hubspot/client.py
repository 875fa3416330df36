"""The HubSpot CRM client (httpx): companies and company properties, in any API version of versions.py.

`HubSpotClient` is the one face the rest of warp-sync calls. Behind it: transport.py owns HubSpot's wire (the
bearer token, the shared request budget, retries of 429s, 5xx answers, timeouts and connection errors within the
caller's time budget, error bodies parsed into types); batch_reads.py and batch_writes.py batch to 100 inputs and
match per-record answers back to inputs; property_schema.py reads and ensures the company properties.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa

from warp_sync_pipeline.core.hubspot.batch_reads import BATCH_SIZE, PAGE_MAX_WITH_HISTORY, BatchReader, chunks
from warp_sync_pipeline.core.hubspot.batch_writes import BatchWriter, WriteItem
from warp_sync_pipeline.core.hubspot.budget import Bucket, BudgetSettings, Priority, RequestBudget
from warp_sync_pipeline.core.hubspot.errors import (
    HubSpotError,
    NotFound,
    SearchLimitExceeded,
    UniqueValueConflict,
)
from warp_sync_pipeline.core.hubspot.exports import CompanyExports, ExportStatus
from warp_sync_pipeline.core.hubspot.models import (
    Company,
    CompanyPage,
    CompanyUpdate,
    DailyQuota,
    Filter,
    PageProgress,
    PropertyValues,
    RecordOutcome,
    SearchPage,
    Sort,
    parse_time,
)
from warp_sync_pipeline.core.hubspot.properties import (
    COMPANY_PROPERTIES,
    UNIQUE_PROPERTIES,
    EnsureResult,
    PropertyDefinition,
)
from warp_sync_pipeline.core.hubspot.property_schema import PropertySchema
from warp_sync_pipeline.core.hubspot.transport import (
    Effect,
    RetryPolicy,
    Transport,
    TransportSettings,
    path_segment,
    query_bool,
)
from warp_sync_pipeline.core.hubspot.versions import (
    DEFAULT_API_VERSION,
    api_version,
    api_version_from_settings,
)
from warp_sync_pipeline.core.settings import DEFAULTS, WarpSettings, load_settings, require

DEFAULT_BASE_URL = "https://api.hubapi.com"
ACCOUNT_INFO = "/account-info/v3"
PAGE_MAX = 100  # list `limit` cap
SEARCH_PAGE_MAX = 200
SEARCH_RESULT_CAP = 10_000  # search cannot page past this many results
SEARCH_MAX_GROUPS, SEARCH_MAX_FILTERS_PER_GROUP, SEARCH_MAX_FILTERS = 5, 10, 25


@dataclass(frozen=True)
class HubSpotSettings:
    """Everything `client_from_env` reads; see .env.example."""

    base_url: str
    access_token: str = field(repr=False)
    time_budget_s: float = DEFAULTS.hubspot_time_budget_seconds
    request_timeout_s: float = DEFAULTS.hubspot_request_timeout_seconds
    max_attempts: int = DEFAULTS.hubspot_max_attempts
    budget: BudgetSettings = field(default_factory=BudgetSettings)
    api_version: str = DEFAULT_API_VERSION

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, require_token: bool = True) -> HubSpotSettings:
        """Every HUBSPOT_* setting, parsed and checked. `require_token=False` is for a process that binds the token
        later (the Dagster resource, as an EnvVar read when a run starts): the token is then left empty."""
        return cls.from_settings(load_settings(environ), require_token=require_token)

    @classmethod
    def from_settings(cls, settings: WarpSettings, *, require_token: bool = True) -> HubSpotSettings:
        token = settings.hubspot_access_token or ""
        return cls(
            base_url=settings.hubspot_base_url or DEFAULT_BASE_URL,
            access_token=require(token, "HUBSPOT_ACCESS_TOKEN") if require_token else token,
            time_budget_s=settings.hubspot_time_budget_seconds,
            request_timeout_s=settings.hubspot_request_timeout_seconds,
            max_attempts=settings.hubspot_max_attempts,
            budget=BudgetSettings.from_settings(settings),
            api_version=api_version_from_settings(settings),
        )


class HubSpotClient:
    """HubSpot companies and properties. Thread-safe; one per process is enough.

    `budget` shares the request budget through PostgreSQL (None: no shared budget, for tools
    without a database). `priority` says which share of it this client may use. Each call gets
    `time_budget_s` unless the client came from `with_deadline()`, whose calls share one deadline;
    `request_timeout_s` bounds one request. `unique_properties` are those whose conflicts are
    UniqueValueConflicts; `multi_status` asks for per-record answers to batch writes (see BatchWriter);
    `version` chooses the API paths of every call (versions.py).

    Batch calls return one RecordOutcome per input, in input order; a failure of a whole chunk
    (after retries) becomes each of its records' error, except AuthFailed, which is raised.
    """

    def __init__(
        self,
        base_url: str,
        access_token: str,
        *,
        budget: RequestBudget | None = None,
        priority: Priority = Priority.BULK,
        time_budget_s: float = 60.0,
        request_timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        unique_properties: frozenset[str] = UNIQUE_PROPERTIES,
        multi_status: bool = True,
        version: str = DEFAULT_API_VERSION,
    ) -> None:
        if not access_token:
            raise ValueError("a HubSpot access token is required")
        settings = TransportSettings(time_budget_s=time_budget_s, request_timeout_s=request_timeout_s,
                                     retry=retry or RetryPolicy(), unique_properties=unique_properties)
        self.paths = api_version(version)
        self.multi_status = multi_status
        self._attach(Transport(base_url, access_token, budget=budget, priority=priority, settings=settings))

    def _attach(self, transport: Transport) -> None:
        """Send every call through `transport` (this client's own, or a view of it)."""
        self._transport = transport
        self._reader = BatchReader(transport, self.paths)
        self._writer = BatchWriter(transport, self.paths, self._reader, multi_status=self.multi_status)
        self._schema = PropertySchema(transport, self.paths)
        self._exports = CompanyExports(transport, self.paths)

    def __repr__(self) -> str:
        return (f"HubSpotClient({self.base_url!r}, version={self.paths.name}, priority={self.priority.value}, "
                f"budget={self.budget is not None})")

    # --- settings --------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return self._transport.base_url

    @property
    def priority(self) -> Priority:
        return self._transport.priority

    @property
    def budget(self) -> RequestBudget | None:
        return self._transport.budget

    @property
    def time_budget_s(self) -> float:
        return self._transport.settings.time_budget_s

    @property
    def request_timeout_s(self) -> float:
        return self._transport.settings.request_timeout_s

    @property
    def retry(self) -> RetryPolicy:
        return self._transport.settings.retry

    @property
    def unique_properties(self) -> frozenset[str]:
        return self._transport.settings.unique_properties

    def requests_sent(self) -> Counter[str]:
        """Requests this client (and its views) sent so far, by kind ("POST /crm/v3/objects/companies/search"),
        every attempt counted: subtract an earlier snapshot for what one step cost."""
        return self._transport.tally.snapshot()

    # --- lifecycle -------------------------------------------------------------------------------

    def with_deadline(self, seconds: float) -> HubSpotClient:
        """A view of this client whose calls all end within `seconds` from now (a create's budget)."""
        return self._view(self._transport.with_deadline(seconds))

    def with_priority(self, priority: Priority) -> HubSpotClient:
        return self._view(self._transport.with_priority(priority))

    def _view(self, transport: Transport) -> HubSpotClient:
        view = copy.copy(self)
        view._attach(transport)
        return view

    def close(self) -> None:
        """Close the connections and the budget; a view's close leaves them to the client it came from."""
        self._transport.close()

    def __enter__(self) -> HubSpotClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- companies: one at a time ----------------------------------------------------------------

    def create_company(self, properties: PropertyValues) -> Company:
        """`POST /crm/v3/objects/companies`. Never resent after a lost answer (OutcomeUnknown)."""
        data = self._transport.call("POST", self.paths.companies, json={"properties": _values(properties)}, effect=Effect.WRITE)
        return Company.from_api(data)

    def get_company(
        self,
        company_id: str,
        *,
        id_property: str | None = None,
        properties: Sequence[str] | None = None,
        properties_with_history: Sequence[str] | None = None,
        archived: bool = False,
    ) -> Company:
        """`GET .../companies/{id}`; with `id_property` the id is that property's value. NotFound if none."""
        params = _read_params(properties, properties_with_history, archived)
        if id_property:
            params["idProperty"] = id_property
        return Company.from_api(self._transport.call("GET", f"{self.paths.companies}/{path_segment(company_id)}", params=params))

    def account_details(self) -> Mapping[str, Any]:
        """`GET /account-info/v3/details`: the account's `portalId`, `timeZone` and `uiDomain`, among others."""
        details = self._transport.call("GET", f"{ACCOUNT_INFO}/details")
        return details if isinstance(details, Mapping) else {}

    def daily_quota(self) -> DailyQuota | None:
        """The account's daily quota and its reset (`resetsAt` of the private-apps usage); failing that, the next
        midnight in the account's time zone (its details); None when neither can be read."""
        try:
            entries = (self._transport.call("GET", f"{ACCOUNT_INFO}/api-usage/daily/private-apps") or {}).get("results") or []
            entry = entries[0] if entries and isinstance(entries[0], Mapping) else {}
            resets_at = parse_time(entry.get("resetsAt"))
            if resets_at is not None:
                limit, used = entry.get("usageLimit"), entry.get("currentUsage")
                return DailyQuota(int(limit) if isinstance(limit, int) else None,
                                  int(used) if isinstance(used, int) else None, resets_at)
        except (HubSpotError, ValueError):
            pass  # not every token may read the usage (OAuth apps cannot): fall back to the time zone
        try:
            zone = ZoneInfo(str(self.account_details().get("timeZone")))
        except (HubSpotError, ValueError, ZoneInfoNotFoundError):
            return None
        tomorrow = datetime.now(zone).date() + timedelta(days=1)
        return DailyQuota(None, None, datetime.combine(tomorrow, datetime.min.time(), tzinfo=zone))

    def unique_holder(self, conflict: UniqueValueConflict, *, property_name: str, value: str) -> str | None:
        """The id of the company holding a unique value a write was refused for: as the answer named it, else
        read by `idProperty` (live companies, then archived ones, which may still hold it); None if none does."""
        if conflict.existing_id:
            return conflict.existing_id
        for archived in (False, True):
            try:
                return self.get_company(value, id_property=property_name, properties=[property_name],
                                        archived=archived).id
            except NotFound:
                continue
        return None

    def update_company(
        self, company_id: str, properties: PropertyValues, *, id_property: str | None = None
    ) -> Company:
        """`PATCH .../companies/{id}`: the given values overwrite; "" or None clears one."""
        params = {"idProperty": id_property} if id_property else None
        data = self._transport.call(
            "PATCH", f"{self.paths.companies}/{path_segment(company_id)}", params=params,
            json={"properties": _values(properties)}, effect=Effect.IDEMPOTENT_WRITE,
        )
        return Company.from_api(data)

    def archive_company(self, company_id: str) -> None:
        """`DELETE .../companies/{id}` (HubSpot keeps it restorable for 90 days)."""
        self._transport.call("DELETE", f"{self.paths.companies}/{path_segment(company_id)}", effect=Effect.IDEMPOTENT_WRITE)

    # --- companies: reading many -----------------------------------------------------------------

    def list_companies(
        self,
        *,
        limit: int = PAGE_MAX,
        after: str | None = None,
        properties: Sequence[str] | None = None,
        properties_with_history: Sequence[str] | None = None,
        archived: bool = False,
    ) -> CompanyPage:
        """One page of `GET .../companies` (limit ≤ 100, ≤ 50 with history)."""
        cap = PAGE_MAX_WITH_HISTORY if properties_with_history else PAGE_MAX
        if not 1 <= limit <= cap:
            raise ValueError(f"limit must be 1..{cap}{' with propertiesWithHistory' if cap < PAGE_MAX else ''}")
        params = _read_params(properties, properties_with_history, archived)
        params["limit"] = str(limit)
        if after:
            params["after"] = after
        data = self._transport.call("GET", self.paths.companies, params=params)
        return CompanyPage([Company.from_api(r) for r in data.get("results", [])], _next_after(data))

    def iter_companies(
        self,
        *,
        properties: Sequence[str] | None = None,
        properties_with_history: Sequence[str] | None = None,
        page_size: int | None = None,
        archived: bool = False,
        on_page: Callable[[PageProgress], None] | None = None,
    ) -> Iterator[Company]:
        """Every company, one page in memory at a time; `on_page` hears after each page."""
        size = page_size or (PAGE_MAX_WITH_HISTORY if properties_with_history else PAGE_MAX)
        after: str | None = None
        pages = companies = 0
        while True:
            page = self.list_companies(
                limit=size, after=after, properties=properties,
                properties_with_history=properties_with_history, archived=archived,
            )
            pages += 1
            companies += len(page.results)
            after = page.next_after
            if on_page is not None:
                on_page(PageProgress(pages=pages, companies=companies, next_after=after))
            yield from page.results
            del page  # the next page replaces it; nothing keeps earlier pages alive
            if after is None:
                return

    def search_companies(
        self,
        *,
        filter_groups: Sequence[Sequence[Filter]] = (),
        sorts: Sequence[Sort] = (),
        properties: Sequence[str] | None = None,
        query: str | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> SearchPage:
        """`POST .../companies/search`: groups are OR-ed, filters in a group AND-ed.

        HubSpot's search index lags writes by seconds; read by id or idProperty where it matters.
        """
        _check_search(filter_groups, limit)
        if after is not None and after.isdigit() and int(after) >= SEARCH_RESULT_CAP:
            raise SearchLimitExceeded(
                f"search cannot page past {SEARCH_RESULT_CAP} results (after={after}); narrow the filters "
                "(e.g. by hs_object_id ranges) or use iter_companies"
            )
        body: dict[str, Any] = {"limit": limit}
        if filter_groups:
            body["filterGroups"] = [{"filters": [f.to_api() for f in group]} for group in filter_groups]
        if sorts:
            body["sorts"] = [s.to_api() for s in sorts]
        if properties:
            body["properties"] = list(properties)
        if query:
            body["query"] = query
        if after is not None:
            body["after"] = after
        data = self._transport.call("POST", f"{self.paths.companies}/search", json=body, bucket=Bucket.SEARCH)
        return SearchPage(
            total=int(data.get("total", 0)),
            results=[Company.from_api(r) for r in data.get("results", [])],
            next_after=_next_after(data),
        )

    def iter_search_companies(
        self,
        *,
        filter_groups: Sequence[Sequence[Filter]] = (),
        sorts: Sequence[Sort] = (),
        properties: Sequence[str] | None = None,
        query: str | None = None,
        page_size: int = 100,
    ) -> Iterator[Company]:
        """Every match, page by page. Raises SearchLimitExceeded up front when there are more than
        10,000 (HubSpot would refuse the pages past that, so the answer could not be complete)."""
        after: str | None = None
        while True:
            page = self.search_companies(
                filter_groups=filter_groups, sorts=sorts, properties=properties, query=query,
                limit=page_size, after=after,
            )
            if after is None and page.total > SEARCH_RESULT_CAP:
                raise SearchLimitExceeded(
                    f"search matches {page.total} companies; HubSpot returns at most {SEARCH_RESULT_CAP}. "
                    "Narrow the filters or use iter_companies",
                    total=page.total,
                )
            yield from page.results
            after = page.next_after
            if after is None:
                return

    # --- companies: batches ----------------------------------------------------------------------

    def batch_read_companies(
        self,
        ids: Sequence[str],
        *,
        properties: Sequence[str] | None = None,
        properties_with_history: Sequence[str] | None = None,
        id_property: str | None = None,
        archived: bool = False,
    ) -> list[RecordOutcome]:
        """Read companies 100 a call (50 with history); a missing one's outcome carries NotFound.

        A merged-away id is answered with the merged record under its new id (HubSpot's merges make a new
        company): `hs_merged_object_ids` is always read, and maps such a record back to every id asked for. The
        outcome's company then has another id than the input: the caller follows the merge (core.links)."""
        return self._reader.read(ids, properties=properties, properties_with_history=properties_with_history,
                                 id_property=id_property, archived=archived)

    def batch_create_companies(self, inputs: Sequence[PropertyValues]) -> list[RecordOutcome]:
        """Create companies 100 a call; each input's outcome says what became of it."""
        items = [WriteItem(i, None, {"properties": _values(p)}) for i, p in enumerate(inputs)]
        return self._writer.write("create", items, effect=Effect.WRITE, id_property=None)

    def batch_update_companies(
        self, updates: Sequence[CompanyUpdate], *, id_property: str | None = None
    ) -> list[RecordOutcome]:
        """Update companies 100 a call (by id, or by `id_property`, which must be unique)."""
        items = []
        for i, update in enumerate(updates):
            body: dict[str, Any] = {"id": str(update.id), "properties": _values(update.properties)}
            if id_property:
                body["idProperty"] = id_property
            items.append(WriteItem(i, str(update.id), body))
        return self._writer.write("update", items, effect=Effect.IDEMPOTENT_WRITE, id_property=id_property)

    def batch_upsert_companies(self, upserts: Sequence[CompanyUpdate], *, id_property: str) -> list[RecordOutcome]:
        """Create or update by a unique property; an outcome's `created` is HubSpot's `new`."""
        items = [
            WriteItem(i, str(u.id), {"id": str(u.id), "idProperty": id_property, "properties": _values(u.properties)})
            for i, u in enumerate(upserts)
        ]
        return self._writer.write("upsert", items, effect=Effect.IDEMPOTENT_WRITE, id_property=id_property)

    def batch_archive_companies(self, ids: Sequence[str]) -> None:
        """Archive companies 100 a call (HubSpot answers 204 with no per-record detail)."""
        for chunk in chunks(list(dict.fromkeys(str(i) for i in ids)), BATCH_SIZE):
            self._transport.call(
                "POST", f"{self.paths.companies}/batch/archive", json={"inputs": [{"id": i} for i in chunk]},
                effect=Effect.IDEMPOTENT_WRITE,
            )

    # --- exports --------------------------------------------------------------------------------------

    def export_companies(self, properties: Sequence[str], target: Path, *, name: str, poll_seconds: float,
                         timeout_seconds: float, on_poll: Callable[[ExportStatus], None] | None = None) -> Path:
        """Every active company's `properties` through the CRM Exports API (three or more calls, whatever the
        portal's size): started, waited for, and downloaded to `target`; read it with `export_rows`."""
        task_id = self._exports.start(properties, name=name)
        url = self._exports.wait(task_id, poll_seconds=poll_seconds, timeout_seconds=timeout_seconds, on_poll=on_poll)
        return self._exports.download(url, target, read_timeout_seconds=self.request_timeout_s,
                                      deadline_seconds=timeout_seconds)

    # --- properties ------------------------------------------------------------------------------

    def list_properties(self, *, archived: bool = False) -> list[dict[str, Any]]:
        """Every company property, as HubSpot's `Property` objects."""
        return self._schema.list_all(archived=archived)

    def property_validations(self) -> Mapping[str, Any]:
        """`GET /crm/v3/property-validations/0-2`: the account's validation rules on company properties."""
        answer = self._transport.call("GET", "/crm/v3/property-validations/0-2")
        return answer if isinstance(answer, Mapping) else {}

    def get_property(self, name: str) -> dict[str, Any]:
        return self._schema.get(name)

    def create_property(self, definition: PropertyDefinition | Mapping[str, Any]) -> dict[str, Any]:
        return self._schema.create(definition)

    def update_property(self, name: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        return self._schema.update(name, changes)

    def archive_property(self, name: str) -> None:
        self._schema.archive(name)

    def ensure_properties(self, definitions: Sequence[PropertyDefinition] = COMPANY_PROPERTIES) -> EnsureResult:
        """Create each missing property; add missing enumeration options; create nothing twice.

        Raises PropertySchemaMismatch when an existing property has another type, field type or
        uniqueness (HubSpot cannot change those in place; a person must decide).
        """
        return self._schema.ensure(definitions)


def client_from_env(
    engine: sa.Engine | None = None,
    priority: Priority = Priority.BULK,
    *,
    environ: Mapping[str, str] | None = None,
) -> HubSpotClient:
    """A client configured from HUBSPOT_* variables. With `engine`, it shares the request budget
    through that database (every process that calls HubSpot should pass one); without, it has
    no shared budget (for tools without a database) and relies on HubSpot's 429s alone."""
    return client_from_settings(HubSpotSettings.from_env(environ), engine, priority)


def client_from_settings(
    settings: HubSpotSettings, database: sa.Engine | str | None, priority: Priority = Priority.BULK
) -> HubSpotClient:
    """The client `settings` describe, sharing the request budget through `database` (engine or URL) if given."""
    budget = RequestBudget(database, settings.budget) if database is not None else None
    return HubSpotClient(
        settings.base_url,
        settings.access_token,
        budget=budget,
        priority=priority,
        time_budget_s=settings.time_budget_s,
        request_timeout_s=settings.request_timeout_s,
        retry=RetryPolicy(max_attempts=settings.max_attempts),
        version=settings.api_version,
    )


# --- helpers -------------------------------------------------------------------------------------


def _values(properties: PropertyValues) -> dict[str, str]:
    """HubSpot takes strings; an empty string clears a value."""
    values: dict[str, str] = {}
    for name, value in properties.items():
        if value is None:
            values[name] = ""
        elif isinstance(value, str):
            values[name] = value
        else:
            raise TypeError(f"property {name!r}: HubSpot values are strings (or None to clear), got {type(value).__name__}")
    return values


def _read_params(
    properties: Sequence[str] | None, properties_with_history: Sequence[str] | None, archived: bool
) -> dict[str, str]:
    params = {"archived": query_bool(archived)}
    if properties:
        params["properties"] = ",".join(properties)
    if properties_with_history:
        params["propertiesWithHistory"] = ",".join(properties_with_history)
    return params


def _next_after(data: Mapping[str, Any]) -> str | None:
    after = ((data.get("paging") or {}).get("next") or {}).get("after")
    return None if after in (None, "") else str(after)


def _check_search(filter_groups: Sequence[Sequence[Filter]], limit: int) -> None:
    if not 1 <= limit <= SEARCH_PAGE_MAX:
        raise ValueError(f"search limit must be 1..{SEARCH_PAGE_MAX}")
    if len(filter_groups) > SEARCH_MAX_GROUPS:
        raise ValueError(f"search takes at most {SEARCH_MAX_GROUPS} filter groups")
    if any(len(g) > SEARCH_MAX_FILTERS_PER_GROUP for g in filter_groups):
        raise ValueError(f"search takes at most {SEARCH_MAX_FILTERS_PER_GROUP} filters per group")
    if sum(len(g) for g in filter_groups) > SEARCH_MAX_FILTERS:
        raise ValueError(f"search takes at most {SEARCH_MAX_FILTERS} filters in all")
