"""The one settings model: every variable, its default and bounds, errors naming the variable, `.env.example`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from warp_sync_pipeline.core.db import database_url_from_env, normalize_url
from warp_sync_pipeline.core.outbound import DrainSettings, PushSettings
from warp_sync_pipeline.core.retention import RetentionSettings
from warp_sync_pipeline.core.settings import (
    DEFAULTS,
    VARIABLES,
    SettingsError,
    WarpSettings,
    load_settings,
    overlaid_environ,
)

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"
_ASSIGNMENT = re.compile(r"^#?\s?([A-Z][A-Z0-9_]+)=(.*)$")


def _documented() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2).strip()) for line in ENV_EXAMPLE.read_text().splitlines()
            if (m := _ASSIGNMENT.match(line))]


def test_a_missing_database_url_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="WARP_DATABASE_URL") as info:
        database_url_from_env({})
    assert info.value.variable == "WARP_DATABASE_URL"


@pytest.mark.parametrize("raw", ["mysql://u@h/db", "not a url", "postgresql://u@h"])
def test_a_malformed_database_url_names_the_variable(raw: str) -> None:
    with pytest.raises(SettingsError, match="WARP_DATABASE_URL"):
        database_url_from_env({"WARP_DATABASE_URL": raw})


def test_the_driver_is_always_named() -> None:
    assert normalize_url("postgresql://u@h:5/db").startswith("postgresql+psycopg2://")
    assert normalize_url("postgres://u:p@h/db") == "postgresql+psycopg2://u:p@h/db"
    assert load_settings({"WARP_DATABASE_URL": "postgres://u@h/db"}).database_url == "postgresql+psycopg2://u@h/db"


@pytest.mark.parametrize(
    ("variable", "raw", "problem"),
    [
        ("WARP_WRITEBACK_ENABLED", "maybe", "expected true/false, got 'maybe'"),
        ("WARP_QUEUE_CLAIM_SIZE", "ten", "expected a whole number, got 'ten'"),
        ("WARP_QUEUE_CLAIM_SIZE", "1.5", "expected a whole number, got '1.5'"),
        ("WARP_QUEUE_CLAIM_SIZE", "0", "must be at least 1, got 0"),
        ("WARP_WEBHOOK_RETENTION_DAYS", "2", "must be at least 3, got 2"),
        ("HUBSPOT_RESERVED_SHARE", "0.95", "must be at most 0.9, got 0.95"),
        ("WARP_RECONCILE_MAX_CHANGE_SHARE", "lots", "expected a number, got 'lots'"),
        ("SMTP_PORT", "70000", "must be at most 65535, got 70000"),
        ("SMTP_HOST", "smtp://mail", "expected a host name or address, without scheme or spaces"),
        ("WARP_SCHEDULE_TIMEZONE", "Mars/Base", "unknown timezone 'Mars/Base'"),
        ("HUBSPOT_BASE_URL", "ftp://x", "expected a URL starting with http:// or https://"),
        ("WARP_DAGSTER_DATABASE_URL", "sqlite:///x.db", "must be a PostgreSQL URL, got backend 'sqlite'"),
        ("WARP_QUEUE_LEASE_SECONDS", "inf", "Input should be a finite number"),
    ],
)
def test_a_malformed_setting_names_its_variable_and_the_problem(variable: str, raw: str, problem: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({variable: raw})
    assert info.value.variable == variable
    assert str(info.value).startswith(f"{variable}: {problem}")


def test_blank_counts_as_unset_and_values_are_trimmed() -> None:
    settings = load_settings({"WARP_QUEUE_CLAIM_SIZE": "   ", "WARP_SCHEDULE_TIMEZONE": " Europe/Berlin ",
                              "WARP_WRITEBACK_ENABLED": "OFF", "HUBSPOT_BASE_URL": "http://127.0.0.1:1/",
                              "UNRELATED": "x"})
    assert settings.queue_claim_size == DEFAULTS.queue_claim_size == 500
    assert settings.schedule_timezone == "Europe/Berlin"
    assert settings.writeback_enabled is False
    assert settings.hubspot_base_url == "http://127.0.0.1:1"


def test_a_given_mapping_is_the_whole_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WARP_QUEUE_CLAIM_SIZE", "7")
    assert load_settings().queue_claim_size == 7
    assert load_settings({}).queue_claim_size == 500


def test_secrets_never_show_in_the_models_repr() -> None:
    settings = load_settings({"HUBSPOT_ACCESS_TOKEN": "pat-secret", "SMTP_PASSWORD": "pw-secret",
                              "WARP_DATABASE_URL": "postgresql://u:db-secret@h/db", "HUBSPOT_CLIENT_SECRET": "cs"})
    assert not {"pat-secret", "pw-secret", "db-secret"} & set(re.findall(r"[\w-]+", repr(settings)))


def test_every_flows_settings_come_from_the_model_with_the_models_defaults() -> None:
    assert DrainSettings.from_env({}) == DrainSettings()
    assert PushSettings.from_env({}) == PushSettings()
    assert RetentionSettings.from_env({}) == RetentionSettings()
    changed = load_settings({"WARP_QUEUE_RETENTION_DAYS": "9", "WARP_IDEMPOTENCY_RETENTION_HOURS": "5",
                             "WARP_PAUSE_PROBE_SECONDS": "3"})
    assert RetentionSettings.from_settings(changed).queue_done_days == 9
    assert RetentionSettings.from_settings(changed).idempotency_key_hours == 5
    assert DrainSettings.from_settings(changed).pause.probe_after_s == 3


def test_env_example_documents_every_variable_once_and_nothing_else() -> None:
    documented = [name for name, _ in _documented()]
    assert sorted(n for n in set(documented) if documented.count(n) > 1) == []
    assert set(documented) == VARIABLES


def test_env_example_values_are_valid_settings() -> None:
    examples = {name: value for name, value in _documented() if value}
    load_settings(examples)  # raises, naming the variable, if an example is not a valid value


def test_every_field_has_its_variable_as_alias() -> None:
    assert all(f.alias and f.alias.isupper() for f in WarpSettings.model_fields.values())
    assert len(VARIABLES) == len(WarpSettings.model_fields)


def test_overlaid_environ_lays_only_the_named_set_keys_over_the_environment() -> None:
    environ = {"A": "env-a", "B": "env-b", "C": "env-c"}
    overrides = {"A": 5, "B": None, "D": "ignored", "C": "app-c"}
    assert overlaid_environ(overrides, ["A", "B", "C"], environ=environ) == {
        "A": "5", "B": "env-b", "C": "app-c"
    }
    assert environ == {"A": "env-a", "B": "env-b", "C": "env-c"}  # the environment itself is left alone
