"""Drop training rows that contain eval items, and say which items leaked through which rows.

Default method: n-gram overlap as in the GPT-3 paper (13 tokens; a CJK character is a token):
a training row is contaminated when it shares any n-gram with an eval item. Eval items shorter
than n tokens are matched by their whole token run when they have at least `min_tokens` tokens,
and by exact equality of the whole text below that (a 3-word question occurs everywhere).
Method `near`: MinHash LSH with every candidate verified by exact shingle Jaccard.
The eval sets are held in memory; the training rows are read a batch at a time, so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any, Literal

import numpy as np
import polars as pl

from datakit.errors import DatakitError
from datakit.ops import minhash, runner
from datakit.ops.batches import Source, batches_without, frame_source, registry_source
from datakit.ops.engine import Engine, LocalEngine, engine_name, make_engine
from datakit.ops.fields import texts
from datakit.ops.runner import OpOutput
from datakit.ops.spill import Spill, spill_area
from datakit.registry.store import Registry
from datakit.schemas import Manifest
from datakit.text import tokens_expr

HIT_SCHEMA = {"train": pl.Int64, "eval": pl.Int64, "overlap": pl.Float64, "train_id": pl.String}
LEAK_SCHEMA = {
    "train_index": pl.Int64, "train_id": pl.String, "eval_dataset": pl.String, "eval_index": pl.Int64,
    "eval_id": pl.String, "overlap": pl.Float64, "method": pl.String, "eval_text": pl.String,
}


def default_field(kind: str) -> str:
    """Leaks can sit in any turn: compare whole conversations unless told otherwise."""
    return {"cpt": "text", "probes": "full"}.get(kind, "conversation")


def _docs(kind: str, df: pl.DataFrame, field: str) -> pl.DataFrame:
    f = default_field(kind) if field == "auto" else field
    return df.select(pl.col("id"), pl.lit(texts(kind, df, f)).str.to_lowercase().alias("text")).with_columns(
        tokens=tokens_expr(pl.col("text")))


def _window_hashes(tokens: pl.Series, w: int, only: np.ndarray | None = None) -> pl.DataFrame:
    """(doc, hash) for every distinct w-token window of each document (or of the `only` documents)."""
    sh = minhash.shingle_hashes(tokens, w)
    doc = np.repeat(np.arange(len(sh.offsets) - 1), sh.sizes)
    out = pl.DataFrame({"doc": doc, "h": sh.hashes}).unique(maintain_order=True)  # a repeated window counts once
    return out.filter(pl.col("doc").is_in(pl.Series(only).implode())) if only is not None else out


def _ngram_leaks(train: pl.DataFrame, evals: pl.DataFrame, ngram: int, min_tokens: int) -> pl.DataFrame:
    """(train doc, eval doc, matched n-grams / eval n-grams) for every overlapping pair."""
    lengths = evals["tokens"].list.len().to_numpy()
    found = []
    sizes = sorted({ngram} | {int(n) for n in lengths if min_tokens <= n < ngram})
    for w in sizes:
        eligible = np.flatnonzero(lengths >= ngram) if w == ngram else np.flatnonzero(lengths == w)
        if len(eligible) == 0:
            continue
        ev = _window_hashes(evals["tokens"], w, eligible).rename({"doc": "eval"})
        tr = _window_hashes(train["tokens"], w).rename({"doc": "train"})
        total = ev.group_by("eval").len("eval_ngrams")
        hits = tr.join(ev, on="h").group_by(["train", "eval"]).len("matched")
        found.append(hits.join(total, on="eval").select(
            "train", "eval", (pl.col("matched") / pl.col("eval_ngrams")).alias("overlap")))
    short = np.flatnonzero((lengths < min_tokens) & (lengths > 0))
    if len(short):  # too short for n-grams: only a row that is the item itself counts
        ev = evals.with_row_index("eval").filter(pl.col("eval").is_in(pl.Series(short).implode()))
        tr = train.with_row_index("train")
        exact = tr.join(ev, on="text").select(pl.col("train").cast(pl.Int64), pl.col("eval").cast(pl.Int64), pl.lit(1.0).alias("overlap"))
        found.append(exact)
    if not found:
        return pl.DataFrame(schema={"train": pl.Int64, "eval": pl.Int64, "overlap": pl.Float64})
    return pl.concat([f.cast({"train": pl.Int64, "eval": pl.Int64}) for f in found]).group_by(["train", "eval"]).agg(pl.col("overlap").max())


def _near_leaks(train: pl.DataFrame, evals: pl.DataFrame, *, threshold: float, num_perm: int, ngram: int) -> pl.DataFrame:
    both = pl.concat([train["tokens"], evals["tokens"]])
    sh = minhash.shingle_hashes(both, ngram)
    bands, rows = minhash.lsh_params(threshold, num_perm)
    cand = minhash.candidate_pairs(minhash.signatures(sh, num_perm), bands, rows)
    n = train.height
    cross = cand[(cand[:, 0] < n) & (cand[:, 1] >= n)]
    sims = minhash.jaccard(sh, cross)
    ok = sims >= threshold
    return pl.DataFrame({"train": cross[ok, 0], "eval": cross[ok, 1] - n, "overlap": sims[ok]})


def _leaks_of_batch(tr: pl.DataFrame, ev: pl.DataFrame, *, method: str, ngram: int, min_tokens: int, threshold: float,
                    num_perm: int) -> pl.DataFrame:
    """(train, eval, overlap) of one batch of training docs against one eval set, with the train row's id."""
    if method == "ngram":
        hits = _ngram_leaks(tr, ev, ngram, min_tokens)
    else:
        hits = _near_leaks(tr, ev, threshold=threshold, num_perm=num_perm, ngram=min(ngram, 5))
    ids = tr.select(pl.col("id").alias("train_id")).with_row_index("train").cast({"train": pl.Int64})
    return hits.join(ids, on="train")


def leaks_in_batch(batch: pl.DataFrame, *, kind: str, field: str, evals: list[pl.DataFrame], method: str, ngram: int,
                   min_tokens: int, threshold: float, num_perm: int) -> pl.DataFrame:
    """The leaks of one batch of training rows (its first row's index in `_row0`) against every eval set (in
    `_set`): the per-batch step an engine runs, on this machine or on a Ray worker."""
    offset = int(batch["_row0"][0]) if batch.height else 0
    tr = _docs(kind, batch.drop("_row0"), field)
    found = [_leaks_of_batch(tr, ev, method=method, ngram=ngram, min_tokens=min_tokens, threshold=threshold,
                             num_perm=num_perm).with_columns(pl.col("train") + offset, _set=pl.lit(i, pl.Int32))
             for i, ev in enumerate(evals)]
    return pl.concat(found) if found else pl.DataFrame(schema={**HIT_SCHEMA, "_set": pl.Int32})


def _with_offsets(source: Source) -> Iterator[pl.DataFrame]:
    offset = 0
    for batch in source.batches():
        yield batch.with_columns(_row0=pl.lit(offset, pl.Int64))
        offset += batch.height


def find_leaks(
    train: Source, evals: list[tuple[Manifest, pl.DataFrame]], *, field: str = "auto", eval_field: str = "auto",
    method: str = "ngram", ngram: int = 13, min_tokens: int = 8, threshold: float = 0.8, num_perm: int = 128,
    engine: Engine | None = None,
) -> tuple[dict[str, Any], pl.DataFrame, np.ndarray]:
    """(stats, leak report, indices of the training rows to drop), the training rows read a batch at a time
    against eval sets held in memory (a leak is a property of one training row and one eval item, so batching
    the training side changes nothing). `engine` runs the batches (default: threads here)."""
    if method not in ("ngram", "near"):
        raise DatakitError(f"--method {method}: use ngram or near")
    evs = [(em, _docs(em.kind, edf, eval_field)) for em, edf in evals]
    step = partial(leaks_in_batch, kind=train.manifest.kind, field=field, evals=[ev for _, ev in evs], method=method,
                   ngram=ngram, min_tokens=min_tokens, threshold=threshold, num_perm=num_perm)
    found = list((engine or LocalEngine(Spill(None))).map_batches(step, _with_offsets(train)))
    hits = pl.concat(found) if found else pl.DataFrame(schema={**HIT_SCHEMA, "_set": pl.Int32})
    leaks, per_eval = [], {}
    for i, (em, ev) in enumerate(evs):
        mine = hits.filter(pl.col("_set") == i).drop("_set")
        per_eval[em.ref] = {"items": ev.height, "items_leaked": mine["eval"].n_unique(),
                            "short_items_exact_only": int((ev["tokens"].list.len() < min_tokens).sum())}
        items = ev.select(pl.col("id").alias("eval_id"), pl.col("text").str.slice(0, 200).alias("eval_text"))
        leaks.append(mine.join(items.with_row_index("eval").cast({"eval": pl.Int64}), on="eval")
                     .select(pl.col("train").alias("train_index"), "train_id", pl.lit(em.ref).alias("eval_dataset"),
                             pl.col("eval").alias("eval_index"), "eval_id", "overlap", pl.lit(method).alias("method"), "eval_text"))
    report = pl.concat(leaks).cast(LEAK_SCHEMA).sort(["train_index", "eval_dataset", "eval_index"]) if leaks else pl.DataFrame(schema=LEAK_SCHEMA)  # type: ignore[arg-type]
    drop = np.unique(report["train_index"].to_numpy())
    stats: dict[str, Any] = {
        "rows_in": train.height, "rows_out": train.height - len(drop), "removed": len(drop), "method": method,
        "ngram": ngram, "min_tokens": min_tokens, "field": field, "against": per_eval,
        "eval_items_leaked": sum(v["items_leaked"] for v in per_eval.values()),
    }
    if method == "near":
        stats["threshold"] = threshold
    return stats, report, drop


def decontam(
    train: tuple[Manifest, pl.DataFrame], evals: list[tuple[Manifest, pl.DataFrame]], *, field: str = "auto",
    eval_field: str = "auto", method: Literal["ngram", "near"] = "ngram", ngram: int = 13, min_tokens: int = 8,
    threshold: float = 0.8, num_perm: int = 128,
) -> OpOutput:
    """`train` without the rows that leak eval items, with the leak report (`run_decontam` streams a registry
    version instead of holding it)."""
    tm, tdf = train
    stats, report, drop = find_leaks(frame_source(tm, tdf), evals, field=field, eval_field=eval_field, method=method,
                                     ngram=ngram, min_tokens=min_tokens, threshold=threshold, num_perm=num_perm)
    mask = np.ones(tdf.height, dtype=bool)
    mask[drop] = False
    return OpOutput(tdf.filter(pl.Series(mask)), stats, {"leaks.parquet": report}, rows_unchanged=True)


def run_decontam(reg: Registry, ref: str, against: list[str], names: list[str], *, field: str = "auto",
                 method: Literal["ngram", "near"] = "ngram", ngram: int = 13, min_tokens: int = 8,
                 threshold: float = 0.8, engine: str | None = None, ray_address: str | None = None) -> list[dict[str, Any]]:
    """Decontaminate `ref` against the eval refs and commit it; the eval sets are parents too, so the
    version's lineage says what it was checked against. `engine` (local or ray) runs the batches."""
    engine = engine_name(engine)
    tm = reg.resolve(ref)
    reg.check(tm)  # an op never commits on top of a parent that fails the check
    evals = runner.load(reg, against)  # eval sets are small: held in memory; the training rows are streamed
    params = {"input": tm.ref, "against": [m.ref for m, _ in evals], "method": method, "ngram": ngram,
              "min_tokens": min_tokens, "threshold": threshold, "field": field}
    source = registry_source(reg, tm)
    with spill_area(reg.local_dir(".staging")) as spill:
        eng = make_engine(engine, spill, ray_address=ray_address)
        stats, report, drop = find_leaks(source, evals, field=field, method=method, ngram=ngram,
                                         min_tokens=min_tokens, threshold=threshold, engine=eng)
        o = OpOutput(None, stats, {"leaks.parquet": report}, rows_unchanged=True,
                     batches=partial(batches_without, source, drop))
        return runner.commit_each(reg, [tm], [o], runner.output_names([ref], names), op="decontam", params=params,
                                  parents=[tm, *[m for m, _ in evals]], engine=eng)
