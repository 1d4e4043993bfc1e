"""An op's input read a batch of rows at a time: a registry version streamed from its parts, or a frame.

Ops that must scale past memory take `Source`s instead of whole frames; a source can be read any number of times
(an op reads twice: once to find what to keep, once to write it), each time in the same order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl

from datakit.registry.store import Registry
from datakit.schemas import Manifest

Fn = Callable[[pl.DataFrame], pl.DataFrame]  # a per-batch step of an op, as an engine runs it
Progress = Callable[[str, int, int], None]  # (step, done, total): what a long op reports, see cli.common
BATCH_ROWS = 50_000  # rows per batch: a few tens of MB of text, small next to the memory bound
BATCH_ROWS_ENV = "DATAKIT_BATCH_ROWS"


def no_progress(step: str, done: int, total: int) -> None:
    return None


def batch_rows() -> int:
    """Rows per batch: BATCH_ROWS, or DATAKIT_BATCH_ROWS (tests use tiny batches to cross every boundary)."""
    return int(os.environ.get(BATCH_ROWS_ENV) or BATCH_ROWS)


@dataclass
class Source:
    """One input: its manifest and a way to read its rows in order, `rows` at a time (only `columns`, if given:
    a planning pass over ids reads a fraction of the bytes)."""

    manifest: Manifest
    height: int
    read: Callable[[int, list[str] | None], Iterator[pl.DataFrame]]

    def batches(self, rows: int | None = None, columns: list[str] | None = None) -> Iterator[pl.DataFrame]:
        return self.read(rows or batch_rows(), columns)


def frame_source(m: Manifest, df: pl.DataFrame) -> Source:
    def read(rows: int, columns: list[str] | None) -> Iterator[pl.DataFrame]:
        picked = df.select(columns) if columns else df
        for a in range(0, df.height, rows):
            yield picked.slice(a, rows)

    return Source(m, df.height, read)


def registry_source(reg: Registry, m: Manifest) -> Source:
    """A version's rows streamed from its parts, a slice of a part at a time (parts are written in row groups of
    ROW_GROUP_ROWS, so a slice reads only what it returns); the parts are checked against the manifest once
    per read, as `Registry.scan` does. (polars' collect_batches would read ahead without bound.)"""

    def read(rows: int, columns: list[str] | None) -> Iterator[pl.DataFrame]:
        reg.check(m)
        for rel in m.data_files:
            part, height = reg.scan_part(m, rel), m.files[rel].rows
            part = part.select(columns) if columns else part
            if height is None:  # a manifest that does not record the part's rows: count them first
                height = part.select(pl.len()).collect().item()
            for a in range(0, height, rows):
                yield part.slice(a, rows).collect()

    return Source(m, m.rows, read)


def batches_without(source: Source, drop: np.ndarray) -> Iterator[pl.DataFrame]:
    """The source's rows in order, minus those at the indices in `drop`."""
    mask = np.ones(source.height, dtype=bool)
    mask[drop] = False
    offset = 0
    for df in source.batches():
        keep = mask[offset : offset + df.height]
        offset += df.height
        yield df.filter(pl.Series(keep)) if not keep.all() else df
