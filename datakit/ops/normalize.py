"""Normalize every text field: NFC, whitespace, invisible characters (see `datakit.text.normalize`)."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

import polars as pl

from datakit.ops import runner
from datakit.ops.batches import registry_source
from datakit.ops.engine import engine_name, make_engine
from datakit.ops.runner import OpOutput
from datakit.ops.spill import spill_area
from datakit.registry.store import Registry
from datakit.schemas import Manifest
from datakit.text import normalize_expr

MESSAGE_LISTS = {"sft": ["messages"], "identity": ["messages"], "magpie": ["messages"],
                 "preference": ["prompt", "chosen", "rejected"], "kto": ["prompt", "completion"],
                 "probes": ["messages"]}
TEXTS = {"cpt": ["text"], "probes": ["prompt", "expect", "text"]}


def _messages(col: str) -> pl.Expr:
    el = pl.element()
    return pl.col(col).list.eval(el.struct.with_fields(normalize_expr(el.struct.field("content")).alias("content")))


def normalize(inp: tuple[Manifest, pl.DataFrame]) -> OpOutput:
    m, df = inp
    new = normalize_batch(df, kind=m.kind)
    changed = int(new["_changed"].sum())
    stats = {"rows_in": df.height, "rows_out": new.height, "removed": 0, "rows_changed": changed}
    return OpOutput(new.drop("_changed"), stats)


def normalize_batch(df: pl.DataFrame, *, kind: str) -> pl.DataFrame:
    """One batch normalized, with `_changed` marking the rows that differ: the step an engine runs."""
    exprs = [_messages(c) for c in MESSAGE_LISTS.get(kind, [])] + [normalize_expr(pl.col(c)).alias(c) for c in TEXTS.get(kind, [])]
    new = df.with_columns(exprs)
    cols = MESSAGE_LISTS.get(kind, []) + TEXTS.get(kind, [])
    changed = pl.any_horizontal([pl.col(c).ne_missing(df[c]) for c in cols]) if cols else pl.lit(False)
    return new.with_columns(new.select(changed.alias("_changed")).to_series())


def run_normalize(reg: Registry, ref: str, names: list[str], *, engine: str | None = None,
                  ray_address: str | None = None) -> list[dict[str, Any]]:
    """Normalize a version a batch at a time (memory bounded by the batch, whatever the version's size);
    `engine` (local or ray) runs the batches and writes the new version's parts."""
    engine = engine_name(engine)
    m = reg.resolve(ref)
    reg.check(m)  # an op never commits on top of a parent that fails the check
    source = registry_source(reg, m)
    stats = {"rows_in": m.rows, "rows_out": m.rows, "removed": 0, "rows_changed": 0}
    with spill_area(reg.local_dir(".staging")) as spill:
        eng = make_engine(engine, spill, ray_address=ray_address)

        def batches() -> Iterator[pl.DataFrame]:
            for new in eng.map_batches(partial(normalize_batch, kind=m.kind), source.batches()):
                stats["rows_changed"] += int(new["_changed"].sum())  # complete when the last batch is written
                yield new.drop("_changed")

        return runner.commit_each(reg, [m], [OpOutput(None, stats, batches=batches)], runner.output_names([ref], names),
                                  op="normalize", params={"input": ref}, engine=eng)
