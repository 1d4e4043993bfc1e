"""A mixture's rows in training order, a batch at a time: the external shuffle behind `datakit mix`.

The plan (`mix.py`) decides, for every output position, which component row goes there and which copy it is.
Gathering those rows from whole components in memory would bound a mixture by RAM, so the rows move instead:
every component is read once, in order; each picked row is tagged with its output position and its output
batch (`_p` = position // batch rows); the engine's `group_map` brings each output batch's rows together
(spilled runs on the local engine, a shuffle on Ray) and orders them by position. What is held whole is the
plan: a few integers per output row. `mix_sources.parquet` is written alongside, a run per output batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl

from datakit.errors import DatakitError
from datakit.ops.batches import Progress, Source, batch_rows, no_progress
from datakit.ops.engine import Engine
from datakit.ops.spill import Spill
from datakit.schemas import FRAME_SCHEMAS, stored_schema

SIDE_RUNS = "mix-sources/b"  # spill names of the side file's runs, one per output batch
SIDE_COLUMNS = {"component": pl.String, "source_id": pl.String, "source_index": pl.Int64, "repeat": pl.Int32,
                "dropped_fields": pl.String}


@dataclass
class Picks:
    """One component's picks, sorted by the source row they copy (the order the component is read in)."""

    source_index: np.ndarray  # row of the component version
    position: np.ndarray      # where it goes in the output
    repeat: np.ndarray        # 0 for a row's first copy, 1 for its second, ...


def training_order(picks: list[tuple[np.ndarray, np.ndarray]], seed_rng: np.random.Generator) -> list[Picks]:
    """Shuffle every component's picks (source rows, repeat numbers) together into one seeded training order;
    returns per component where each of its picks lands, sorted by source row."""
    sizes = [len(rows) for rows, _ in picks]
    perm = seed_rng.permutation(sum(sizes))  # output position j holds pick perm[j]
    position = np.empty(len(perm), np.int64)
    position[perm] = np.arange(len(perm))
    out, start = [], 0
    for (rows, repeat), n in zip(picks, sizes):
        by_row = np.argsort(rows, kind="stable")
        out.append(Picks(rows[by_row], position[start : start + n][by_row], repeat[by_row]))
        start += n
    return out


def dropped_fields(kind: str, df: pl.DataFrame, out_kind: str) -> pl.Series:
    """Kind-specific fields (identity intent/lang, magpie scores) the output kind has no column for, as JSON."""
    dropped = [c for c in FRAME_SCHEMAS[kind] if c not in FRAME_SCHEMAS[out_kind]]
    if not dropped:
        return pl.Series("dropped_fields", [None] * df.height, dtype=pl.String)
    return df.select(pl.struct(dropped).struct.json_encode().alias("dropped_fields")).to_series()


def _tagged(i: int, source: Source, picks: Picks, out_kind: str, out_rows: int) -> Iterator[pl.DataFrame]:
    """The picked rows of one component in read order, each with its output position, batch and provenance."""
    cols, offset = list(stored_schema(out_kind)), 0
    for df in source.batches():
        lo, hi = np.searchsorted(picks.source_index, [offset, offset + df.height])
        if hi > lo:
            rows = df[pl.Series(picks.source_index[lo:hi] - offset)]
            pos = picks.position[lo:hi]
            yield rows.select(cols).with_columns(
                _o=pl.Series(pos), _p=pl.Series(pos // out_rows), _c=pl.lit(i, pl.Int32),
                _si=pl.Series(picks.source_index[lo:hi]), _r=pl.Series(picks.repeat[lo:hi].astype(np.int32)),
                _dropped=dropped_fields(source.manifest.kind, rows, out_kind))
        offset += df.height


def _by_position(df: pl.DataFrame) -> pl.DataFrame:
    """One output batch's rows, gathered from every component, in output order (a group_map step)."""
    return df.sort("_o")


class MixRows:
    """The output rows of a planned mixture (`batches`), and afterwards its side file (`side_file`)."""

    def __init__(self, sources: list[Source], picks: list[Picks], out_kind: str, engine: Engine, spill: Spill,
                 progress: Progress = no_progress) -> None:
        self.sources, self.picks, self.out_kind = sources, picks, out_kind
        self.engine, self.spill, self.progress = engine, spill, progress
        self.total = sum(len(p.position) for p in picks)
        self.out_rows = batch_rows()
        self.parts = -(-self.total // self.out_rows)

    def _all_tagged(self) -> Iterator[pl.DataFrame]:
        for i, (s, p) in enumerate(zip(self.sources, self.picks)):
            if len(p.position):
                yield from _tagged(i, s, p, self.out_kind, self.out_rows)

    def batches(self) -> Iterator[pl.DataFrame]:
        """Output rows (stored columns) a batch at a time, in training order; puts the side file's runs."""
        refs = dict(enumerate(s.manifest.ref for s in self.sources))
        cols = list(stored_schema(self.out_kind))
        expected = 0
        for grouped in self.engine.group_map(_by_position, self._all_tagged(), self.parts, ordered=True):
            for batch in grouped.partition_by("_p", maintain_order=True):
                p = int(batch["_p"][0])
                if p != expected or batch.height != min(self.out_rows, self.total - p * self.out_rows):
                    raise DatakitError(f"mix: output batch {p} arrived where batch {expected} was due, or short "
                                       f"({batch.height} rows); the {self.engine.name} engine broke partition order")
                self.spill.put(f"{SIDE_RUNS}{p:06d}", batch.select(
                    component=pl.col("_c").replace_strict(refs, return_dtype=pl.String), source_id=pl.col("id"),
                    source_index=pl.col("_si"), repeat=pl.col("_r"), dropped_fields=pl.col("_dropped")))
                expected += 1
                self.progress("writing", expected, self.parts)
                yield batch.select(cols)
        if expected != self.parts:
            raise DatakitError(f"mix: {expected} of {self.parts} output batches arrived from the {self.engine.name} engine")

    def side_file(self) -> pl.LazyFrame:
        """`mix_sources.parquet` in output order: component, source row and copy of every output row."""
        names = self.spill.names(SIDE_RUNS)
        if not names:
            return pl.LazyFrame(schema=SIDE_COLUMNS)
        if self.spill.folder is None:
            return pl.concat([self.spill.get(n) for n in names]).lazy()
        return pl.scan_parquet([self.spill.folder / f"{n}.parquet" for n in names])
