"""Normalize every text field: NFC, whitespace, invisible characters (see `datakit.text.normalize`)."""

from __future__ import annotations

from typing import Any

import polars as pl

from datakit.ops import runner
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
    inp = runner.load(reg, [ref])[0]
    return runner.commit_each(reg, [inp[0]], [normalize(inp)], runner.output_names([ref], names), op="normalize",
                              params={"input": ref})
