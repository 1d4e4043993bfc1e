"""Run an op against the registry: resolve inputs, call the pure function, commit with lineage.

Each op module pairs its pure function (frames in, frames and stats out) with a `run_<op>` that loads the
refs, calls it and commits through `commit_each`; the CLI and notebooks call the `run_<op>`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import polars as pl

from datakit.errors import DatakitError
from datakit.registry.store import Registry, write_part
from datakit.schemas import FileEntry, Manifest

if TYPE_CHECKING:
    from datakit.ops.engine import Engine


@dataclass
class OpOutput:
    """What an op returns: rows in stored columns (ids are recomputed at commit), stats, side files. The rows are
    a frame, or (for inputs larger than memory) `batches`: a callable giving them in order, a batch at a time;
    its stats must give rows_in/rows_out up front and may be completed while the batches are written."""

    frame: pl.DataFrame | None
    stats: dict[str, Any]
    # side files by name: frames, or (batched output) a function called once the batches are written, giving
    # a lazy frame over what they spilled
    extras: dict[str, pl.DataFrame | Callable[[], pl.LazyFrame]] = field(default_factory=dict)
    # True when every row is an input row with its content untouched (select, reorder, label):
    # the commit keeps their ids instead of rehashing a million rows; `verify` still rechecks them.
    rows_unchanged: bool = False
    batches: Callable[[], Iterator[pl.DataFrame]] | None = None


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
    reg: Registry, *, name: str, kind: str, inputs: list[Manifest], op: str, params: dict[str, Any], out: OpOutput,
    engine: Engine | None = None,
) -> tuple[Manifest, bool]:
    """Commit an op's output as a new version of `name`, its parents being the input versions. Batched output
    given an `engine` is encoded and written as parts by the engine's workers (straight into the registry, local
    or a bucket); this process records them in order, so the version is the same either way."""
    check_accounting(op, out.stats)
    rows_out = out.frame.height if out.frame is not None else out.stats.get("rows_out", 1)
    if rows_out == 0 and out.stats.get("rows_in", 0) > 0:
        raise DatakitError(f"{op} would leave {name} empty (all {out.stats['rows_in']} rows removed); check the params")
    parents = [reg.parent_of(m) for m in inputs]
    if out.frame is not None:
        extras = {k: v if isinstance(v, pl.DataFrame) else v().collect() for k, v in out.extras.items()}
        return reg.commit_frame(name, kind, out.frame, op=op, params=params, parents=parents, stats=out.stats,
                                extras=extras, trust_ids=out.rows_unchanged)
    assert out.batches is not None, f"{op}: an output needs a frame or batches"
    with reg.stage(name, kind) as st:
        if engine is None:
            for df in out.batches():
                st.write(df, trust_ids=out.rows_unchanged)
        else:
            write = partial(write_part, root=str(reg.root), prefix=st.prefix, kind=kind, trust_ids=out.rows_unchanged)
            for meta in engine.map_batches(write, _numbered(out.batches())):
                for r in meta.iter_rows(named=True):
                    st.add_written_part(r["rel"], FileEntry(sha256=r["sha256"], bytes=r["bytes"], rows=r["rows"]), r["text"])
        for fname, extra in out.extras.items():
            st.write_extra(fname, extra if isinstance(extra, pl.DataFrame) else extra())
        return st.commit(op=op, params=params, parents=parents, stats=out.stats)


def _numbered(batches: Iterator[pl.DataFrame]) -> Iterator[pl.DataFrame]:
    """The non-empty batches, each with its part number in column `_part`."""
    i = 0
    for df in batches:
        if df.height:
            yield df.with_columns(_part=pl.lit(i, pl.Int32))
            i += 1


def output_names(refs: list[str], names: list[str]) -> list[str]:
    """One output name per input ref: given one each, or one prefix for several (`<prefix>-<input name>`)."""
    if len(names) == len(refs):
        return names
    if len(names) == 1 and len(refs) > 1:
        return [f"{names[0]}-{ref.split('@')[0]}" for ref in refs]
    raise DatakitError(f"give one --name per REF ({len(refs)}), or a single --name used as a prefix")


def commit_each(reg: Registry, inputs: list[Manifest], outputs: list[OpOutput], names: list[str], *, op: str,
                params: dict[str, Any], parents: list[Manifest] | None = None,
                engine: Engine | None = None) -> list[dict[str, Any]]:
    """One version per input; every version's lineage names `parents` (default: all inputs).
    Returns per output: input ref, new ref, created, content hash, stats."""
    results = []
    for m, o, name in zip(inputs, outputs, names, strict=True):
        man, created = commit(reg, name=name, kind=m.kind, inputs=parents or inputs, op=op, params=params, out=o,
                              engine=engine)
        results.append({"input": m.ref, "ref": man.ref, "created": created, "content_hash": man.content_hash,
                        "stats": o.stats})
    return results
