from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from warp_sync_pipeline.resources.parquet_io import ParquetIOManager, purge_expired_files

IO_KEY = "parquet_io_manager"


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(1000)],
            "credit_limit": [i * 10.5 for i in range(1000)],
            "hubspot_company_id": pd.array([str(i) if i % 7 else None for i in range(1000)], dtype="string"),
            "changed_at": pd.date_range("2024-01-01", periods=1000, freq="min", tz="UTC"),
        }
    )


@dg.asset(io_manager_key=IO_KEY, key_prefix=["reconciliation"])
def pulled_rows() -> pd.DataFrame:
    return _frame()


@dg.asset(io_manager_key=IO_KEY, key_prefix=["reconciliation"])
def writeback_summary(pulled_rows: pd.DataFrame) -> dg.MaterializeResult:
    # The way the write-back assets return their summary: a value plus metadata.
    summary = {"rows_seen": len(pulled_rows), "failures": [{"ban": "ZT-000000001", "error": "moved"}], "ok": True}
    return dg.MaterializeResult(value=summary, metadata={"failures": 1})


@dg.asset(io_manager_key=IO_KEY, key_prefix=["reconciliation"])
def report_inputs(pulled_rows: pd.DataFrame, writeback_summary: dict) -> dict:
    # Proves both values come back as they went in, through the IO manager.
    pd.testing.assert_frame_equal(pulled_rows, _frame())
    return {"summary_seen": writeback_summary}


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _stored(root: Path, run_id: str, *asset_path: str) -> Path:
    """Where a run's value of an asset is kept (without its suffix)."""
    return root.joinpath("runs", run_id, "assets", *asset_path)


def test_frames_and_summaries_round_trip_through_materialize(tmp_path: Path) -> None:
    root = tmp_path / "frames"
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [pulled_rows, writeback_summary, report_inputs],
            resources={IO_KEY: ParquetIOManager(base_dir=str(root), retention_days=7)},
            instance=instance,
        )
    assert result.success
    assert result.output_for_node("reconciliation__report_inputs") == {
        "summary_seen": {"rows_seen": 1000, "failures": [{"ban": "ZT-000000001", "error": "moved"}], "ok": True}
    }
    parquet = _stored(root, result.run_id, "reconciliation", "pulled_rows.parquet")
    summary = _stored(root, result.run_id, "reconciliation", "writeback_summary.json")
    assert parquet.is_file() and summary.is_file()
    assert pd.read_parquet(parquet).equals(_frame())

    # Private: every folder 0700, every file 0600, no temp files left behind.
    for folder in (root, root / "runs", root / "runs" / result.run_id, parquet.parent):
        assert _mode(folder) == 0o700, folder
    for path in (parquet, summary):
        assert _mode(path) == 0o600, path
    assert not [p for p in root.rglob(".tmp-*")]

    materialization = result.asset_materializations_for_node("reconciliation__pulled_rows")[0]
    assert materialization.metadata["stored_as"].value == "parquet"
    assert materialization.metadata["stored_rows"].value == 1000


def test_default_folder_is_under_the_instance_storage(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        result = dg.materialize([pulled_rows], resources={IO_KEY: ParquetIOManager()}, instance=instance)
        assert result.success
        root = Path(instance.storage_directory()) / "frames"
    assert _stored(root, result.run_id, "reconciliation", "pulled_rows.parquet").is_file()
    assert _mode(root) == 0o700


def test_a_value_that_changes_type_replaces_its_old_file(tmp_path: Path) -> None:
    calls = {"n": 0}

    @dg.asset(io_manager_key=IO_KEY, name="shape_shifter")
    def shape_shifter() -> object:
        calls["n"] += 1
        return _frame().head(3) if calls["n"] == 1 else {"now": "a dict"}

    @dg.asset(io_manager_key=IO_KEY)
    def reader(shape_shifter: object) -> str:
        return type(shape_shifter).__name__

    io = ParquetIOManager(base_dir=str(tmp_path))
    with dg.instance_for_test() as instance:
        dg.materialize([shape_shifter], resources={IO_KEY: io}, instance=instance)
        dg.materialize([shape_shifter], resources={IO_KEY: io}, instance=instance)
        result = dg.materialize(
            [shape_shifter, reader], selection=[reader], resources={IO_KEY: io}, instance=instance
        )
    # The reader, run alone, reads the latest materialization's value, not the first run's frame.
    assert result.output_for_node("reader") == "dict"


def test_each_run_keeps_its_own_values(tmp_path: Path) -> None:
    """Two runs of the same assets never overwrite each other's frames: a run that is still reading its pull
    cannot be handed another run's."""
    rows = {"n": 0}

    @dg.asset(io_manager_key=IO_KEY)
    def counted() -> pd.DataFrame:
        rows["n"] += 1
        return _frame().head(rows["n"])

    io = ParquetIOManager(base_dir=str(tmp_path))
    with dg.instance_for_test() as instance:
        first = dg.materialize([counted], resources={IO_KEY: io}, instance=instance)
        second = dg.materialize([counted], resources={IO_KEY: io}, instance=instance)
        assert len(io.stored_frame(instance, dg.AssetKey("counted"))) == 2  # the latest materialization's
    assert len(pd.read_parquet(_stored(tmp_path, first.run_id, "counted.parquet"))) == 1
    assert len(pd.read_parquet(_stored(tmp_path, second.run_id, "counted.parquet"))) == 2


def test_reexecution_from_a_failed_step_reads_its_parent_runs_values(tmp_path: Path) -> None:
    """Re-executing from the failed step reuses the parent run's stored frames, although a later run of the
    upstream asset has stored other values meanwhile."""
    _REEXECUTION.update(fail=True, pulls=0)
    job = dg.reconstructable(pull_and_use_job)
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        with dg.execute_job(job, instance=instance) as failed:
            assert not failed.success
        # Another run pulls meanwhile (20 rows): the re-execution must still read its parent's 10.
        dg.materialize([pull], resources={IO_KEY: ParquetIOManager()}, instance=instance)
        _REEXECUTION["fail"] = False
        options = dg.ReexecutionOptions.from_failure(failed.run_id, instance)
        with dg.execute_job(job, instance=instance, reexecution_options=options) as again:
            assert again.success
    assert _stored(tmp_path / "storage" / "frames", again.run_id, "use.json").read_text() == "10"
    assert _REEXECUTION["pulls"] == 2  # the re-execution did not pull again


_REEXECUTION = {"fail": True, "pulls": 0}


@dg.asset(io_manager_key=IO_KEY)
def pull() -> pd.DataFrame:
    _REEXECUTION["pulls"] += 1
    return _frame().head(10 * _REEXECUTION["pulls"])


@dg.asset(io_manager_key=IO_KEY)
def use(pull: pd.DataFrame) -> int:
    if _REEXECUTION["fail"]:
        raise RuntimeError("the write-back failed half-way")
    return len(pull)


def pull_and_use_job() -> dg.JobDefinition:
    defs = dg.Definitions(assets=[pull, use],
                          jobs=[dg.define_asset_job("pull_and_use", executor_def=dg.in_process_executor)],
                          resources={IO_KEY: ParquetIOManager()})
    return defs.resolve_job_def("pull_and_use")


def test_values_that_are_not_json_fail_clearly(tmp_path: Path) -> None:
    @dg.asset(io_manager_key=IO_KEY)
    def not_storable() -> object:
        return object()

    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [not_storable], resources={IO_KEY: ParquetIOManager(base_dir=str(tmp_path))},
            instance=instance, raise_on_error=False,
        )
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "stores DataFrames or JSON-compatible values" in str(failure.event_specific_data.error)


def test_a_missing_upstream_value_names_what_to_do(tmp_path: Path) -> None:
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [pulled_rows, writeback_summary],
            selection=[writeback_summary],
            resources={IO_KEY: ParquetIOManager(base_dir=str(tmp_path))},
            instance=instance,
            raise_on_error=False,
        )
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "not materialized yet, or purged" in str(failure.event_specific_data.error)


def test_purge_removes_old_files_and_empty_folders(tmp_path: Path) -> None:
    root = tmp_path / "frames"
    old = root / "reconciliation" / "old.parquet"
    fresh = root / "reconciliation" / "fresh.parquet"
    old_run = root / "runs" / "abc" / "op" / "result.json"
    for path in (old, fresh, old_run):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    ten_days_ago = time.time() - 10 * 86400
    for path in (old, old_run):
        os.utime(path, (ten_days_ago, ten_days_ago))

    removed = purge_expired_files(root, retention_days=7)
    assert sorted(removed) == sorted([old, old_run])
    assert fresh.exists() and not old.exists()
    assert not (root / "runs").exists()  # emptied folders go too
    assert root.is_dir()
    # Later, everything is past its retention.
    assert purge_expired_files(root, retention_days=7, now=time.time() + 8 * 86400) == [fresh]
    assert purge_expired_files(tmp_path / "nothing-here", retention_days=7) == []


def test_setting_up_a_run_purges_expired_values(tmp_path: Path) -> None:
    stale = tmp_path / "reconciliation" / "stale_plan.parquet"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"x")
    long_ago = time.time() - 3 * 86400
    os.utime(stale, (long_ago, long_ago))
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [pulled_rows], resources={IO_KEY: ParquetIOManager(base_dir=str(tmp_path), retention_days=2)},
            instance=instance,
        )
    assert result.success
    assert not stale.exists()
    assert _stored(tmp_path, result.run_id, "reconciliation", "pulled_rows.parquet").exists()


def test_retention_must_be_positive() -> None:
    with pytest.raises(Exception, match="greater than 0"):
        ParquetIOManager(retention_days=0)
