"""The Ray engine: an op's per-batch functions run as Ray Data tasks on a local or remote Ray cluster.

Batches travel through Ray's object store (which spills to its own disk when full), so the driver holds only
references; `map_batches` is Ray Data's map_batches with order preserved, `group_map` its groupby + map_groups
(a hash shuffle across the cluster). The functions are the op's own (`dup_find.*_of_batch`), pickled to the
workers, which need the same datakit installed (a cluster built from the same image, or a runtime_env).
Without an address a local cluster is started once per process and reused.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterable, Iterator

import polars as pl
import pyarrow as pa

from datakit.errors import DatakitError
from datakit.ops.batches import Fn


def _on_arrow(fn: Fn) -> Callable[[pa.Table], pa.Table]:
    """A frame function as Ray Data calls it: an Arrow table in, an Arrow table out (a named function: Ray
    Data names its tasks after it)."""

    def on_arrow(table: pa.Table) -> pa.Table:
        return fn(pl.from_arrow(table)).to_arrow()  # type: ignore[arg-type]

    return on_arrow


def connect(address: str | None) -> None:
    """Join the cluster at `address` ("auto" for the one `ray start` runs here), or start a local one."""
    try:
        import ray
    except ImportError as e:
        raise DatakitError("--engine ray needs Ray: pip install 'datakit[dist]'") from e
    _quiet()
    if ray.is_initialized():
        return
    if address and address != "auto":
        _reachable(address)
    try:
        if address:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        else:
            ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise DatakitError(f"cannot start or join {where}: {e}; check --ray-address (or DATAKIT_RAY_ADDRESS) and "
                           "that `ray status` works there") from e


def _quiet() -> None:
    """Ray Data logs every execution plan at INFO (it sets up its loggers on import); datakit prints its own
    progress, so only Ray's errors get through."""
    import ray.data  # noqa: F401 - its logging setup must run before the levels are set

    for name in ["ray", *[n for n in logging.root.manager.loggerDict if n.startswith("ray.")]]:
        logging.getLogger(name).setLevel(logging.ERROR)


def _reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, not minutes, when nothing listens at host:port (Ray itself retries for a long time)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise DatakitError(f"--ray-address {address}: use host:port (the head's GCS port, e.g. 10.0.0.5:6379), "
                           "ray://host:10001 for a Ray client server, or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise DatakitError(f"cannot reach the Ray cluster at {address} ({e.strerror or e}); check --ray-address "
                           "(or DATAKIT_RAY_ADDRESS) and that the head node is running (`ray status` there)") from e


class RayEngine:
    name = "ray"

    def __init__(self, address: str | None = None) -> None:
        connect(address)
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # outputs in input order: results equal the local engine's
        ctx.enable_progress_bars = False  # datakit prints its own progress

    def _dataset(self, frames: Iterable[pl.DataFrame]):  # type: ignore[no-untyped-def]
        import ray
        import ray.data

        refs = [ray.put(df.to_arrow()) for df in frames if df.height]
        return ray.data.from_arrow_refs(refs) if refs else None

    @staticmethod
    def _frames(ds) -> Iterator[pl.DataFrame]:  # type: ignore[no-untyped-def]
        for table in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            yield pl.from_arrow(table)  # type: ignore[misc]

    def map_batches(self, fn: Fn, frames: Iterable[pl.DataFrame]) -> Iterator[pl.DataFrame]:
        ds = self._dataset(frames)
        if ds is None:
            return iter(())
        return self._frames(ds.map_batches(_on_arrow(fn), batch_format="pyarrow", batch_size=None))

    def group_map(self, fn: Fn, frames: Iterable[pl.DataFrame], parts: int,
                  ordered: bool = False) -> Iterator[pl.DataFrame]:
        ds = self._dataset(frames)
        if ds is None:
            return iter(())
        grouped = ds.groupby("_p", num_partitions=max(1, min(parts, 64)))  # a hash shuffle: groups come unordered
        if not ordered:
            return self._frames(grouped.map_groups(_on_arrow(fn), batch_format="pyarrow"))
        # a second (range) shuffle puts the outputs in partition order; the driver stitches blocks into groups
        tagged = grouped.map_groups(_on_arrow(_tag_rows(fn)), batch_format="pyarrow").sort(["_gp", "_gr"])
        return _stitched(self._frames(tagged))


def _tag_rows(fn: Fn) -> Fn:
    """fn's output with its partition (`_gp`) and row (`_gr`), so a sort restores the order a group_map lost."""

    def tag_rows(df: pl.DataFrame) -> pl.DataFrame:
        return fn(df).with_columns(_gp=pl.lit(int(df["_p"][0]), pl.Int64), _gr=pl.int_range(pl.len(), dtype=pl.Int64))

    return tag_rows


def _stitched(blocks: Iterator[pl.DataFrame]) -> Iterator[pl.DataFrame]:
    """Sorted blocks (a partition may span several) regrouped: one frame per partition, in order."""
    pending: list[pl.DataFrame] = []
    for block in blocks:
        for part in block.partition_by("_gp", maintain_order=True):
            if pending and pending[0]["_gp"][0] != part["_gp"][0]:
                yield pl.concat(pending).drop("_gp", "_gr")
                pending = []
            pending.append(part)
    if pending:
        yield pl.concat(pending).drop("_gp", "_gr")
