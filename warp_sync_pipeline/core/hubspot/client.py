"""The HubSpot CRM client (httpx): companies and company properties, in any API version of versions.py.

It owns everything about HubSpot's wire: the bearer token, the shared request budget, retries of
429s, 5xx answers, timeouts and connection errors within the caller's time budget, batching to
100 inputs, 207 partial results matched back to inputs, and error bodies parsed into types.
"""

from __future__ import annotations

import copy
import email.utils
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import sqlalchemy as sa
import tenacity

from warp_sync_pipeline.core.hubspot.budget import Bucket, BudgetSettings, Priority, RequestBudget
from warp_sync_pipeline.core.hubspot.errors import (
    AuthFailed,
    BudgetExhausted,
    Conflict,
    HubSpotError,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    SearchLimitExceeded,
    ServiceUnavailable,
    UniqueValueConflict,
    ValidationFailed,
    error_from_payload,
)
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
from warp_sync_pipeline.core.hubspot.versions import DEFAULT_API_VERSION, api_version, api_version_from_env
from warp_sync_pipeline.core.settings import get_float, get_int, get_str, get_url

log = logging.getLogger("warp_sync.hubspot")

DEFAULT_BASE_URL = "https://api.hubapi.com"
ACCOUNT_INFO = "/account-info/v3"
# The ids merged into a company ("Merged Company IDs", ;-separated), read with every batch read.
MERGED_IDS_PROPERTY = "hs_merged_object_ids"
BATCH_SIZE = 100  # HubSpot's limit of inputs per batch call
PAGE_MAX = 100  # list `limit` cap
PAGE_MAX_WITH_HISTORY = 50  # list `limit` cap when propertiesWithHistory is asked for
SEARCH_PAGE_MAX = 200
SEARCH_RESULT_CAP = 10_000  # search cannot page past this many results
SEARCH_MAX_GROUPS, SEARCH_MAX_FILTERS_PER_GROUP, SEARCH_MAX_FILTERS = 5, 10, 25


class Effect(Enum):
    """What a request does, which decides whether an unanswered attempt may be sent again."""

    READ = "read"  # repeating it is harmless; a lost answer changed nothing
    IDEMPOTENT_WRITE = "idempotent"  # repeating it gives the same state (update, upsert, archive)
    WRITE = "write"  # repeating it could do it twice (create): never resent after a lost answer


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    backoff_initial_s: float = 0.25
    backoff_max_s: float = 8.0
    jitter_s: float = 0.25
    # First wait after a 429 that names no Retry-After; doubles per attempt up to the interval.
    rate_limit_wait_s: float = 1.0


@dataclass(frozen=True)
class HubSpotSettings:
    """Everything `client_from_env` reads; see .env.example."""

    base_url: str
    access_token: str = field(repr=False)
    time_budget_s: float = 60.0
    request_timeout_s: float = 30.0
    max_attempts: int = 5
    budget: BudgetSettings = field(default_factory=BudgetSettings)
    api_version: str = DEFAULT_API_VERSION

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, require_token: bool = True) -> HubSpotSettings:
        """Every HUBSPOT_* setting, parsed and checked. `require_token=False` is for a process that binds the token
        later (the Dagster resource, as an EnvVar read when a run starts): the token is then left empty."""
        return cls(
            base_url=get_url("HUBSPOT_BASE_URL", schemes=("http", "https"), environ=environ) or DEFAULT_BASE_URL,
            access_token=get_str("HUBSPOT_ACCESS_TOKEN", None if require_token else "", environ=environ),
            time_budget_s=get_float("HUBSPOT_TIME_BUDGET_SECONDS", 60.0, minimum=0.1, environ=environ),
            request_timeout_s=get_float("HUBSPOT_REQUEST_TIMEOUT_SECONDS", 30.0, minimum=0.1, environ=environ),
            max_attempts=get_int("HUBSPOT_MAX_ATTEMPTS", 5, minimum=1, environ=environ),
            budget=BudgetSettings.from_env(environ),
            api_version=api_version_from_env(environ),
        )


class _BearerToken(httpx.Auth):
    """Adds the token per request; it is in no client-wide header and no repr."""

    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request

    def __repr__(self) -> str:
        return "_BearerToken(<redacted>)"


@dataclass
class _Item:
    """One batch input with its place in the caller's list."""

    index: int
    key: str | None
    body: dict[str, Any]
    trace: str = ""


class HubSpotClient:
    """HubSpot companies and properties. Thread-safe; one per process is enough.

    `budget` shares the request budget through PostgreSQL (None: no shared budget, for tools
    without a database). `priority` says which share of it this client may use. Each call gets
    `time_budget_s` unless the client came from `with_deadline()`, whose calls share one deadline.

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
        self.paths = api_version(version)
        self.base_url = base_url.rstrip("/")
        self.priority = Priority(priority)
        self.time_budget_s = time_budget_s
        self.request_timeout_s = request_timeout_s
        self.retry = retry or RetryPolicy()
        self.unique_properties = unique_properties
        # Send objectWriteTraceId on update/upsert inputs, asking for 207 per-record answers. With
        # False, HubSpot refuses such a batch whole for one bad input, and the client bisects.
        # Creates always send them: without, results could not be matched back to inputs.
        self.multi_status = multi_status
        self._budget = budget
        self._deadline: float | None = None
        self._owner = True
        self._http = httpx.Client(
            base_url=self.base_url,
            auth=_BearerToken(access_token),
            headers={"Accept": "application/json", "User-Agent": "warp-sync"},
            timeout=request_timeout_s,
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
        )

    def __repr__(self) -> str:
        return (f"HubSpotClient({self.base_url!r}, version={self.paths.name}, priority={self.priority.value}, "
                f"budget={self._budget is not None})")

    # --- lifecycle -------------------------------------------------------------------------------

    def with_deadline(self, seconds: float) -> HubSpotClient:
        """A view of this client whose calls all end within `seconds` from now (a create's budget)."""
        view = copy.copy(self)
        view._deadline = time.monotonic() + seconds
        view._owner = False
        return view

    def with_priority(self, priority: Priority) -> HubSpotClient:
        view = copy.copy(self)
        view.priority = Priority(priority)
        view._owner = False
        return view

    @property
    def budget(self) -> RequestBudget | None:
        return self._budget

    def close(self) -> None:
        if self._owner:
            self._http.close()
            if self._budget is not None:
                self._budget.close()

    def __enter__(self) -> HubSpotClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- companies: one at a time ----------------------------------------------------------------

    def create_company(self, properties: PropertyValues) -> Company:
        """`POST /crm/v3/objects/companies`. Never resent after a lost answer (OutcomeUnknown)."""
        data = self._call("POST", self.paths.companies, json={"properties": _values(properties)}, effect=Effect.WRITE)
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
        return Company.from_api(self._call("GET", f"{self.paths.companies}/{_segment(company_id)}", params=params))

    def daily_quota(self) -> DailyQuota | None:
        """The account's daily quota and its reset (`resetsAt` of the private-apps usage); failing that, the next
        midnight in the account's time zone (its details); None when neither can be read."""
        try:
            entries = (self._call("GET", f"{ACCOUNT_INFO}/api-usage/daily/private-apps") or {}).get("results") or []
            entry = entries[0] if entries and isinstance(entries[0], Mapping) else {}
            resets_at = parse_time(entry.get("resetsAt"))
            if resets_at is not None:
                limit, used = entry.get("usageLimit"), entry.get("currentUsage")
                return DailyQuota(int(limit) if isinstance(limit, int) else None,
                                  int(used) if isinstance(used, int) else None, resets_at)
        except (HubSpotError, ValueError):
            pass  # not every token may read the usage (OAuth apps cannot): fall back to the time zone
        try:
            zone = ZoneInfo(str((self._call("GET", f"{ACCOUNT_INFO}/details") or {}).get("timeZone")))
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
        data = self._call(
            "PATCH", f"{self.paths.companies}/{_segment(company_id)}", params=params,
            json={"properties": _values(properties)}, effect=Effect.IDEMPOTENT_WRITE,
        )
        return Company.from_api(data)

    def archive_company(self, company_id: str) -> None:
        """`DELETE .../companies/{id}` (HubSpot keeps it restorable for 90 days)."""
        self._call("DELETE", f"{self.paths.companies}/{_segment(company_id)}", effect=Effect.IDEMPOTENT_WRITE)

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
        data = self._call("GET", self.paths.companies, params=params)
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
        data = self._call("POST", f"{self.paths.companies}/search", json=body, bucket=Bucket.SEARCH)
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
        wanted = list(properties or [])
        if id_property and id_property not in wanted:
            wanted.append(id_property)  # to match results back to inputs
        if not id_property and MERGED_IDS_PROPERTY not in wanted:
            wanted.append(MERGED_IDS_PROPERTY)
        unique_ids = list(dict.fromkeys(str(i) for i in ids))
        found: dict[str, RecordOutcome] = {}
        # Like list pages, a batch read with history takes at most 50 inputs.
        size = PAGE_MAX_WITH_HISTORY if properties_with_history else BATCH_SIZE
        for chunk in _chunks(unique_ids, size):
            body: dict[str, Any] = {"inputs": [{"id": i} for i in chunk], "properties": wanted}
            if properties_with_history:
                body["propertiesWithHistory"] = list(properties_with_history)
            if id_property:
                body["idProperty"] = id_property
            try:
                data = self._call(
                    "POST", f"{self.paths.companies}/batch/read", params={"archived": _bool(archived)}, json=body,
                )
            except AuthFailed:
                raise
            except HubSpotError as exc:
                found.update({i: RecordOutcome(index=-1, key=i, error=exc) for i in chunk})
                continue
            for result in data.get("results", []):
                company = Company.from_api(result)
                key = company.properties.get(id_property) if id_property else company.id
                if key is not None:
                    found[key] = RecordOutcome(index=-1, key=key, company=company)
                if not id_property:
                    for merged_id in (company.properties.get(MERGED_IDS_PROPERTY) or "").split(";"):
                        if merged_id.strip() in chunk:
                            found.setdefault(merged_id.strip(),
                                             RecordOutcome(index=-1, key=merged_id.strip(), company=company))
            for entry in data.get("errors", []):
                error = self._record_error(entry)
                for key in _context(entry, "ids") or _context(entry, "id"):
                    found.setdefault(key, RecordOutcome(index=-1, key=key, error=error))
        outcomes = []
        for index, raw in enumerate(ids):
            key = str(raw)
            hit = found.get(key)
            if hit is None:
                hit = RecordOutcome(index=index, key=key, error=NotFound(f"HubSpot returned no company for {key}"))
            outcomes.append(RecordOutcome(index=index, key=key, company=hit.company, error=hit.error))
        return outcomes

    def batch_create_companies(self, inputs: Sequence[PropertyValues]) -> list[RecordOutcome]:
        """Create companies 100 a call; each input's outcome says what became of it."""
        items = [_Item(i, None, {"properties": _values(p)}) for i, p in enumerate(inputs)]
        return self._batch_write("create", items, effect=Effect.WRITE, id_property=None)

    def batch_update_companies(
        self, updates: Sequence[CompanyUpdate], *, id_property: str | None = None
    ) -> list[RecordOutcome]:
        """Update companies 100 a call (by id, or by `id_property`, which must be unique)."""
        items = []
        for i, update in enumerate(updates):
            body: dict[str, Any] = {"id": str(update.id), "properties": _values(update.properties)}
            if id_property:
                body["idProperty"] = id_property
            items.append(_Item(i, str(update.id), body))
        return self._batch_write("update", items, effect=Effect.IDEMPOTENT_WRITE, id_property=id_property)

    def batch_upsert_companies(self, upserts: Sequence[CompanyUpdate], *, id_property: str) -> list[RecordOutcome]:
        """Create or update by a unique property; an outcome's `created` is HubSpot's `new`."""
        items = [
            _Item(i, str(u.id), {"id": str(u.id), "idProperty": id_property, "properties": _values(u.properties)})
            for i, u in enumerate(upserts)
        ]
        return self._batch_write("upsert", items, effect=Effect.IDEMPOTENT_WRITE, id_property=id_property)

    def batch_archive_companies(self, ids: Sequence[str]) -> None:
        """Archive companies 100 a call (HubSpot answers 204 with no per-record detail)."""
        for chunk in _chunks(list(dict.fromkeys(str(i) for i in ids)), BATCH_SIZE):
            self._call(
                "POST", f"{self.paths.companies}/batch/archive", json={"inputs": [{"id": i} for i in chunk]},
                effect=Effect.IDEMPOTENT_WRITE,
            )

    # --- properties ------------------------------------------------------------------------------

    def list_properties(self, *, archived: bool = False) -> list[dict[str, Any]]:
        """Every company property, as HubSpot's `Property` objects."""
        data = self._call("GET", self.paths.company_properties, params={"archived": _bool(archived)})
        return list(data.get("results", []))

    def get_property(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"{self.paths.company_properties}/{_segment(name)}")

    def create_property(self, definition: PropertyDefinition | Mapping[str, Any]) -> dict[str, Any]:
        body = definition.to_api() if isinstance(definition, PropertyDefinition) else dict(definition)
        return self._call("POST", self.paths.company_properties, json=body, effect=Effect.WRITE)

    def update_property(self, name: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        return self._call(
            "PATCH", f"{self.paths.company_properties}/{_segment(name)}", json=dict(changes),
            effect=Effect.IDEMPOTENT_WRITE,
        )

    def archive_property(self, name: str) -> None:
        self._call("DELETE", f"{self.paths.company_properties}/{_segment(name)}", effect=Effect.IDEMPOTENT_WRITE)

    def ensure_properties(self, definitions: Sequence[PropertyDefinition] = COMPANY_PROPERTIES) -> EnsureResult:
        """Create each missing property; add missing enumeration options; create nothing twice.

        Raises PropertySchemaMismatch when an existing property has another type, field type or
        uniqueness (HubSpot cannot change those in place; a person must decide).
        """
        existing = {p.get("name"): p for p in self.list_properties()}
        created: list[str] = []
        present: list[str] = []
        options_added: dict[str, list[str]] = {}
        problems: dict[str, list[str]] = {}
        for definition in definitions:
            current = existing.get(definition.name)
            if current is None:
                try:
                    self.create_property(definition)
                    created.append(definition.name)
                    continue
                except Conflict:  # another process created it a moment ago
                    current = self.get_property(definition.name)
            present.append(definition.name)
            differences = definition.differences(current)
            have = {str(o.get("value")) for o in current.get("options") or []}
            missing = [o for o in definition.options if o.value not in have]
            if missing and current.get("type") == definition.type:
                options = list(current.get("options") or []) + [
                    o.to_api(len(have) + n) for n, o in enumerate(missing)
                ]
                self.update_property(definition.name, {"options": options})
                options_added[definition.name] = [o.value for o in missing]
                differences = [d for d in differences if not d.startswith("options missing")]
            if differences:
                problems[definition.name] = differences
        if problems:
            raise PropertySchemaMismatch(problems)
        return EnsureResult(created=created, existing=present, options_added=options_added)

    # --- the wire --------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        effect: Effect = Effect.READ,
        bucket: Bucket = Bucket.BURST,
    ) -> Any:
        """Send with retries within the time budget; return the JSON body (None for 204)."""
        deadline = self._deadline if self._deadline is not None else time.monotonic() + self.time_budget_s
        lost_answer = False  # did any attempt of this write go unanswered?
        last_failure: HubSpotError | None = None

        def attempt() -> httpx.Response:
            nonlocal lost_answer, last_failure
            try:
                return self._send_once(method, path, params, json, effect, bucket, deadline)
            except BudgetExhausted:
                # The time ran out while waiting to retry: the failure that made us wait is the caller's answer.
                if last_failure is not None:
                    raise last_failure from None
                raise
            except OutcomeUnknown as exc:
                lost_answer, last_failure = True, exc
                raise
            except HubSpotError as exc:
                last_failure = exc
                raise

        def retryable(exc: BaseException) -> bool:
            if isinstance(exc, RateLimited):
                return not exc.daily
            if isinstance(exc, ServiceUnavailable):
                return True
            return isinstance(exc, OutcomeUnknown) and effect is Effect.IDEMPOTENT_WRITE

        backoff = tenacity.wait_exponential_jitter(
            initial=self.retry.backoff_initial_s, max=self.retry.backoff_max_s, jitter=self.retry.jitter_s
        )

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, ServiceUnavailable) and exc.retry_after_s is not None:
                return max(exc.retry_after_s, backoff(state))
            if isinstance(exc, RateLimited):
                if exc.retry_after_s is not None:
                    return exc.retry_after_s
                ceiling = exc.interval_s or 10.0
                first = self.retry.rate_limit_wait_s
                return min(first * 2 ** (state.attempt_number - 1), ceiling) + random.uniform(0, 0.1)
            return backoff(state)

        def stop(state: tenacity.RetryCallState) -> bool:
            return (
                state.attempt_number >= self.retry.max_attempts
                or time.monotonic() + state.upcoming_sleep >= deadline
            )

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "HubSpot %s %s: %s (attempt %d); retrying in %.2fs",
                method, path, type(exc).__name__, state.attempt_number, state.upcoming_sleep,
            )

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(retryable), wait=wait, stop=stop,
            before_sleep=before_sleep, sleep=time.sleep, reraise=True,
        )
        try:
            response = retrying(attempt)
        except HubSpotError as exc:
            exc.attempts = retrying.statistics.get("attempt_number", 1)
            if lost_answer and not isinstance(exc, OutcomeUnknown) and _not_applied(exc):
                # This failure says nothing of the earlier attempt whose answer was lost.
                raise OutcomeUnknown(
                    f"{method} {path}: an earlier attempt went unanswered and the retries failed "
                    f"({type(exc).__name__}: {exc.message}); the write may have been applied",
                    status=exc.status, category=exc.category, correlation_id=exc.correlation_id,
                    attempts=exc.attempts,
                ) from exc
            raise
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def _send_once(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: Any,
        effect: Effect,
        bucket: Bucket,
        deadline: float,
    ) -> httpx.Response:
        if self._budget is not None:
            self._budget.acquire(bucket, self.priority, deadline=deadline)
        remaining = deadline - time.monotonic()
        if remaining <= 0.01:
            raise BudgetExhausted(f"{method} {path}: the time budget ran out before the request was sent")
        started = time.monotonic()
        try:
            response = self._http.request(
                method, path, params=params, json=body, timeout=min(self.request_timeout_s, remaining)
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # The request never reached HubSpot.
            raise ServiceUnavailable(f"{method} {path}: could not connect ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            # Sent, but the answer was lost (timeout, reset, closed connection).
            if effect is Effect.READ:
                raise ServiceUnavailable(f"{method} {path}: no answer ({type(exc).__name__})") from exc
            raise OutcomeUnknown(
                f"{method} {path}: no answer ({type(exc).__name__}); the write may have been applied"
            ) from exc
        log.debug("HubSpot %s %s -> %d in %.0f ms", method, path, response.status_code,
                  (time.monotonic() - started) * 1000)
        daily = _int_header(response.headers.get("X-HubSpot-RateLimit-Daily"))
        left = _int_header(response.headers.get("X-HubSpot-RateLimit-Daily-Remaining"))
        if self._budget is not None and daily is not None and left is not None:
            self._budget.note_daily(daily, left)
        if response.is_success:
            return response
        error = self._response_error(response)
        if isinstance(error, ServiceUnavailable) and effect is Effect.WRITE and response.status_code >= 500 \
                and response.status_code != 503:
            # A 500/502/504 on a create may come after the write happened; a 503, 423 or 477 says it did not.
            raise OutcomeUnknown(
                f"{method} {path}: HubSpot answered {response.status_code}; the write may have been applied",
                status=error.status, category=error.category, correlation_id=error.correlation_id,
            )
        raise error

    def _response_error(self, response: httpx.Response) -> HubSpotError:
        try:
            payload = response.json()
        except ValueError:
            payload = None
        return error_from_payload(
            payload if isinstance(payload, dict) else None,
            status=response.status_code,
            correlation_id=response.headers.get("X-HubSpot-Correlation-Id"),
            unique_properties=self.unique_properties,
            retry_after_s=_retry_after(response.headers.get("Retry-After")),
            interval_s=_milliseconds(response.headers.get("X-HubSpot-RateLimit-Interval-Milliseconds")),
            fallback_message=f"HubSpot answered {response.status_code} {response.reason_phrase}",
        )

    def _record_error(self, entry: Mapping[str, Any]) -> HubSpotError:
        """One entry of a 207's `errors[]` as a typed error."""
        status = entry.get("status")
        return error_from_payload(
            entry, status=int(status) if isinstance(status, int | str) and str(status).isdigit() else None,
            unique_properties=self.unique_properties,
        )

    def _batch_write(
        self, operation: str, items: list[_Item], *, effect: Effect, id_property: str | None
    ) -> list[RecordOutcome]:
        outcomes: list[RecordOutcome | None] = [None] * len(items)
        call_tag = uuid.uuid4().hex[:12]
        for item in items:
            item.trace = f"{call_tag}-{item.index}"
        for chunk in _chunks(items, BATCH_SIZE):
            self._write_chunk(operation, chunk, outcomes, effect=effect, id_property=id_property)
        unnamed = [item for item in items if outcomes[item.index] is None]
        if unnamed and operation != "create":
            self._read_back(unnamed, outcomes, id_property=id_property)
        return [o if o is not None else RecordOutcome(index=i, key=items[i].key, error=OutcomeUnknown(
            "HubSpot's answer named this input neither as a result nor as an error")) for i, o in enumerate(outcomes)]

    def _read_back(self, items: list[_Item], outcomes: list[RecordOutcome | None], *,
                   id_property: str | None) -> None:
        """Inputs HubSpot's answer named neither as a result nor as an error are read back, never assumed written:
        one whose every sent value reads back as sent counts as written; any other stays an unknown outcome."""
        sent = {item.key: dict(item.body.get("properties") or {}) for item in items if item.key is not None}
        names = sorted({name for values in sent.values() for name in values})
        try:
            read = self.batch_read_companies(list(sent), properties=names, id_property=id_property)
        except HubSpotError as exc:
            log.warning("could not read back %d unanswered batch inputs: %s", len(items), type(exc).__name__)
            return
        by_key = {outcome.key: outcome for outcome in read}
        for item in items:
            found = by_key.get(item.key)
            if found is None or found.company is None:
                continue
            values = sent.get(item.key, {})
            if all(_same_value(found.company.properties.get(name), value) for name, value in values.items()):
                outcomes[item.index] = RecordOutcome(index=item.index, key=item.key, company=found.company)

    def _write_chunk(
        self,
        operation: str,
        chunk: list[_Item],
        outcomes: list[RecordOutcome | None],
        *,
        effect: Effect,
        id_property: str | None,
    ) -> None:
        with_trace = self.multi_status or operation == "create"
        body = {"inputs": [{**item.body, "objectWriteTraceId": item.trace} if with_trace else item.body
                           for item in chunk]}
        try:
            data = self._call("POST", f"{self.paths.companies}/batch/{operation}", json=body, effect=effect)
        except AuthFailed:
            raise  # nothing else will work either; the caller pauses
        except NotFound as exc:
            # A whole batch refused for the records it could not find (HubSpot's usual form for batch update,
            # trace ids or not): those named are set aside as missing and the rest written now; unnamed, split.
            named = set((exc.context or {}).get("ids", []))
            missing = [item for item in chunk if item.key in named]
            if not missing:
                self._split(operation, chunk, outcomes, exc, effect=effect, id_property=id_property)
                return
            for item in missing:
                outcomes[item.index] = RecordOutcome(index=item.index, key=item.key, error=exc)
            rest = [item for item in chunk if item.key not in named]
            if rest:
                self._write_chunk(operation, rest, outcomes, effect=effect, id_property=id_property)
            return
        except (ValidationFailed, Conflict) as exc:
            # HubSpot refused the whole batch for some record(s) in it: split until each bad
            # record stands alone, so the good ones are written and the bad ones named.
            self._split(operation, chunk, outcomes, exc, effect=effect, id_property=id_property)
            return
        except HubSpotError as exc:
            for item in chunk:
                outcomes[item.index] = RecordOutcome(index=item.index, key=item.key, error=exc)
            return
        by_trace = {item.trace: item for item in chunk}
        by_key = {item.key: item for item in chunk if item.key is not None}
        for result in (data or {}).get("results", []):
            company = Company.from_api(result)
            item = by_trace.get(str(result.get("objectWriteTraceId")))
            if item is None:
                key = company.properties.get(id_property) if id_property else company.id
                item = by_key.get(key) if key is not None else None
            if item is None:
                log.warning("HubSpot batch %s returned company %s matching no input", operation, company.id)
                continue
            created = result.get("new")
            outcomes[item.index] = RecordOutcome(
                index=item.index, key=item.key, company=company,
                created=bool(created) if created is not None else (True if operation == "create" else None),
            )
        for entry in (data or {}).get("errors", []):
            error = self._record_error(entry)
            matched = [by_trace[t] for t in _context(entry, "objectWriteTraceId") if t in by_trace]
            matched += [by_key[k] for k in _context(entry, "ids") + _context(entry, "id") if k in by_key]
            for item in matched:
                outcomes[item.index] = RecordOutcome(index=item.index, key=item.key, error=error)


    def _split(self, operation: str, chunk: list[_Item], outcomes: list[RecordOutcome | None], exc: HubSpotError,
               *, effect: Effect, id_property: str | None) -> None:
        """Halve a refused batch until each bad record stands alone (its outcome `exc`)."""
        if len(chunk) == 1:
            outcomes[chunk[0].index] = RecordOutcome(index=chunk[0].index, key=chunk[0].key, error=exc)
            return
        middle = len(chunk) // 2
        for half in (chunk[:middle], chunk[middle:]):
            self._write_chunk(operation, half, outcomes, effect=effect, id_property=id_property)


class PropertySchemaMismatch(RuntimeError):
    """Existing HubSpot properties differ from COMPANY_PROPERTIES in ways HubSpot cannot change."""

    def __init__(self, problems: Mapping[str, list[str]]) -> None:
        self.problems = dict(problems)
        detail = "; ".join(f"{name}: {', '.join(p)}" for name, p in self.problems.items())
        super().__init__(f"HubSpot properties do not match warp-sync's schema: {detail}")


def client_from_env(
    engine: sa.Engine | None = None,
    priority: Priority = Priority.BULK,
    *,
    environ: Mapping[str, str] | None = None,
) -> HubSpotClient:
    """A client configured from HUBSPOT_* variables. With `engine`, it shares the request budget
    through that database (every process that calls HubSpot should pass one); without, it has
    no shared budget (for tools without a database) and relies on HubSpot's 429s alone."""
    settings = HubSpotSettings.from_env(environ)
    budget = RequestBudget(engine, settings.budget) if engine is not None else None
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
    params = {"archived": _bool(archived)}
    if properties:
        params["properties"] = ",".join(properties)
    if properties_with_history:
        params["propertiesWithHistory"] = ",".join(properties_with_history)
    return params


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _segment(value: str) -> str:
    return quote(str(value), safe="")


def _next_after(data: Mapping[str, Any]) -> str | None:
    after = ((data.get("paging") or {}).get("next") or {}).get("after")
    return None if after in (None, "") else str(after)


def _int_header(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _same_value(held: str | None, sent: str | None) -> bool:
    """HubSpot keeps numbers canonically ("1500.50" reads back "1500.5"): equal as text, or as numbers."""
    if (held or "") == (sent or ""):
        return True
    try:
        return Decimal(str(held)) == Decimal(str(sent))
    except (InvalidOperation, ValueError):
        return False


def _context(entry: Mapping[str, Any], key: str) -> list[str]:
    context = entry.get("context")
    if not isinstance(context, Mapping):
        return []
    value = context.get(key)
    if isinstance(value, list):
        return [str(v) for v in value]
    return [] if value is None else [str(value)]


def _chunks(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


def _check_search(filter_groups: Sequence[Sequence[Filter]], limit: int) -> None:
    if not 1 <= limit <= SEARCH_PAGE_MAX:
        raise ValueError(f"search limit must be 1..{SEARCH_PAGE_MAX}")
    if len(filter_groups) > SEARCH_MAX_GROUPS:
        raise ValueError(f"search takes at most {SEARCH_MAX_GROUPS} filter groups")
    if any(len(g) > SEARCH_MAX_FILTERS_PER_GROUP for g in filter_groups):
        raise ValueError(f"search takes at most {SEARCH_MAX_FILTERS_PER_GROUP} filters per group")
    if sum(len(g) for g in filter_groups) > SEARCH_MAX_FILTERS:
        raise ValueError(f"search takes at most {SEARCH_MAX_FILTERS} filters in all")


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _milliseconds(value: str | None) -> float | None:
    return int(value) / 1000 if value and value.isdigit() else None


def _not_applied(exc: HubSpotError) -> bool:
    """Failures that prove nothing about an earlier unanswered attempt."""
    return isinstance(exc, ServiceUnavailable | RateLimited | BudgetExhausted)

