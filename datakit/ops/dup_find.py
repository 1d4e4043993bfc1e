"""Finding exact and near-duplicate clusters in bounded memory, a batch of rows at a time.

What stays in memory is a few numbers per row (where it came from, its rank, a 128-bit hash of its text); the text
itself and the LSH band keys go to a Spill (Parquet runs on disk for registry inputs). Passes:
  1. read each input a batch at a time: the row's comparison text as a reader sees it (`shingling`), written as a
     run with the row's id; rank inputs and (with --trim-boilerplate) candidate affixes counted.
  2. (--trim-boilerplate) runs rewritten without the affixes that turned out common.
  3. per run: a 128-bit hash of the text (exact duplicates), word counts and CJK share (the `auto` shingle).
  4. (--near) per run: shingles, MinHash signatures and band keys of the rows still live, grouped by the top bits
     of the key (a shuffle); per partition, rows sharing a (band, key) bucket become candidate pairs.
  5. candidates verified with the exact Jaccard of their shingle sets (a bounded batch of pairs and their texts
     at a time), clustered transitively; each cluster keeps its best-ranked row.
Every per-batch step is a pure function of its batch (`*_of_batch`, `pairs_of_partition`) run by an `Engine`
(engine.py: threads here, or Ray Data tasks), so engines differ in how batches move, not in what is computed.
Results depend neither on the engine nor on the batch size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from datakit.errors import DatakitError
from datakit.ops import minhash, shingling
from datakit.ops.batches import Progress, Source, no_progress
from datakit.ops.engine import Engine, LocalEngine
from datakit.ops.fields import texts
from datakit.ops.shingling import ShingleSpec, reader_normalize_series, shingle_units
from datakit.ops.spill import Spill

PARTITION_ENTRIES = 2_000_000  # band-key entries grouped at once (about 50 MB, a few times that while sorting)
VERIFY_PAIRS = 20_000  # candidate pairs (and their two texts) verified per batch
S_CURVE_POINTS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0)

@dataclass
class DedupParams:
    field: str = "auto"
    near: bool = False
    threshold: float = 0.8
    num_perm: int = 128
    ngram: int | None = None
    keep: str = "first"
    score_field: str | None = None
    priority: tuple[str, ...] = ("identity",)
    shingle: str = "auto"
    trim_boilerplate: bool = False


@dataclass
class Runs:
    """The comparison texts and ids of every row, as numbered runs in a Spill; row `pos` is in run
    `searchsorted(starts, pos, 'right') - 1`."""

    spill: Spill
    starts: list[int] = field(default_factory=lambda: [0])

    def name(self, r: int) -> str:
        return f"text/{r:06d}"

    @property
    def count(self) -> int:
        return len(self.starts) - 1

    def add(self, df: pl.DataFrame) -> None:
        self.spill.put(self.name(self.count), df)
        self.starts.append(self.starts[-1] + df.height)

    def read(self, r: int, columns: list[str] | None = None) -> pl.DataFrame:
        return self.spill.get(self.name(r), columns)

    def gather(self, pos: np.ndarray, column: str) -> pl.Series:
        """`column` of the rows at `pos` (any order, repeats allowed), reading only the runs they are in."""
        if len(pos) == 0:
            return pl.Series(column, [], dtype=self.read(0, [column]).schema[column] if self.count else pl.String)
        order = np.argsort(pos, kind="stable")
        run_of = np.searchsorted(np.asarray(self.starts), pos[order], side="right") - 1
        pieces = []
        for r in np.unique(run_of):
            inside = pos[order][run_of == r] - self.starts[r]
            got = self.read(int(r), [column])[column].gather(inside)
            # a gathered string column still points into the whole run's buffers: copy out what was gathered,
            # or gathering from every run would hold every run in memory
            pieces.append(pl.Series(column, got.to_list(), dtype=got.dtype) if got.dtype == pl.String else got)
        back = np.empty(len(pos), dtype=np.int64)
        back[order] = np.arange(len(pos))
        return pl.concat(pieces).gather(back)


# ---- per-batch steps (pure) ----------------------------------------------------------------------


def _score(df: pl.DataFrame, score_field: str) -> pl.Expr:
    if score_field.startswith("scores."):  # magpie rows keep scores as JSON
        return pl.col("scores").str.json_path_match(f"$.{score_field[7:]}").cast(pl.Float64, strict=False).fill_null(-np.inf)
    if score_field not in df.columns:
        raise DatakitError(f"--score-field {score_field}: no such column; use one of {', '.join(df.columns)} or scores.<key>")
    return pl.col(score_field).cast(pl.Float64, strict=False).fill_null(-np.inf)


def rows_of_batch(kind: str, df: pl.DataFrame, src: int, offset: int, p: DedupParams) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(run, ranking) of one input batch: the run holds each row's comparison text (`_norm`) and id; the ranking
    its source, index and what `keep` orders by."""
    text = texts(kind, df, p.field)
    run = pl.DataFrame({"_norm": reader_normalize_series(text), "_id": df["id"]})
    rank = pl.DataFrame({
        "_src": np.full(df.height, src, dtype=np.int32),
        "_idx": np.arange(offset, offset + df.height, dtype=np.int64),
        "_prio": np.full(df.height, 0 if kind in p.priority else 1, dtype=np.int8),
        "_len": text.str.len_chars().cast(pl.Int64),
        "_score": df.select(_score(df, p.score_field)).to_series() if p.keep == "score" and p.score_field
        else np.zeros(df.height),
    })
    return run, rank


def keys_of_batch(run: pl.DataFrame) -> pl.DataFrame:
    """Per row of a run: a 128-bit hash of its text (two seeds; equal texts, equal hashes), its word count and
    whether it has CJK characters (what the `auto` shingle looks at)."""
    text = run["_norm"]
    return pl.DataFrame({
        "h1": text.hash(seed=0x5EED1), "h2": text.hash(seed=0x5EED2),
        "words": text.str.count_matches(r"\S+").fill_null(0).cast(pl.Int32),
        "cjk": text.str.contains(r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]").fill_null(False),
    })


def shingles_of_text(text: pl.Series, spec: ShingleSpec) -> minhash.Shingles:
    return minhash.shingle_hashes(shingle_units(text, spec), spec.n, workers=1)


def bands_of_batch(live: pl.DataFrame, *, spec: ShingleSpec, num_perm: int, bands: int, rows: int,
                   parts: int) -> pl.DataFrame:
    """(band, key, k, _p) entries of live rows (`_norm`, `k`: their rank among live rows); `_p`, the partition
    the entry is grouped in, is the top bits of its key. A row with no shingle has no entry (it matches nothing)."""
    sig = minhash.signatures(shingles_of_text(live["_norm"], spec), num_perm, workers=1)
    has = sig[:, 0] != minhash.EMPTY32
    keys = minhash.band_keys(sig[has], bands, rows).ravel()
    n = int(has.sum())
    shift = np.uint64(64 - int(np.log2(parts)))
    return pl.DataFrame({
        "band": np.repeat(np.arange(bands, dtype=np.int32), n), "key": keys,
        "k": np.tile(live["k"].to_numpy()[has], bands),
        "_p": (keys >> shift).astype(np.int32) if parts > 1 else np.zeros(len(keys), np.int32),
    })


def pairs_of_partition(entries: pl.DataFrame) -> pl.DataFrame:
    """(i, j), i < j, of the rows sharing a (band, key) bucket among these entries."""
    pairs = minhash.bucket_pairs(entries["band"].to_numpy().astype(np.int64), entries["key"].to_numpy(),
                                 entries["k"].to_numpy())
    return pl.DataFrame({"i": pairs[:, 0], "j": pairs[:, 1]}, schema={"i": pl.Int64, "j": pl.Int64})


def similarity_of_batch(pairs: pl.DataFrame, *, spec: ShingleSpec) -> pl.DataFrame:
    """Exact Jaccard of the shingle sets of texts `a` and `b` of each row."""
    m = pairs.height
    sh = shingles_of_text(pl.concat([pairs["a"], pairs["b"]]), spec)
    sim = minhash.jaccard(sh, np.stack([np.arange(m), np.arange(m, 2 * m)], axis=1)) if m else np.zeros(0)
    return pl.DataFrame({"similarity": sim}, schema={"similarity": pl.Float64})


# ---- the passes ---------------------------------------------------------------------------------


@dataclass
class Found:
    """What dedup found: (removed pos, kept pos, similarity, method) and where each row is."""

    pairs: pl.DataFrame
    src: np.ndarray
    idx: np.ndarray
    runs: Runs
    near_stats: dict[str, Any]


def find_duplicates(sources: list[Source], spill: Spill, p: DedupParams, *,
                    progress: Progress = no_progress, engine: Engine | None = None) -> Found:
    engine = engine or LocalEngine(spill)
    total = sum(s.height for s in sources)
    runs, ranking, counts = Runs(spill), [], None
    for src, s in enumerate(sources):
        offset = 0
        for df in s.batches():
            run, rank = rows_of_batch(s.manifest.kind, df, src, offset, p)
            offset += df.height
            if p.trim_boilerplate:
                c = shingling.count_affixes(shingling.affix_candidates(run["_norm"]))
                counts = c if counts is None else shingling.merge_affix_counts(counts, c)
            runs.add(run)
            ranking.append(rank)
            progress("reading", runs.starts[-1], total)
    table = pl.concat(ranking) if ranking else pl.DataFrame(schema={"_src": pl.Int32, "_idx": pl.Int64})
    del ranking
    trim_stats: dict[str, Any] = {}
    if p.trim_boilerplate and counts is not None:
        trim_stats = _trim_runs(runs, shingling.common_affixes(counts, total))
    # What stays per row from here on is a few arrays of numbers (about 40 bytes a row).
    perm = _rank_order(table, p.keep)
    src, idx = table["_src"].to_numpy(), table["_idx"].to_numpy()
    del table
    keys = pl.concat(list(engine.map_batches(keys_of_batch, (runs.read(r, ["_norm"]) for r in range(runs.count))))) \
        if total else keys_of_batch(pl.DataFrame({"_norm": []}, schema={"_norm": pl.String}))
    spec = _choose(keys, p)
    h1, h2 = keys["h1"].to_numpy(), keys["h2"].to_numpy()
    del keys
    exact = _exact(h1, h2, perm)
    del h1, h2
    near_stats: dict[str, Any] = {}
    pairs = exact
    if p.near:
        live = np.ones(total, dtype=bool)
        live[exact["removed"].to_numpy()] = False
        pos_of_k = perm[live[perm]]  # live rows in rank order
        del live, perm
        found, near_stats = _near(runs, pos_of_k, spec, p, progress, engine)
        if p.trim_boilerplate:
            near_stats["boilerplate"] = trim_stats
        pairs = pl.concat([exact, found])
    return Found(pairs, src, idx, runs, near_stats)


def _trim_runs(runs: Runs, common: dict[str, list[str]]) -> dict[str, Any]:
    trimmed = 0
    for r in range(runs.count):
        run = runs.read(r)
        text, changed = shingling.strip_affixes(run["_norm"], common)
        trimmed += int(changed.sum())
        runs.spill.put(runs.name(r), run.with_columns(text))
    return shingling.trim_stats(common, trimmed)


def choose_shingles_of(words_median: float, cjk_share: float, rows: int, shingle: str, ngram: int | None) -> ShingleSpec:
    """auto: character 5-grams when rows are short (median under 40 words) or mostly CJK, where a dropped word
    moves word-shingle Jaccard a lot; word 3-grams otherwise (as many shingles as word 5-grams, but a dropped
    or swapped word breaks 3 windows instead of 5: planted-copy recall 0.983 vs 0.958 on the external files)."""
    if shingle != "auto":
        return ShingleSpec.parse(shingle)
    if ngram is not None:  # --ngram N alone means word N-grams, as before --shingle existed
        return ShingleSpec("word", ngram)
    if rows == 0:
        return ShingleSpec("word", 3)
    return ShingleSpec("char", 5) if words_median < 40 or cjk_share >= 0.3 else ShingleSpec("word", 3)


def _choose(keys: pl.DataFrame, p: DedupParams) -> ShingleSpec:
    n = keys.height
    return choose_shingles_of(float(np.median(keys["words"].to_numpy())) if n else 0.0,
                              float(keys["cjk"].mean() or 0) if n else 0.0, n, p.shingle, p.ngram)


def _rank_order(table: pl.DataFrame, keep: str) -> np.ndarray:
    """Positions in keep order: identity rows first, then the policy, then input order."""
    if table.height == 0:
        return np.zeros(0, dtype=np.int64)
    if keep == "first":  # input order is (_src, _idx) already: a stable sort on the priority alone
        return np.argsort(table["_prio"].to_numpy(), kind="stable").astype(np.int64)
    order = {"longest": [pl.col("_len").neg()], "score": [pl.col("_score").neg()]}[keep]
    return table.select(pl.arg_sort_by([pl.col("_prio"), *order, pl.col("_src"), pl.col("_idx")])).to_series().to_numpy().astype(np.int64)


def _exact(h1: np.ndarray, h2: np.ndarray, perm: np.ndarray) -> pl.DataFrame:
    """(removed pos, kept pos) of rows whose text repeats an earlier-ranked row's (equal 128-bit hashes);
    similarity 1. Only rows whose first hash occurs twice are grouped (a sort of one column, not a hash table of
    every row)."""
    order = np.argsort(h1, kind="stable")
    same = h1[order[1:]] == h1[order[:-1]]
    cand = np.unique(np.concatenate([order[1:][same], order[:-1][same]]))
    del order, same
    rank = np.empty(len(perm), dtype=np.int64)
    rank[perm] = np.arange(len(perm))
    t = pl.DataFrame({"pos": cand, "h1": h1[cand], "h2": h2[cand], "_rank": rank[cand]})
    found = (t.with_columns(_kept=pl.col("_rank").min().over("h1", "h2"))
             .filter(pl.col("_rank") != pl.col("_kept")))
    return pl.DataFrame({
        "removed": found["pos"].to_numpy(), "kept": perm[found["_kept"].to_numpy()],
        "similarity": np.ones(found.height), "method": ["exact"] * found.height,
    }, schema={"removed": pl.Int64, "kept": pl.Int64, "similarity": pl.Float64, "method": pl.String})


def _near(runs: Runs, pos_of_k: np.ndarray, spec: ShingleSpec, p: DedupParams, progress: Progress,
          engine: Engine) -> tuple[pl.DataFrame, dict[str, Any]]:
    n = len(pos_of_k)
    bands, rows = minhash.lsh_params(p.threshold, p.num_perm)
    k_of_pos = np.full(runs.starts[-1], -1, dtype=np.int64)
    k_of_pos[pos_of_k] = np.arange(n)
    parts = max(1, 1 << int(np.ceil(np.log2(max(1.0, n * bands / PARTITION_ENTRIES)))))

    def live_runs() -> Iterator[pl.DataFrame]:
        for r in range(runs.count):
            k = k_of_pos[runs.starts[r] : runs.starts[r + 1]]
            mine = np.flatnonzero(k >= 0)
            yield pl.DataFrame({"_norm": runs.read(r, ["_norm"])["_norm"].gather(mine), "k": k[mine]})
            progress("signing", r + 1, runs.count)

    sign = partial(bands_of_batch, spec=spec, num_perm=p.num_perm, bands=bands, rows=rows, parts=parts)
    found = [f.select("i", "j").to_numpy() for f in engine.group_map(
        pairs_of_partition, engine.map_batches(sign, live_runs()), parts)]
    cand = minhash.unique_pairs(found, max(n, 1))
    del found
    sims = _verify(runs, pos_of_k, cand, spec, progress, engine)
    ok_mask = sims >= p.threshold
    ok = cand[ok_mask]
    root = minhash.connected(ok, n)  # positions are in rank order, so the root is the best-ranked row
    removed = np.flatnonzero(root != np.arange(n))
    kept = root[removed]
    sim = _pair_similarity(np.stack([kept, removed], axis=1), ok, sims[ok_mask],
                           lambda pairs: _verify(runs, pos_of_k, pairs, spec, progress, engine))
    stats = {
        "num_perm": p.num_perm, "shingle": str(spec), "threshold": p.threshold, "bands": bands, "rows_per_band": rows,
        "detection_probability_at_threshold": round(minhash.detection_probability(p.threshold, bands, rows), 4),
        "s_curve": {str(s): round(minhash.detection_probability(s, bands, rows), 4) for s in S_CURVE_POINTS},
        "candidate_pairs": len(cand), "verified_pairs": len(ok),
        "false_candidates_dropped": int(len(cand) - len(ok)),
    }
    return pl.DataFrame({"removed": pos_of_k[removed], "kept": pos_of_k[kept], "similarity": sim,
                         "method": ["near"] * len(removed)},
                        schema={"removed": pl.Int64, "kept": pl.Int64, "similarity": pl.Float64, "method": pl.String}), stats


def _verify(runs: Runs, pos_of_k: np.ndarray, pairs: np.ndarray, spec: ShingleSpec, progress: Progress,
            engine: Engine) -> np.ndarray:
    """Exact Jaccard of each pair (of live ranks), VERIFY_PAIRS pairs and their texts at a time."""

    def batches() -> Iterator[pl.DataFrame]:
        for a in range(0, len(pairs), VERIFY_PAIRS):
            chunk = pairs[a : a + VERIFY_PAIRS]
            text = runs.gather(pos_of_k[chunk.ravel()], "_norm")
            yield pl.DataFrame({"a": text.gather(np.arange(0, 2 * len(chunk), 2)),
                                "b": text.gather(np.arange(1, 2 * len(chunk), 2))})
            progress("verifying", min(a + VERIFY_PAIRS, len(pairs)), len(pairs))

    sims = [f["similarity"].to_numpy() for f in engine.map_batches(partial(similarity_of_batch, spec=spec), batches())]
    return np.concatenate(sims) if sims else np.zeros(0)


def _pair_similarity(pairs: np.ndarray, known: np.ndarray, known_sims: np.ndarray,
                     compute: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Jaccard of each (i < j) pair: looked up among the verified pairs (sorted, i < j), computed for the rest
    (a row joined to its cluster's kept row through another row)."""
    n = int(max(pairs.max(initial=0), known.max(initial=0))) + 1
    codes, query = known[:, 0] * n + known[:, 1], pairs[:, 0] * n + pairs[:, 1]
    at = np.minimum(np.searchsorted(codes, query), max(len(codes) - 1, 0))
    found = codes[at] == query if len(codes) else np.zeros(len(query), dtype=bool)
    out = np.where(found, known_sims[at] if len(codes) else 0.0, 0.0)
    if (~found).any():
        out[~found] = compute(pairs[~found])
    return out
