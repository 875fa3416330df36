"""The job, its schedule (timezone validated when the definitions load), the checks and the sensors exist."""

from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from warp_sync_pipeline.core.settings import SettingsError
from warp_sync_pipeline.definitions import defs
from warp_sync_pipeline.defs.reconciliation import (
    RECONCILIATION_ASSETS,
    ReconciliationSettings,
    reconciliation,
    reconciliation_schedule,
)
from warp_sync_pipeline.resources.database import DatabaseResource

ASSETS = {"warp_customers", "hubspot_companies", "field_differences", "hubspot_property_history",
          "reconciliation_plan", "rule_draft_preview", "reconciliation_scope", "hubspot_writeback", "warp_writeback", "reconciliation_report"}


def test_the_job_schedule_checks_and_sensors_are_defined(monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    monkeypatch.setenv("WARP_SCHEDULE_TIMEZONE", "Europe/Berlin")
    definitions = defs()
    dg.Definitions.validate_loadable(definitions)

    job = definitions.resolve_job_def("reconciliation_job")
    assert job.executor_def.name == dg.in_process_executor.name
    assert job.tags["warp/flow"] == "reconciliation"
    assert {key.to_user_string() for key in job.asset_layer.executable_asset_keys} == ASSETS

    schedule = definitions.resolve_schedule_def("reconciliation_daily_schedule")
    assert (schedule.cron_schedule, schedule.execution_timezone, schedule.job_name) == (
        "0 2 * * *", "Europe/Berlin", "reconciliation_job")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    with dg.build_schedule_context(scheduled_execution_time=datetime(2026, 3, 2, 2, tzinfo=ZoneInfo("Europe/Berlin")),
                                   resources={"db": DatabaseResource(url=database_url)}) as context:
        [request] = schedule.evaluate_tick(context).run_requests
    assert request.job_name in (None, "reconciliation_job")

    for name in ("run_failure_alert_sensor", "run_canceled_alert_sensor", "warp_alerts_sensor"):
        assert definitions.resolve_sensor_def(name).default_status == dg.DefaultSensorStatus.RUNNING

    checks = {(key.asset_key.to_user_string(), key.name) for key in definitions.resolve_asset_graph().asset_check_keys}
    assert {
        ("hubspot_companies", "unique_warp_ban"),
        ("field_differences", "every_customer_linked"),
        ("field_differences", "drift_below_limit"),
        ("hubspot_writeback", "without_errors"),
        ("warp_writeback", "without_errors"),
    } <= checks

    assets = {a.key.to_user_string(): a for a in RECONCILIATION_ASSETS}
    assert set(assets) == ASSETS
    for asset in assets.values():
        assert asset.group_names_by_key[asset.key] == "reconciliation"
        assert asset.specs_by_key[asset.key].description and asset.specs_by_key[asset.key].kinds
    assert assets["hubspot_property_history"].op.retry_policy is not None
    assert isinstance(definitions.resources["reconciliation"], ReconciliationSettings)


def test_the_schedule_takes_the_configured_timezone() -> None:
    assert reconciliation_schedule("America/New_York").execution_timezone == "America/New_York"


def test_a_bad_timezone_stops_the_definitions_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARP_SCHEDULE_TIMEZONE", "Mars/Olympus_Mons")
    with pytest.raises(SettingsError, match="WARP_SCHEDULE_TIMEZONE"):
        reconciliation()


def test_a_bad_reconciliation_setting_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARP_RECONCILE_MAX_CHANGE_SHARE", "1.5")
    with pytest.raises(SettingsError, match="WARP_RECONCILE_MAX_CHANGE_SHARE"):
        reconciliation()
    monkeypatch.setenv("WARP_RECONCILE_MAX_CHANGE_SHARE", "0.02")
    monkeypatch.delenv("WARP_SCHEDULE_TIMEZONE", raising=False)
    assert reconciliation().resources["reconciliation"].options({}).max_change_share == 0.02


def test_a_missed_night_shows_as_a_stale_report() -> None:
    from datetime import timedelta

    import dagster as dg
    import yaml

    from tests import REPO
    from warp_sync_pipeline.defs.reconciliation import reconciliation_report

    policy = reconciliation_report.specs_by_key[dg.AssetKey("reconciliation_report")].freshness_policy
    assert policy is not None and policy.fail_window.to_timedelta() == timedelta(hours=26)
    assert yaml.safe_load((REPO / "warp_sync_pipeline" / "instance" / "dagster.yaml").read_text())["freshness"] == {"enabled": True}


def test_a_run_launched_with_config_keeps_the_warp_reconcile_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The request sensor and the shell launch runs with run config for the resource; Dagster then drops the values
    the code set, so the limits must come from the settings when the run starts, not from the code."""
    monkeypatch.setenv("WARP_RECONCILE_MAX_CHANGE_SHARE", "0.25")
    monkeypatch.setenv("WARP_RECONCILE_CHUNK_SIZE", "250")
    seen: dict[str, object] = {}

    @dg.asset
    def probe(context: dg.AssetExecutionContext, reconciliation: ReconciliationSettings) -> None:
        seen["options"] = reconciliation.options(dict(context.run.tags))

    defs = dg.Definitions(assets=[probe], jobs=[dg.define_asset_job("probe_job", selection=[probe])],
                          resources={"reconciliation": ReconciliationSettings()})
    job = defs.resolve_job_def("probe_job")
    job.execute_in_process(run_config={"resources": {"reconciliation": {"config": {"dry_run": True}}}})
    options = seen["options"]
    assert (options.max_change_share, options.warp_chunk_size, options.dry_run) == (0.25, 250, True)
    job.execute_in_process(run_config={"resources": {"reconciliation": {"config": {"max_change_share": 0.1}}}})
    assert seen["options"].max_change_share == 0.1  # a run may still set its own
