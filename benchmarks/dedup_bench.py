"""Near-duplicate dedup: datakit vs rensa vs datasketch, same corpus, shingles and permutations.

    python benchmarks/dedup_bench.py [--synthetic 200000] [--rounds 3] [--out benchmarks/results/dedup_bench.json]

Two corpora, each with planted near-copies of every kind in `datakit.ops.near_edits` (dropped words, re-cased
words, a swapped pair, curly quotes, doubled spaces, a repost prefix, a read-more suffix, upper case, trailing
whitespace), spread through the corpus so a copy may come before its original:
- quality: the real external files (c4, wiki, alpaca en/zh outputs), first cleared of their own near-duplicates
  (exact Jaccard >= 0.5) so that the planted copies are the whole planted truth; thresholds 0.7 / 0.8 / 0.9.
- speed: N synthetic documents of 60-140 words plus 10% planted copies; threshold 0.8, `--rounds` rounds with
  the contenders alternating (order rotated each round), median time and peak memory reported.

Every contender compares the same shingles: text normalized as datakit does (NFKC, lower case, quotes, dashes,
whitespace) and cut into the shingles datakit's `auto` picks for the corpus; every one uses 128 permutations.
Each runs in its own process and starts from its natural input, loaded before the clock starts and counted in
its peak memory (datakit: a registry version's Parquet rows; the others: the JSON list of texts), library imported, and is timed end to end, its shingling included. rensa runs its keep-first deduplicator
(`RMinHashDeduplicator.add_pairs` over shingle lists: MinHash, LSH and estimated-Jaccard check in Rust) with the
band count (a divisor of 128) that best fits the threshold; datasketch MinHashLSH query-then-insert.

Scores, against two truths: exact Jaccard (every pair whose exact shingle Jaccard reaches the threshold,
all pairs computed with a sparse product) and planted (each original with its copies). Recall: of the rows a
perfect dedup removes (cluster size - 1 per cluster of the truth), how many were removed; precision: of the
removed rows, how many have a partner in the truth.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import peak_rss_mb, run_child

EXTERNAL = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "external"
NUM_PERM, CLEAN_BELOW = 128, 0.5
CONTENDERS = ("datakit", "rensa", "datasketch")
SHINGLING = [0.0]  # seconds a Python contender spent making shingle lists (reported beside its total)


# ---- corpora -----------------------------------------------------------------------------------


def external_texts() -> list[str]:
    docs = [json.loads(x)["text"] for x in (EXTERNAL / "c4_demo.jsonl").read_text(encoding="utf-8").splitlines()]
    docs += [x for x in (EXTERNAL / "wiki_demo.txt").read_text(encoding="utf-8").splitlines() if x.strip()]
    for f in ("alpaca_en_demo.json", "alpaca_zh_demo.json"):
        docs += [r["output"] for r in json.loads((EXTERNAL / f).read_text(encoding="utf-8"))]
    return [d for d in docs if len(d.split()) >= 8 or len(d) >= 40]


def synthetic_texts(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    vocab = [f"{a}{b}" for a in ("ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "ve", "zu") for b in
             ("n", "ra", "to", "mel", "sik", "dor", "ven", "pa", "lu", "kes", "mon", "tir")] * 3
    return [" ".join(rng.choice(vocab) for _ in range(rng.randint(60, 140))) for _ in range(n)]


def with_copies(base: list[str], per_kind: int, seed: int) -> tuple[list[str], list[list[int]], list[str]]:
    """Base texts plus planted copies, shuffled; returns texts, planted clusters (positions) and copy kinds."""
    from datakit.ops.near_edits import plant

    rng = random.Random(seed)
    copies = plant(base, rng, per_kind=per_kind)
    texts = base + [c for _, c, _ in copies]
    order = list(range(len(texts)))
    rng.shuffle(order)
    pos = {old: new for new, old in enumerate(order)}
    clusters: dict[int, list[int]] = {}
    for k, (src, _, _) in enumerate(copies):
        clusters.setdefault(src, [pos[src]]).append(pos[len(base) + k])
    return [texts[i] for i in order], list(clusters.values()), [kind for _, _, kind in copies]


# ---- shingles as every contender sees them -----------------------------------------------------


def shingle_lists(texts: list[str], spec: str) -> list[list[str]]:
    """datakit's normalization and shingles, as Python strings (what rensa and datasketch are fed)."""
    import polars as pl

    start = time.perf_counter()

    from datakit.ops.shingling import ShingleSpec, reader_normalize, shingle_units

    s = ShingleSpec.parse(spec)
    norm = pl.select(reader_normalize(pl.lit(pl.Series(texts, dtype=pl.String)))).to_series()
    sep = " " if s.unit == "word" else ""
    out = []
    for units in shingle_units(norm, s).to_list():
        units = units or []
        if len(units) < s.n:
            out.append([sep.join(units)] if units else [])
        else:
            out.append([sep.join(units[i:i + s.n]) for i in range(len(units) - s.n + 1)])
    SHINGLING[0] += time.perf_counter() - start
    return out


def auto_shingle(texts: list[str]) -> str:
    import polars as pl

    from datakit.ops.dedup import choose_shingles
    from datakit.ops.shingling import reader_normalize

    norm = pl.select(reader_normalize(pl.lit(pl.Series(texts, dtype=pl.String)))).to_series()
    return str(choose_shingles(norm, "auto", None))


def similar_pairs(sets: list[list[str]], threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (i < j) with exact shingle-set Jaccard >= threshold: a sparse product of the incidence matrix."""
    import scipy.sparse as sp

    vocab: dict[str, int] = {}
    rows, cols = [], []
    for i, s in enumerate(sets):
        for sh in set(s):
            rows.append(i)
            cols.append(vocab.setdefault(sh, len(vocab)))
    a = sp.csr_matrix((np.ones(len(rows), np.int32), (rows, cols)), shape=(len(sets), len(vocab)))
    size = np.asarray(a.sum(axis=1)).ravel()
    pairs, sims = [], []
    for lo in range(0, len(sets), 20_000):  # row blocks bound the product's memory
        inter = sp.triu(a[lo:lo + 20_000] @ a.T, k=lo + 1).tocoo()
        i, j = inter.row + lo, inter.col
        jac = inter.data / (size[i] + size[j] - inter.data)
        keep = jac >= threshold
        pairs.append(np.stack([i[keep], j[keep]], axis=1))
        sims.append(jac[keep])
    return np.concatenate(pairs), np.concatenate(sims)


def components(pairs: np.ndarray, n: int) -> list[list[int]]:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    g = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, label = connected_components(g, directed=False)
    groups: dict[int, list[int]] = {}
    for i, lab in enumerate(label):
        groups.setdefault(int(lab), []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def score(removed: set[int], clusters: list[list[int]]) -> dict:
    """Recall over the removals a perfect dedup makes; precision over the removals made."""
    need = sum(len(c) - 1 for c in clusters)
    hit = sum(min(len(removed.intersection(c)), len(c) - 1) for c in clusters)
    inside = set().union(*map(set, clusters)) if clusters else set()
    right = len(removed & inside)
    return {"recall": round(hit / need, 4) if need else None,
            "precision": round(right / len(removed), 4) if removed else None}


# ---- contenders: each returns the removed positions ----------------------------------------------


def write_corpus(texts: list[str], path: Path) -> Path:
    """The corpus twice: JSON texts (what rensa and datasketch load) and the Parquet rows of a registry version,
    ids included (what `datakit dedup` loads)."""
    import polars as pl

    from datakit.registry.rows import with_ids

    path.write_text(json.dumps(texts))
    with_ids("cpt", pl.DataFrame({"text": texts}).with_columns(
        [pl.lit(None, pl.String).alias(c) for c in ("source", "doc_id", "group_id", "split")], meta=pl.lit("{}"),
    )).write_parquet(path.with_suffix(".parquet"))
    return path


def prepare_datakit(corpus: Path) -> object:
    import polars as pl

    import datakit.ops.dedup  # noqa: F401  (imports are not timed, for any contender)
    from datakit.schemas import Manifest

    return Manifest.model_construct(name="bench", version="v1", kind="cpt"), pl.read_parquet(corpus.with_suffix(".parquet"))


def run_datakit(data: object, threshold: float, spec: str) -> set[int]:
    from datakit.ops.dedup import dedup

    [o] = dedup([data], near=True, threshold=threshold, num_perm=NUM_PERM, shingle=spec)  # type: ignore[list-item]
    return set(o.extras["clusters.parquet"]["removed_index"].to_list())


def rensa_bands(threshold: float) -> int:
    """The divisor of NUM_PERM whose S-curve best fits the threshold (datakit's weighting of misses)."""
    from datakit.ops.minhash import FN_WEIGHT, FP_WEIGHT

    s = np.linspace(0, 1, 4001)
    best, err = 1, float("inf")
    for b in (1, 2, 4, 8, 16, 32, 64, 128):
        p = 1 - (1 - s ** (NUM_PERM // b)) ** b
        e = (FP_WEIGHT * np.trapezoid(np.where(s < threshold, p, 0), s)
             + FN_WEIGHT * np.trapezoid(np.where(s >= threshold, 1 - p, 0), s))
        if e < err:
            best, err = b, e
    return best


def prepare_plain(corpus: Path) -> object:
    import datasketch  # noqa: F401
    import rensa  # noqa: F401

    import datakit.ops.shingling  # noqa: F401

    return json.loads(corpus.read_text())


def run_rensa(texts: list[str], threshold: float, spec: str) -> set[int]:
    from rensa import RMinHashDeduplicator

    dd = RMinHashDeduplicator(threshold, NUM_PERM, True, rensa_bands(threshold), 42)
    removed: set[int] = set()
    for lo in range(0, len(texts), 20_000):  # shingles made batch by batch, as a careful user would
        sets = shingle_lists(texts[lo:lo + 20_000], spec)
        added = dd.add_pairs((str(lo + k), s) for k, s in enumerate(sets))
        removed.update(lo + k for k, ok in enumerate(added) if not ok)
    return removed


def run_datasketch(texts: list[str], threshold: float, spec: str) -> set[int]:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    removed = set()
    for lo in range(0, len(texts), 20_000):
        for k, s in enumerate(shingle_lists(texts[lo:lo + 20_000], spec)):
            m = MinHash(num_perm=NUM_PERM)
            m.update_batch([x.encode("utf-8") for x in s])
            if lsh.query(m):
                removed.add(lo + k)
            else:
                lsh.insert(str(lo + k), m)
    return removed


def child(which: str, corpus: Path, threshold: float, spec: str) -> None:
    fn = {"datakit": run_datakit, "datasketch": run_datasketch, "rensa": run_rensa}[which]
    data = (prepare_datakit if which == "datakit" else prepare_plain)(corpus)
    t = time.perf_counter()
    removed = fn(data, threshold, spec)  # type: ignore[arg-type]
    secs = time.perf_counter() - t
    print(json.dumps({"seconds": secs, "shingling_seconds": SHINGLING[0], "removed": sorted(removed),
                      "peak_rss_mb": peak_rss_mb()}))


def run(which: str, corpus: Path, threshold: float, spec: str) -> dict:
    return run_child(__file__, which, "--corpus", str(corpus), "--threshold", str(threshold), "--shingle", spec)


# ---- the two corpora ---------------------------------------------------------------------------


def quality(tmp: Path) -> dict:
    base = external_texts()
    spec = auto_shingle(base)
    near, _ = similar_pairs(shingle_lists(base, spec), CLEAN_BELOW)
    drop = {int(c[k]) for c in components(near, len(base)) for k in range(1, len(c))}
    base = [t for i, t in enumerate(base) if i not in drop]
    texts, planted, kinds = with_copies(base, per_kind=40, seed=7)
    corpus = write_corpus(texts, tmp / "quality.json")
    sets = shingle_lists(texts, spec)
    out: dict = {"docs": len(texts), "base_docs": len(base), "natural_duplicates_cleared": len(drop),
                 "planted_copies": len(kinds), "copy_kinds": sorted(set(kinds)), "shingle": spec, "thresholds": {}}
    for threshold in (0.7, 0.8, 0.9):
        pairs, _ = similar_pairs(sets, threshold)
        exact = components(pairs, len(texts))
        row: dict = {"exact_truth_removals": sum(len(c) - 1 for c in exact), "rensa_bands": rensa_bands(threshold)}
        for c in CONTENDERS:
            res = run(c, corpus, threshold, spec)
            removed = set(res["removed"])
            row[c] = {"removed": len(removed), "vs_exact": score(removed, exact), "vs_planted": score(removed, planted)}
            print("quality", threshold, c, row[c], file=sys.stderr)
        out["thresholds"][str(threshold)] = row
    return out


def speed(n: int, rounds: int, tmp: Path) -> dict:
    base = synthetic_texts(n)
    texts, planted, kinds = with_copies(base, per_kind=n // 90, seed=8)
    spec, threshold = auto_shingle(texts), 0.8
    corpus = write_corpus(texts, tmp / "speed.json")
    pairs, _ = similar_pairs(shingle_lists(texts, spec), threshold)
    exact = components(pairs, len(texts))
    runs: dict[str, list[dict]] = {c: [] for c in CONTENDERS}
    for r in range(rounds):  # alternating: each round starts with the next contender
        for c in CONTENDERS[r % 3:] + CONTENDERS[:r % 3]:
            runs[c].append(run(c, corpus, threshold, spec))
            print("speed round", r, c, round(runs[c][-1]["seconds"], 2), round(runs[c][-1]["peak_rss_mb"]), file=sys.stderr)
    out: dict = {"docs": len(texts), "planted_copies": len(kinds), "shingle": spec, "threshold": threshold,
                 "rounds": rounds, "rensa_bands": rensa_bands(threshold)}
    for c, rs in runs.items():
        secs = statistics.median(x["seconds"] for x in rs)
        removed = set(rs[0]["removed"])
        out[c] = {"seconds": round(secs, 2), "docs_per_s": round(len(texts) / secs),
                  "peak_rss_mb": round(statistics.median(x["peak_rss_mb"] for x in rs)),
                  "seconds_each": [round(x["seconds"], 2) for x in rs], "removed": len(removed),
                  "of_which_python_shingling_s": round(statistics.median(x["shingling_seconds"] for x in rs), 2),
                  "vs_exact": score(removed, exact), "vs_planted": score(removed, planted)}
    out["speedup_vs_rensa"] = round(out["rensa"]["seconds"] / out["datakit"]["seconds"], 2)
    out["speedup_vs_datasketch"] = round(out["datasketch"]["seconds"] / out["datakit"]["seconds"], 1)
    out["memory_vs_rensa"] = round(out["datakit"]["peak_rss_mb"] / out["rensa"]["peak_rss_mb"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--synthetic", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", choices=["quality", "speed"])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "dedup_bench.json")
    ap.add_argument("--child")
    ap.add_argument("--corpus", type=Path)
    ap.add_argument("--threshold", type=float)
    ap.add_argument("--shingle")
    a = ap.parse_args()
    if a.child:
        child(a.child, a.corpus, a.threshold, a.shingle)
        return
    result: dict = {"benchmark": "near-duplicate dedup with planted near-copies of every kind",
                    "params": {"num_perm": NUM_PERM}, "machine": {"cpus": os.cpu_count()}}
    if a.out.exists():  # --only refreshes one part and keeps the other
        result.update({k: v for k, v in json.loads(a.out.read_text()).items() if k in ("quality", "speed")})
    with tempfile.TemporaryDirectory() as tmp:
        if a.only in (None, "quality"):
            result["quality"] = quality(Path(tmp))
        if a.only in (None, "speed"):
            result["speed"] = speed(a.synthetic, a.rounds, Path(tmp))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
