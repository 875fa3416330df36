from __future__ import annotations

import os
import subprocess
from pathlib import Path

import dagster as dg

from tests import REPO
from warp_sync_pipeline.definitions import defs


def test_the_dagster_definitions_load() -> None:
    dg.Definitions.validate_loadable(defs())
    assert "db" in defs().resources


def test_a_bare_dg_check_defs_works_in_a_fresh_shell() -> None:
    """No DAGSTER_HOME and none of warp-sync's variables, as in a fresh clone: Dagster then reads a dagster.yaml
    from the current folder, so the instance template must not be there."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WARP_", "DAGSTER_", "HUBSPOT_", "SMTP_"))}
    assert not (REPO / "dagster.yaml").exists()
    done = subprocess.run(
        [str(Path(os.sys.executable).parent / "dg"), "check", "defs"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_core_does_not_import_dagster_or_flask() -> None:
    code = (
        "import sys, pkgutil, importlib, warp_sync_pipeline.core as core\n"
        "for m in pkgutil.walk_packages(core.__path__, 'warp_sync_pipeline.core.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = [n for n in ('dagster', 'flask') if n in sys.modules]\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([os.sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
