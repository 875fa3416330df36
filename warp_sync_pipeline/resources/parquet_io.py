"""`ParquetIOManager`: asset values on local disk, private, and deleted after a retention period.

The reconciliation frames hold customer data, so unlike Dagster's default pickles (kept forever
under $DAGSTER_HOME/storage) they go to a private folder (0700, files 0600) and files older than
`retention_days` are purged when a run sets the IO manager up (and by `purge_expired_files`).

- pandas DataFrames are written as Parquet (`<asset key path>.parquet`);
- the typed results of `core.reconcile.results` (write-back summaries, the report) as their `to_json()`, read
  back as the same type (`from_stored`), so a downstream asset's annotated input type-checks;
- anything else (dicts, lists, numbers) as JSON (`.json`): Decimal and times come back as strings, NaN as null.
Every value is kept by run: asset outputs at `<root>/runs/<run id>/assets/<asset key path>`, op outputs at
`<root>/runs/<run id>/<step>/<output>`. Two runs of the same assets never overwrite each other's frames mid-run,
and a re-execution from a failed step reads the values its parent run stored (Dagster names the run that made
each input). An asset input that was not made in this run's lineage (materializing one asset alone) is read from
the run of the asset's latest materialization. Writes are atomic (temp file + rename), so a reader never sees half
a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field, PrivateAttr

from warp_sync_pipeline.core.reconcile.results import STORED_TYPES, from_stored
from warp_sync_pipeline.core.reconciliation_runs import dumps_json
from warp_sync_pipeline.core.settings import DEFAULTS, load_settings

STORED_RESULTS = tuple(STORED_TYPES.values())

PARQUET_SUFFIX = ".parquet"
JSON_SUFFIX = ".json"
DEFAULT_RETENTION_DAYS = DEFAULTS.frame_retention_days
DIR_MODE = 0o700
FILE_MODE = 0o600
_UNSAFE_PATH_CHARS = re.compile(r"[^A-Za-z0-9_.=-]")
# The run id Dagster's build_output_context gives a context made without one (it builds such a context for an input
# read from an asset that this run did not make).
_NO_RUN_PLACEHOLDER = "__EPHEMERAL_RUN_ID"


def default_frames_dir(storage_directory: str | os.PathLike[str] | None = None) -> Path:
    """$DAGSTER_HOME/storage/frames (the instance's storage directory when given)."""
    if storage_directory is not None:
        return Path(storage_directory) / "frames"
    home = load_settings().dagster_home
    if not home:
        raise RuntimeError("DAGSTER_HOME is not set and no base_dir was given for the Parquet IO manager")
    return Path(home) / "storage" / "frames"


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) as 0700, and tighten it if it already existed."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    path.chmod(DIR_MODE)
    return path


def purge_expired_files(root: Path, retention_days: float, *, now: float | None = None) -> list[Path]:
    """Delete files under `root` last written more than `retention_days` ago; return them.

    Folders left empty are removed too (never `root` itself). Safe to run while runs write:
    a file vanishing under us is simply skipped.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    cutoff = (time.time() if now is None else now) - retention_days * 86400
    removed: list[Path] = []
    for dirpath, _dirnames, filenames in os.walk(root, topdown=False):
        folder = Path(dirpath)
        for name in filenames:
            path = folder / name
            try:
                if path.lstat().st_mtime < cutoff:
                    path.unlink()
                    removed.append(path)
            except FileNotFoundError:
                continue
        if folder != root:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only succeeds when empty
    return removed


def _ensure_private_tree(root: Path, folder: Path) -> None:
    """Create each folder between `root` and `folder` as 0700 (mkdir -p would use the umask)."""
    current = root
    for part in folder.relative_to(root).parts:
        current = current / part
        if not current.is_dir():
            ensure_private_dir(current)


def _safe_parts(parts: Sequence[str]) -> list[str]:
    # Asset key parts are already restricted by Dagster; run ids, step keys and partition keys may
    # hold other characters, which must never climb out of the root (`..`, `/`).
    safe = [_UNSAFE_PATH_CHARS.sub("_", p) for p in parts]
    return [p if p not in {"", ".", ".."} else f"_{p}_" for p in safe]


class ParquetIOManager(dg.ConfigurableIOManager):
    """Stores DataFrames as Parquet and other values as JSON in a private folder with retention."""

    base_dir: str | None = Field(
        default=None, description="Folder for stored values; default $DAGSTER_HOME/storage/frames."
    )
    retention_days: float = Field(
        default=DEFAULT_RETENTION_DAYS, gt=0, description="Files older than this many days are deleted."
    )

    _root: Path | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        storage = context.instance.storage_directory() if context.instance is not None else None
        self._root = ensure_private_dir(Path(self.base_dir) if self.base_dir else default_frames_dir(storage))
        removed = purge_expired_files(self._root, self.retention_days)
        if removed and context.log is not None:
            context.log.info(f"Purged {len(removed)} stored value(s) older than {self.retention_days:g} days")

    @property
    def root(self) -> Path:
        if self._root is None:  # used outside a run
            self._root = ensure_private_dir(Path(self.base_dir) if self.base_dir else default_frames_dir())
        return self._root

    def stored_frame(self, instance: dg.DagsterInstance, asset_key: dg.AssetKey) -> pd.DataFrame | None:
        """The frame of the asset's latest materialization (its attrs included), or None when there is none (never
        materialized, or purged): for an op that may reuse an asset's value rather than compute it again."""
        event = instance.get_latest_materialization_event(asset_key)
        if event is None:
            return None
        stem = self._asset_stem(event.run_id, asset_key.path)
        parquet = stem.with_name(stem.name + PARQUET_SUFFIX)
        return pd.read_parquet(parquet, engine="pyarrow") if parquet.exists() else None

    def purge(self, *, now: float | None = None) -> list[Path]:
        return purge_expired_files(self.root, self.retention_days, now=now)

    # --- paths ---------------------------------------------------------------------------------
    def _asset_stem(self, run_id: str, asset_path: Sequence[str]) -> Path:
        return self.root.joinpath(*_safe_parts(["runs", run_id, "assets", *asset_path]))

    def _stem(self, context: dg.OutputContext | dg.InputContext) -> Path:
        if not context.has_asset_key:
            # Dagster's identifier is [run id, step, output], the run that made it (a parent run's on re-execution).
            return self.root.joinpath(*_safe_parts(["runs", *context.get_identifier()]))
        asset_path = list(context.get_asset_identifier())
        if isinstance(context, dg.OutputContext):
            return self._asset_stem(context.run_id, asset_path)
        return self._asset_stem(_input_run_id(context), asset_path)

    # --- IO ------------------------------------------------------------------------------------
    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        stem = self._stem(context)
        _ensure_private_tree(self.root, stem.parent)
        if isinstance(obj, pd.DataFrame):
            path, stale = stem.with_name(stem.name + PARQUET_SUFFIX), stem.with_name(stem.name + JSON_SUFFIX)
            _atomic_write(path, lambda handle: obj.to_parquet(handle, engine="pyarrow"))
            context.add_output_metadata({"stored_as": "parquet", "stored_rows": len(obj)})
        else:
            try:
                payload = dumps_json(obj.to_json() if isinstance(obj, STORED_RESULTS) else obj).encode("utf-8")
            except (TypeError, ValueError) as exc:
                raise TypeError(
                    f"{'/'.join(context.get_asset_identifier() if context.has_asset_key else context.get_identifier())}:"
                    f" the Parquet IO manager stores DataFrames or JSON-compatible values ({exc})"
                ) from None
            path, stale = stem.with_name(stem.name + JSON_SUFFIX), stem.with_name(stem.name + PARQUET_SUFFIX)
            _atomic_write(path, lambda handle: handle.write(payload))
            context.add_output_metadata({"stored_as": "json"})
        # A value that changed type must not leave its old file to be read back.
        stale.unlink(missing_ok=True)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> Any:
        stem = self._stem(context)
        parquet, as_json = stem.with_name(stem.name + PARQUET_SUFFIX), stem.with_name(stem.name + JSON_SUFFIX)
        if parquet.exists():
            return pd.read_parquet(parquet, engine="pyarrow")
        if as_json.exists():
            return from_stored(json.loads(as_json.read_text(encoding="utf-8")))
        raise FileNotFoundError(
            f"no stored value for {stem.relative_to(self.root)} under {self.root}: not materialized yet, or purged"
            f" after {self.retention_days:g} days; materialize it again"
        )


def _input_run_id(context: dg.InputContext) -> str:
    """The run whose stored value an asset input reads: the run that made it in this run's lineage (this run, or
    the parent run of a re-execution), else the run of the asset's latest materialization."""
    upstream = context.upstream_output
    try:
        run_id = upstream.run_id if upstream is not None else None
    except dg.DagsterInvariantViolationError:
        run_id = None
    # An asset loaded from storage gets an artificial upstream context whose run id is Dagster's placeholder.
    if run_id and run_id != _NO_RUN_PLACEHOLDER:
        return run_id
    event = context.instance.get_latest_materialization_event(context.asset_key)
    if event is None:
        raise FileNotFoundError(f"no stored value for {context.asset_key.to_user_string()}: not materialized yet, "
                                "or purged; materialize it again")
    return event.run_id


def _atomic_write(path: Path, write: Any) -> None:
    # mkstemp creates the file 0600 in the target folder, so the rename is atomic and private.
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
