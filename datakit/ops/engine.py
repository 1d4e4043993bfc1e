"""How an op's batches move: in this process (threads, spilled runs) or as Ray Data tasks on a cluster.

An op is written once, as pure functions of a batch (a polars frame in, a frame out); an engine only decides
where those functions run and how their outputs meet. Two movements cover the heavy ops:
  - `map_batches(fn, frames)`: fn applied to every frame, results in input order;
  - `group_map(fn, frames, parts)`: every frame carries a partition column `_p` in [0, parts); fn is applied
    once per partition to all rows with that `_p` (a shuffle: rows from every frame meet); with `ordered`, one
    output per partition, in partition order (the local engine always works that way).
The local engine does both with a small thread pool and Parquet runs in the op's Spill (bounded memory); the Ray
engine (`ray_engine.py`) with Ray Data's map_batches and groupby. Results are identical: group outputs are
consumed in partition order and every fn is deterministic.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol, TypeVar

import polars as pl

from datakit.errors import DatakitError
from datakit.ops.batches import Fn
from datakit.ops.spill import Spill

T = TypeVar("T")
R = TypeVar("R")
ENGINE_ENV = "DATAKIT_ENGINE"
RAY_ADDRESS_ENV = "DATAKIT_RAY_ADDRESS"
ENGINES = ("local", "ray")
FLUSH_ROWS = 2_000_000  # grouped rows buffered before they are written out as runs (about 50 MB of band keys)
FLUSH_BYTES = 256 << 20  # ... or fewer, when the rows are wide (mix shuffles whole rows)


class Engine(Protocol):
    name: str

    def map_batches(self, fn: Fn, frames: Iterable[pl.DataFrame]) -> Iterator[pl.DataFrame]: ...

    def group_map(self, fn: Fn, frames: Iterable[pl.DataFrame], parts: int,
                  ordered: bool = False) -> Iterator[pl.DataFrame]: ...


class LocalEngine:
    """Threads in this process; at most `2 * workers` batches in flight, grouped rows spilled as runs."""

    name = "local"

    def __init__(self, spill: Spill, workers: int = 2) -> None:
        self.spill, self.workers = spill, workers
        self._groups = 0

    def map_batches(self, fn: Fn, frames: Iterable[pl.DataFrame]) -> Iterator[pl.DataFrame]:
        return ordered_map(fn, frames, self.workers)

    def group_map(self, fn: Fn, frames: Iterable[pl.DataFrame], parts: int,
                  ordered: bool = False) -> Iterator[pl.DataFrame]:
        self._groups += 1
        prefix = f"group{self._groups:03d}/p"
        # each frame is split by partition as it arrives and a flush writes (and frees) one partition at a time, so
        # memory holds the buffered rows once; concatenating then partitioning the whole buffer held them 3 times
        pending: dict[int, list[pl.DataFrame]] = {}
        buffered, size, flushes = 0, 0, 0

        def flush() -> None:
            nonlocal buffered, size, flushes
            for p in sorted(pending):
                chunks = pending.pop(p)
                self.spill.put(f"{prefix}{p:05d}-{flushes:05d}", pl.concat(chunks) if len(chunks) > 1 else chunks[0])
                del chunks
            buffered, size, flushes = 0, 0, flushes + 1

        for df in frames:
            buffered, size = buffered + df.height, size + df.estimated_size()
            for (p,), chunk in df.partition_by("_p", as_dict=True).items():
                pending.setdefault(int(p), []).append(chunk)  # type: ignore[arg-type]
            del df
            if buffered >= FLUSH_ROWS or size >= FLUSH_BYTES:
                flush()
        flush()

        def one(p: int) -> pl.DataFrame | None:
            names = self.spill.names(f"{prefix}{p:05d}-")
            return fn(pl.concat([self.spill.get(n) for n in names])) if names else None

        for out in ordered_map(one, range(parts), self.workers):
            if out is not None:
                yield out


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """fn over items on `workers` threads, results in input order, at most workers + 1 items in flight (so an
    iterator of batches is never read whole into memory, as Executor.map would)."""
    with ThreadPoolExecutor(workers) as pool:
        pending: deque[Future[R]] = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def engine_name(chosen: str | None) -> str:
    """--engine, else DATAKIT_ENGINE, else local."""
    name = (chosen or os.environ.get(ENGINE_ENV) or "local").strip().lower()
    if name not in ENGINES:
        raise DatakitError(f"engine {name!r}: use one of {', '.join(ENGINES)} (--engine or {ENGINE_ENV})")
    return name


def make_engine(name: str, spill: Spill, *, ray_address: str | None = None, workers: int = 2) -> Engine:
    if name == "ray":
        from datakit.ops.ray_engine import RayEngine  # ray is an extra (datakit[dist]), imported only when asked

        return RayEngine(address=ray_address or os.environ.get(RAY_ADDRESS_ENV))
    return LocalEngine(spill, workers)
