"""Normalize every text field: NFC, whitespace, invisible characters (see `datakit.text.normalize`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import polars as pl

from datakit.ops import runner
from datakit.ops.batches import registry_source
from datakit.ops.runner import OpOutput
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
    exprs = [_messages(c) for c in MESSAGE_LISTS.get(m.kind, [])] + [normalize_expr(pl.col(c)).alias(c) for c in TEXTS.get(m.kind, [])]
    new = df.with_columns(exprs)
    cols = MESSAGE_LISTS.get(m.kind, []) + TEXTS.get(m.kind, [])
    changed = new.select(pl.any_horizontal([pl.col(c).ne_missing(df[c]) for c in cols])).to_series().sum() if cols else 0
    stats = {"rows_in": df.height, "rows_out": new.height, "removed": 0, "rows_changed": int(changed)}
    return OpOutput(new, stats)


def run_normalize(reg: Registry, ref: str, names: list[str]) -> list[dict[str, Any]]:
    """Normalize a version a batch at a time (memory bounded by the batch, whatever the version's size)."""
    m = reg.resolve(ref)
    reg.check(m)  # an op never commits on top of a parent that fails the check
    source = registry_source(reg, m)
    stats = {"rows_in": m.rows, "rows_out": m.rows, "removed": 0, "rows_changed": 0}

    def batches() -> Iterator[pl.DataFrame]:
        for df in source.batches():
            o = normalize((m, df))
            stats["rows_changed"] += o.stats["rows_changed"]  # complete when the last batch is written
            yield o.frame  # type: ignore[misc]

    return runner.commit_each(reg, [m], [OpOutput(None, stats, batches=batches)], runner.output_names([ref], names),
                              op="normalize", params={"input": ref})
