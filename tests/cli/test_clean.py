"""`warp-sync clean` (`make clean`): the private PostgreSQL's data goes wherever it lives, then the state folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

WARP_SYNC = str(Path(sys.executable).parent / "warp-sync")


def test_clean_removes_the_private_cluster_wherever_it_lives_and_the_state(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("WARP_", "DAGSTER_"))},
           "WARP_STATE_DIR": str(state)}
    started = subprocess.run([WARP_SYNC, "db", "start"], env=env, capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stdout + started.stderr
    data = Path(json.loads((state / "postgres.json").read_text())["data_dir"])
    assert (data / "PG_VERSION").exists()
    if os.geteuid() == 0:  # initdb refuses root: the cluster runs as `postgres`, outside the checkout
        assert not data.is_relative_to(state)
    (state / "mail").mkdir()
    (state / "mail" / "20261205T000000-0001.eml").write_text("Subject: x\n\nx\n")

    cleaned = subprocess.run([WARP_SYNC, "clean"], env=env, capture_output=True, text=True, timeout=120)
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    assert not data.parent.exists()
    assert not state.exists()
    assert "removed the private PostgreSQL" in cleaned.stdout


def test_clean_keeps_what_it_did_not_make_in_a_chosen_state_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "mail").mkdir()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("WARP_", "DAGSTER_"))},
           "WARP_STATE_DIR": str(tmp_path)}
    cleaned = subprocess.run([WARP_SYNC, "clean"], env=env, capture_output=True, text=True, timeout=120)
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
