"""Run an op against the registry: resolve inputs, call the pure function, commit with lineage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

from datakit.errors import DatakitError
from datakit.registry import Registry
from datakit.schemas import Manifest


@dataclass
class OpOutput:
    """What an op returns: rows in stored columns (ids are recomputed at commit), stats, side files."""

    frame: pl.DataFrame
    stats: dict[str, Any]
    extras: dict[str, pl.DataFrame] = field(default_factory=dict)
    # True when every row is an input row with its content untouched (select, reorder, label):
    # the commit keeps their ids instead of rehashing a million rows; `verify` still rechecks them.
    rows_unchanged: bool = False


def load(reg: Registry, refs: list[str]) -> list[tuple[Manifest, pl.DataFrame]]:
    out = []
    for ref in refs:
        m = reg.resolve(ref)
        out.append((m, reg.load(m)))
    return out


def check_accounting(op: str, stats: dict[str, Any]) -> None:
    """Rows in = kept + removed, always: an op that loses rows silently is a bug."""
    if {"rows_in", "rows_out", "removed"} <= set(stats) and stats["rows_in"] != stats["rows_out"] + stats["removed"]:
        raise AssertionError(f"{op}: rows_in {stats['rows_in']} != rows_out {stats['rows_out']} + removed {stats['removed']}")


def commit(
    reg: Registry, *, name: str, kind: str, inputs: list[Manifest], op: str, params: dict[str, Any], out: OpOutput
) -> tuple[Manifest, bool]:
    """Commit an op's output as a new version of `name`, its parents being the input versions."""
    check_accounting(op, out.stats)
    if out.frame.height == 0 and out.stats.get("rows_in", 0) > 0:
        raise DatakitError(f"{op} would leave {name} empty (all {out.stats['rows_in']} rows removed); check the params")
    return reg.commit_frame(
        name, kind, out.frame, op=op, params=params, parents=[reg.parent_of(m) for m in inputs], stats=out.stats,
        extras=out.extras, trust_ids=out.rows_unchanged,
    )
