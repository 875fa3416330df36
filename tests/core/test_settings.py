from __future__ import annotations

import pytest

from warp_sync_pipeline.core.db import database_url_from_env, normalize_url
from warp_sync_pipeline.core.settings import (
    SettingsError,
    get_bool,
    get_float,
    get_int,
    get_timezone,
    overlaid_environ,
)


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


@pytest.mark.parametrize(
    ("call", "variable"),
    [
        (lambda: get_bool("WARP_WRITEBACK_ENABLED", True, environ={"WARP_WRITEBACK_ENABLED": "maybe"}),
         "WARP_WRITEBACK_ENABLED"),
        (lambda: get_int("WARP_X", 1, environ={"WARP_X": "ten"}), "WARP_X"),
        (lambda: get_int("WARP_X", 1, minimum=1, environ={"WARP_X": "0"}), "WARP_X"),
        (lambda: get_float("WARP_Y", 0.05, maximum=1, environ={"WARP_Y": "2"}), "WARP_Y"),
        (lambda: get_timezone("WARP_SCHEDULE_TIMEZONE", "UTC", environ={"WARP_SCHEDULE_TIMEZONE": "Mars/Base"}),
         "WARP_SCHEDULE_TIMEZONE"),
    ],
)
def test_malformed_settings_name_their_variable(call, variable: str) -> None:  # noqa: ANN001
    with pytest.raises(SettingsError) as info:
        call()
    assert info.value.variable == variable
    assert variable in str(info.value)


def test_settings_defaults_and_values() -> None:
    assert get_bool("B", True, environ={}) is True
    assert get_bool("B", True, environ={"B": "off"}) is False
    assert get_timezone("TZ", "UTC", environ={"TZ": "Europe/Berlin"}) == "Europe/Berlin"


def test_overlaid_environ_lays_only_the_named_set_keys_over_the_environment() -> None:
    environ = {"A": "env-a", "B": "env-b", "C": "env-c"}
    overrides = {"A": 5, "B": None, "D": "ignored", "C": "app-c"}
    assert overlaid_environ(overrides, ["A", "B", "C"], environ=environ) == {
        "A": "5", "B": "env-b", "C": "app-c"
    }
    assert environ == {"A": "env-a", "B": "env-b", "C": "env-c"}  # the environment itself is left alone
