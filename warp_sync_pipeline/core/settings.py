"""Configuration read from environment variables, with errors that name the variable.

Every variable is documented in `.env.example`. Nothing here has a default secret.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}


def load_dotenv(directory: Path | None = None) -> list[str]:
    """Load `./.env` (of `directory`, the working directory by default) into the process environment the way
    Dagster's `dg`/`dagster dev` load it: its values win over variables already set. The CLI and the receiver call
    this at start, so one checkout runs every process with one configuration. Returns the names loaded."""
    from dotenv import dotenv_values

    path = (directory or Path.cwd()) / ".env"
    if not path.is_file():
        return []
    values = {name: value for name, value in dotenv_values(path).items() if value is not None}
    os.environ.update(values)
    return sorted(values)


class SettingsError(ValueError):
    """A missing or malformed setting; the message names the environment variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


def _env(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def overlaid_environ(
    overrides: Mapping[str, Any], names: Iterable[str], *, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment (as text) with each of `names` that `overrides` sets (not None) laid over it.

    For adapters whose own config (a Flask app's, a test's) may set a variable the environment also sets.
    """
    source = dict(_env(environ))
    source.update({name: str(overrides[name]) for name in names if overrides.get(name) is not None})
    return source


def get_str(name: str, default: str | None = None, *, environ: Mapping[str, str] | None = None) -> str:
    value = _env(environ).get(name, "").strip()
    if value:
        return value
    if default is None:
        raise SettingsError(name, "is not set (see .env.example)")
    return default


def get_optional(name: str, *, environ: Mapping[str, str] | None = None) -> str | None:
    value = _env(environ).get(name, "").strip()
    return value or None


def get_bool(name: str, default: bool, *, environ: Mapping[str, str] | None = None) -> bool:
    raw = _env(environ).get(name, "").strip().lower()
    if not raw:
        return default
    if raw in TRUE_WORDS:
        return True
    if raw in FALSE_WORDS:
        return False
    raise SettingsError(name, f"expected true/false, got {raw!r}")


def get_int(
    name: str, default: int, *, minimum: int | None = None, environ: Mapping[str, str] | None = None
) -> int:
    raw = _env(environ).get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(name, f"expected a whole number, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise SettingsError(name, f"must be at least {minimum}, got {value}")
    return value


def get_float(
    name: str,
    default: float,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    environ: Mapping[str, str] | None = None,
) -> float:
    raw = _env(environ).get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(name, f"expected a number, got {raw!r}") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise SettingsError(name, f"must be between {minimum} and {maximum}, got {value}")
    return value


def get_timezone(name: str, default: str, *, environ: Mapping[str, str] | None = None) -> str:
    """A validated IANA timezone name (Dagster's `execution_timezone` takes the plain string)."""
    value = get_str(name, default, environ=environ)
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(name, f"unknown timezone {value!r}; use an IANA name such as Europe/Berlin") from None
    return value


def get_url(name: str, *, schemes: tuple[str, ...], environ: Mapping[str, str] | None = None) -> str | None:
    value = get_optional(name, environ=environ)
    if value is None:
        return None
    if not value.startswith(tuple(s + "://" for s in schemes)):
        raise SettingsError(name, f"expected a URL starting with one of {', '.join(schemes)}://")
    return value.rstrip("/")


def project_root() -> Path:
    """The checkout (or the current directory when installed elsewhere)."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "pyproject.toml").exists() else Path.cwd()


def state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where local state lives: the private PostgreSQL's record, DAGSTER_HOME, logs."""
    raw = get_optional("WARP_STATE_DIR", environ=environ)
    return Path(raw).resolve() if raw else project_root() / ".warp-sync"


def run_margin_seconds(environ: Mapping[str, str] | None = None) -> float:
    """What a flow's run may take past its own budgets (process start, the last writes, the report) before the
    instance ends it: the margin of every maximum runtime (WARP_RUN_MARGIN_SECONDS, default 15)."""
    return get_float("WARP_RUN_MARGIN_SECONDS", 15.0, minimum=1.0, environ=environ)
