"""The `hubspot` Dagster resource wraps the client (and its shared budget)."""

from __future__ import annotations

import dagster as dg
import pytest
import sqlalchemy as sa

from warp_sync_pipeline.core.hubspot import HubSpotClient, HubSpotSettings, Priority, client_from_env
from warp_sync_pipeline.core.settings import SettingsError
from warp_sync_pipeline.definitions import defs
from warp_sync_pipeline.resources.database import DatabaseResource
from warp_sync_pipeline.resources.hubspot import HubSpotResource


def test_the_code_location_binds_hubspot_from_the_environment() -> None:
    resource = defs().resources["hubspot"]
    assert isinstance(resource, HubSpotResource)


def test_from_env_reads_limits_and_names_a_bad_variable() -> None:
    resource = HubSpotResource.from_env({"HUBSPOT_REQUESTS_PER_10S": "190", "HUBSPOT_RESERVED_SHARE": "0.3"})
    assert (resource.requests_per_10s, resource.reserved_share) == (190, 0.3)
    assert resource.base_url == "https://api.hubapi.com"
    with pytest.raises(SettingsError, match="HUBSPOT_REQUESTS_PER_10S"):
        HubSpotResource.from_env({"HUBSPOT_REQUESTS_PER_10S": "lots"})


def test_the_resource_and_the_core_parse_the_same_settings_with_the_same_defaults() -> None:
    # One parser (issue 14): what the code location binds is what HubSpotSettings reads, for every limit.
    environ = {"HUBSPOT_SEARCH_PER_SECOND": "4", "HUBSPOT_DAILY_RESERVED_SHARE": "0.1", "HUBSPOT_MAX_ATTEMPTS": "7",
               "HUBSPOT_TIME_BUDGET_SECONDS": "30", "HUBSPOT_API_VERSION": "2026-03"}
    core = HubSpotSettings.from_env({**environ, "HUBSPOT_ACCESS_TOKEN": "pat-x"})
    bound = HubSpotResource.from_env(environ)
    assert (bound.search_per_second, bound.daily_reserved_share, bound.max_attempts, bound.time_budget_seconds,
            bound.api_version) == (core.budget.search_per_second, core.budget.daily_reserved_share,
                                   core.max_attempts, core.time_budget_s, core.api_version)
    unset, default = HubSpotResource.from_env({}), HubSpotResource(access_token="pat-x")
    assert unset.model_dump(exclude={"access_token", "database_url"}) == default.model_dump(
        exclude={"access_token", "database_url"})


def test_an_op_calls_hubspot_through_the_resource_and_its_budget(sandbox, engine: sa.Engine) -> None:  # noqa: ANN001
    @dg.op
    def count_companies(hubspot: HubSpotResource) -> int:
        return sum(1 for _ in hubspot.client.iter_companies(properties=["name"]))

    @dg.job
    def count_job() -> None:
        count_companies()

    sandbox.control.seed([{"name": f"c{n}"} for n in range(120)])
    resource = HubSpotResource(base_url=sandbox.base_url, access_token=sandbox.access_token,
                               database_url=engine.url.render_as_string(hide_password=False))
    result = count_job.execute_in_process(resources={"hubspot": resource})
    assert result.success and result.output_for_node("count_companies") == 120
    with engine.connect() as conn:  # two pages, two tokens from the shared budget
        assert conn.execute(sa.text("SELECT count(*) FROM hubspot_rate_budget")).scalar_one() == 2


def test_the_token_is_not_in_the_resource_config_shown_by_dagster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "pat-very-secret")
    resource = HubSpotResource.from_env({})
    assert "pat-very-secret" not in repr(resource)


def test_client_from_env(sandbox, engine: sa.Engine) -> None:  # noqa: ANN001
    env = {"HUBSPOT_BASE_URL": sandbox.base_url, "HUBSPOT_ACCESS_TOKEN": sandbox.access_token,
           "HUBSPOT_TIME_BUDGET_SECONDS": "4"}
    with client_from_env(engine, Priority.SYNC, environ=env) as client:
        assert isinstance(client, HubSpotClient)
        assert client.priority is Priority.SYNC and client.budget is not None and client.time_budget_s == 4
        client.list_companies(limit=1)
    with client_from_env(environ=env) as no_budget:
        assert no_budget.budget is None
        no_budget.list_companies(limit=1)
    with pytest.raises(SettingsError, match="HUBSPOT_ACCESS_TOKEN"):
        client_from_env(environ={"HUBSPOT_BASE_URL": sandbox.base_url})
    with pytest.raises(SettingsError, match="HUBSPOT_BASE_URL"):
        client_from_env(environ={"HUBSPOT_BASE_URL": "ftp://x", "HUBSPOT_ACCESS_TOKEN": "t"})


def _setup_error(resources: dict[str, object]) -> str:
    """What setting the resources up for a run raised (Dagster wraps it), as `variable: problem`."""
    with pytest.raises(dg.DagsterResourceFunctionError) as info, dg.build_resources(resources):
        pass
    assert isinstance(info.value.__cause__, SettingsError)
    return str(info.value.__cause__)


def test_a_run_validates_the_resolved_env_vars_through_the_settings_model(monkeypatch: pytest.MonkeyPatch) -> None:
    # The UI shows the variable's name; the value it resolves to when a run starts goes through the same model
    # as any process's environment, so a bad one fails the run naming the variable, not deep inside httpx.
    monkeypatch.setenv("HUBSPOT_BASE_URL", "ftp://hubspot.example")
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "pat-x")
    monkeypatch.setenv("WARP_DATABASE_URL", "mysql://u@h/db")
    bound = HubSpotResource(base_url=dg.EnvVar("HUBSPOT_BASE_URL"), access_token=dg.EnvVar("HUBSPOT_ACCESS_TOKEN"))
    assert _setup_error({"hubspot": bound}) == "HUBSPOT_BASE_URL: expected a URL starting with http:// or https://"
    monkeypatch.setenv("HUBSPOT_BASE_URL", "http://127.0.0.1:9")
    with_db = HubSpotResource(base_url=dg.EnvVar("HUBSPOT_BASE_URL"), access_token=dg.EnvVar("HUBSPOT_ACCESS_TOKEN"),
                              database_url=dg.EnvVar("WARP_DATABASE_URL"))
    assert _setup_error({"hubspot": with_db}).startswith("WARP_DATABASE_URL: must be a PostgreSQL URL")
    db = DatabaseResource(url=dg.EnvVar("WARP_DATABASE_URL"))
    assert _setup_error({"db": db}).startswith("WARP_DATABASE_URL: must be a PostgreSQL URL")
    with pytest.raises(SettingsError, match="HUBSPOT_ACCESS_TOKEN: is not set"):
        HubSpotResource(access_token="").build_client()
