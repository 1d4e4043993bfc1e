"""Exact and near-duplicate removal across one or several datasets.

Rows are compared as a reader sees them (`shingling.py`: NFKC, lower case, one quote and dash, whitespace
collapsed, optionally without repeated boilerplate). Exact: rows whose normalized text is equal. Near: MinHash
LSH candidates whose exact shingle Jaccard reaches the threshold, clustered transitively. In every cluster one row
is kept (identity rows first, then the keep policy) and each removed row is reported with the
row it duplicates and their similarity. Rows in = kept + removed, per input. Clusters are found in bounded
memory (`dup_find.py`); registry inputs are read and written a batch at a time.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

import numpy as np
import polars as pl

from datakit.errors import DatakitError
from datakit.ops import runner
from datakit.ops.batches import Progress, Source, batches_without, frame_source, no_progress, registry_source
from datakit.ops.dup_find import DedupParams, Found, choose_shingles_of, find_duplicates
from datakit.ops.engine import engine_name, make_engine
from datakit.ops.runner import OpOutput
from datakit.ops.shingling import ShingleSpec
from datakit.ops.spill import spill_area
from datakit.registry.store import Registry
from datakit.schemas import Manifest

Keep = Literal["first", "longest", "score"]
REPORT_SCHEMA = {
    "removed_dataset": pl.String, "removed_index": pl.Int64, "removed_id": pl.String,
    "kept_dataset": pl.String, "kept_index": pl.Int64, "kept_id": pl.String,
    "similarity": pl.Float64, "method": pl.String,
}


def choose_shingles(text: pl.Series, shingle: str, ngram: int | None) -> ShingleSpec:
    """The shingle `auto` picks for these texts (`dup_find.choose_shingles_of`)."""
    words = float(text.str.count_matches(r"\S+").median() or 0) if text.len() else 0.0
    cjk = float(text.str.contains(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]").mean() or 0) if text.len() else 0.0
    return choose_shingles_of(words, cjk, text.len(), shingle, ngram)


def _report(found: Found, refs: list[str]) -> pl.DataFrame:
    """Every removed row with the row it duplicates: dataset, index and id of each, similarity, method."""
    pairs = found.pairs
    removed, kept = pairs["removed"].to_numpy(), pairs["kept"].to_numpy()
    ids = found.runs.gather(np.concatenate([removed, kept]), "_id")
    names = np.array(refs, dtype=object)
    return pl.DataFrame({
        "removed_dataset": pl.Series(names[found.src[removed]], dtype=pl.String),
        "removed_index": found.idx[removed], "removed_id": ids[: len(removed)],
        "kept_dataset": pl.Series(names[found.src[kept]], dtype=pl.String),
        "kept_index": found.idx[kept], "kept_id": ids[len(removed):],
        "similarity": pairs["similarity"], "method": pairs["method"], "_src": found.src[removed],
    }).sort(["_src", "removed_index"])


def _outputs(sources: list[Source], found: Found, p: DedupParams) -> list[tuple[dict[str, Any], pl.DataFrame, np.ndarray]]:
    """Per input: stats, its part of the report, and the indices it loses."""
    refs = [s.manifest.ref for s in sources]
    report = _report(found, refs)
    out = []
    for src, s in enumerate(sources):
        mine = report.filter(pl.col("_src") == src)
        drop = mine["removed_index"].to_numpy()
        stats = {
            "rows_in": s.height, "rows_out": s.height - len(drop), "removed": len(drop),
            "removed_exact": int((mine["method"] == "exact").sum()), "removed_near": int((mine["method"] == "near").sum()),
            "field": p.field, "keep": p.keep, "near": p.near, "inputs": refs,
            "removed_into_other_datasets": int((mine["kept_dataset"] != s.manifest.ref).sum()),
        }
        if p.near:
            stats["lsh"] = found.near_stats
        out.append((stats, mine.drop("_src").cast(REPORT_SCHEMA), drop))  # type: ignore[arg-type]
    return out


def _params(*, field: str, near: bool, threshold: float, num_perm: int, ngram: int | None, keep: str,
            score_field: str | None, priority: tuple[str, ...], shingle: str, trim_boilerplate: bool) -> DedupParams:
    if not 0 < threshold <= 1:
        raise DatakitError(f"--threshold must be in (0, 1], got {threshold}")
    if keep not in ("first", "longest", "score"):
        raise DatakitError(f"--keep {keep}: use first, longest or score")
    if shingle != "auto":
        ShingleSpec.parse(shingle)  # a bad spec fails before any row is read
    return DedupParams(field=field, near=near, threshold=threshold, num_perm=num_perm, ngram=ngram, keep=keep,
                       score_field=score_field, priority=priority, shingle=shingle, trim_boilerplate=trim_boilerplate)


def dedup(
    inputs: list[tuple[Manifest, pl.DataFrame]], *, field: str = "auto", near: bool = False, threshold: float = 0.8,
    num_perm: int = 128, ngram: int | None = None, keep: Keep = "first", score_field: str | None = None,
    priority: tuple[str, ...] = ("identity",), shingle: str = "auto", trim_boilerplate: bool = False,
) -> list[OpOutput]:
    """One output per input frame: its rows minus exact (and, with `near`, near) duplicates of earlier-ranked rows.
    Rows are compared as a reader sees them (shingling.reader_normalize_series, optionally without repeated boilerplate);
    `shingle` is word:N, char:N or auto (char:5 for CJK or short rows, else word:3; `ngram` alone: word:ngram).
    The working data stays in memory; `run_dedup` streams registry versions through disk instead."""
    p = _params(field=field, near=near, threshold=threshold, num_perm=num_perm, ngram=ngram, keep=keep,
                score_field=score_field, priority=priority, shingle=shingle, trim_boilerplate=trim_boilerplate)
    sources = [frame_source(m, df) for m, df in inputs]
    with spill_area(None) as spill:
        found = find_duplicates(sources, spill, p)
        per_input = _outputs(sources, found, p)
    outputs = []
    for (m, df), (stats, report, drop) in zip(inputs, per_input):
        mask = np.ones(df.height, dtype=bool)
        mask[drop] = False
        outputs.append(OpOutput(df.filter(pl.Series(mask)), stats, {"clusters.parquet": report}, rows_unchanged=True))
    return outputs


def run_dedup(reg: Registry, refs: list[str], names: list[str], *, field: str = "auto", near: bool = False,
              threshold: float = 0.8, keep: Keep = "first", score_field: str | None = None, num_perm: int = 128,
              ngram: int | None = None, shingle: str = "auto", trim_boilerplate: bool = False,
              progress: Progress = no_progress, engine: str | None = None,
              ray_address: str | None = None) -> list[dict[str, Any]]:
    """Deduplicate the refs together and commit one version per ref, reading and writing a batch at a time
    (working files in the registry's staging area), so memory stays bounded whatever the size of the inputs.
    `engine` (local or ray; default DATAKIT_ENGINE, else local) runs the per-batch work; the result is the same."""
    engine = engine_name(engine)
    p = _params(field=field, near=near, threshold=threshold, num_perm=num_perm, ngram=ngram, keep=keep,
                score_field=score_field, priority=("identity",), shingle=shingle, trim_boilerplate=trim_boilerplate)
    manifests = [reg.resolve(ref) for ref in refs]
    out_names = runner.output_names(refs, names)
    for m in manifests:
        reg.check(m)  # an op never commits on top of a parent that fails the check
    params = {"inputs": [m.ref for m in manifests], "near": near, "threshold": threshold, "field": field, "keep": keep,
              "score_field": score_field, "num_perm": num_perm, "ngram": ngram, "shingle": shingle,
              "trim_boilerplate": trim_boilerplate,
              "normalization": "NFKC, lower case, quotes and dashes unified, whitespace collapsed"}
    sources = [registry_source(reg, m) for m in manifests]
    with spill_area(reg.local_dir(".staging")) as spill:
        eng = make_engine(engine, spill, ray_address=ray_address)
        found = find_duplicates(sources, spill, p, progress=progress, engine=eng)
        per_input = _outputs(sources, found, p)
        outputs = [OpOutput(None, stats, {"clusters.parquet": report}, rows_unchanged=True,
                            batches=partial(batches_without, s, drop))
                   for s, (stats, report, drop) in zip(sources, per_input)]
        # the engine's workers write the parts (the Ray engine's straight into the registry, wherever it is)
        return runner.commit_each(reg, manifests, outputs, out_names, op="dedup", params=params, engine=eng)
