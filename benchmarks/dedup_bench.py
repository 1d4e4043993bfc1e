"""Near-duplicate dedup: datakit vs datasketch MinHashLSH vs rapidfuzz all-pairs.

    python benchmarks/dedup_bench.py [--synthetic 200000] [--out benchmarks/results/dedup_bench.json]

Two corpora, each with planted near-duplicates (a copy of a document with one or two words
replaced): (a) the real external files (c4, wiki, alpaca en/zh outputs), (b) N synthetic
documents. Truth: every planted copy whose exact shingle Jaccard with its original reaches the
threshold. Each contender runs in its own process (peak memory is its own), reads the same
texts and removes a document when it near-duplicates an earlier kept one. datasketch gets the
same shingles, num_perm and threshold (MinHash.update_batch, MinHashLSH query-then-insert).
rapidfuzz (fuzz.ratio, all pairs via process.cdist) runs on corpus (a) only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from common import peak_rss_mb, run_child

EXTERNAL = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "external"
THRESHOLD, NUM_PERM, NGRAM = 0.8, 128, 5


def _perturb(text: str, rng: random.Random, vocab: list[str]) -> str:
    words = text.split(" ")
    for _ in range(rng.choice([1, 2])):
        words[rng.randrange(len(words))] = rng.choice(vocab)
    return " ".join(words)


def _plant(docs: list[str], rate: float, seed: int) -> tuple[list[str], list[tuple[int, int]]]:
    """Append perturbed copies of a sample of documents; returns texts and (original, copy) pairs."""
    rng = random.Random(seed)
    vocab = [w for d in docs[:200] for w in d.split(" ") if w.isalpha()] or ["word"]
    out, pairs = list(docs), []
    for i in rng.sample(range(len(docs)), int(len(docs) * rate)):
        if len(docs[i].split(" ")) >= 40:
            pairs.append((i, len(out)))
            out.append(_perturb(docs[i], rng, vocab))
    order = list(range(len(out)))
    rng.shuffle(order)  # copies are spread through the corpus, originals may come after copies
    pos = {old: new for new, old in enumerate(order)}
    return [out[i] for i in order], [(pos[a], pos[b]) for a, b in pairs]


def external_corpus() -> list[str]:
    docs = [json.loads(x)["text"] for x in (EXTERNAL / "c4_demo.jsonl").read_text(encoding="utf-8").splitlines()]
    docs += [x for x in (EXTERNAL / "wiki_demo.txt").read_text(encoding="utf-8").splitlines() if x.strip()]
    for f in ("alpaca_en_demo.json", "alpaca_zh_demo.json"):
        docs += [r["output"] for r in json.loads((EXTERNAL / f).read_text(encoding="utf-8"))]
    return docs


def synthetic_corpus(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    vocab = [f"{a}{b}" for a in ("ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "ve", "zu") for b in
             ("n", "ra", "to", "mel", "sik", "dor", "ven", "pa", "lu", "kes", "mon", "tir")] * 3
    return [" ".join(rng.choice(vocab) for _ in range(rng.randint(60, 140))) for _ in range(n)]


def truth(texts: list[str], pairs: list[tuple[int, int]]) -> set[tuple[int, int]]:
    from datakit.text import normalize, shingles

    keep = set()
    for a, b in pairs:
        sa, sb = set(shingles(normalize(texts[a]).lower(), NGRAM)), set(shingles(normalize(texts[b]).lower(), NGRAM))
        if len(sa & sb) / len(sa | sb) >= THRESHOLD:
            keep.add((min(a, b), max(a, b)))
    return keep


# ---- contenders: each returns the set of removed document indexes ---------------------------


def prepare_datakit(texts: list[str]) -> object:
    """Rows as a registry version holds them (ids included): what `datakit dedup` starts from."""
    import polars as pl

    import datakit.ops.dedup  # noqa: F401  (imports are not timed, for any contender)
    from datakit.registry.rows import with_ids
    from datakit.schemas import Manifest

    df = with_ids("cpt", pl.DataFrame({"text": texts}).with_columns(
        [pl.lit(None, pl.String).alias(c) for c in ("source", "doc_id", "group_id", "split")], meta=pl.lit("{}")))
    return Manifest.model_construct(name="bench", version="v1", kind="cpt"), df


def run_datakit(data: object) -> set[int]:
    from datakit.ops.dedup import dedup

    [o] = dedup([data], near=True, threshold=THRESHOLD, num_perm=NUM_PERM, ngram=NGRAM)  # type: ignore[list-item]
    return set(o.extras["clusters.parquet"]["removed_index"].to_list())


def prepare_plain(texts: list[str]) -> object:
    import datasketch  # noqa: F401
    import rapidfuzz  # noqa: F401

    import datakit.text  # noqa: F401

    return texts


def run_datasketch(texts: list[str]) -> set[int]:
    from datasketch import MinHash, MinHashLSH

    from datakit.text import normalize, shingles

    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    removed = set()
    for i, t in enumerate(texts):
        m = MinHash(num_perm=NUM_PERM)
        m.update_batch([s.encode("utf-8") for s in shingles(normalize(t).lower(), NGRAM)])
        if lsh.query(m):
            removed.add(i)
        else:
            lsh.insert(str(i), m)
    return removed


def run_rapidfuzz(texts: list[str]) -> set[int]:
    import numpy as np
    from rapidfuzz import fuzz, process

    from datakit.text import normalize

    norm = [normalize(t).lower() for t in texts]
    scores = process.cdist(norm, norm, scorer=fuzz.ratio, score_cutoff=90, workers=-1, dtype=np.uint8)
    removed = set()
    for i in range(len(norm)):
        if any(scores[i, j] and j not in removed for j in range(i)):
            removed.add(i)
    return removed


def child(which: str, corpus: Path) -> None:
    texts = json.loads(corpus.read_text())
    fn = {"datakit": run_datakit, "datasketch": run_datasketch, "rapidfuzz": run_rapidfuzz}[which]
    data = (prepare_datakit if which == "datakit" else prepare_plain)(texts)
    t = time.perf_counter()  # each contender starts from its natural input, libraries imported
    removed = fn(data)  # type: ignore[arg-type]
    secs = time.perf_counter() - t
    print(json.dumps({"seconds": secs, "removed": sorted(removed),
                      "peak_rss_mb": peak_rss_mb()}))


def score(res: dict, n: int, pairs: list[tuple[int, int]], true_pairs: set[tuple[int, int]]) -> dict:
    removed = set(res["removed"])
    positives = {b for a, b in true_pairs} | {a for a, b in true_pairs}
    # a true pair is found when either side is removed; a removal is right when it is part of a true pair
    found = sum(1 for a, b in true_pairs if a in removed or b in removed)
    planted = {x for p in pairs for x in p}
    judged = {i for i in removed if i in planted}  # removals outside planted docs are natural duplicates
    right = sum(1 for i in judged if i in positives)
    return {"seconds": round(res["seconds"], 2), "docs_per_s": round(n / res["seconds"]),
            "peak_rss_mb": round(res["peak_rss_mb"]), "removed": len(removed),
            "recall": round(found / len(true_pairs), 4) if true_pairs else None,
            "precision": round(right / len(judged), 4) if judged else None}


def bench(name: str, texts: list[str], pairs: list[tuple[int, int]], contenders: list[str], tmp: Path) -> dict:
    corpus = tmp / f"{name}.json"
    corpus.write_text(json.dumps(texts))
    true_pairs = truth(texts, pairs)
    out = {"docs": len(texts), "planted_pairs": len(pairs), "true_pairs_at_threshold": len(true_pairs)}
    for c in contenders:
        out[c] = score(run_child(__file__, c, "--corpus", str(corpus)), len(texts), pairs, true_pairs)
        print(name, c, out[c], file=sys.stderr)
    if "datasketch" in out and "datakit" in out:
        out["speedup_vs_datasketch"] = round(out["datakit"]["docs_per_s"] / out["datasketch"]["docs_per_s"], 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--synthetic", type=int, default=200_000)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "dedup_bench.json")
    ap.add_argument("--child")
    ap.add_argument("--corpus", type=Path)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.corpus)
        return
    with tempfile.TemporaryDirectory() as tmp:
        ext_texts, ext_pairs = _plant(external_corpus(), 0.2, seed=7)
        syn_texts, syn_pairs = _plant(synthetic_corpus(a.synthetic), 0.1, seed=8)
        result = {
            "benchmark": "near-duplicate dedup with planted near-duplicates",
            "params": {"threshold": THRESHOLD, "num_perm": NUM_PERM, "ngram": NGRAM},
            "machine": {"cpus": os.cpu_count()},
            "external": bench("external", ext_texts, ext_pairs, ["datakit", "datasketch", "rapidfuzz"], Path(tmp)),
            "synthetic": bench("synthetic", syn_texts, syn_pairs, ["datakit", "datasketch"], Path(tmp)),
        }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
