"""Near-duplicate dedup as the corpus grows: time, throughput and peak memory from 200k to 10M documents.

    python benchmarks/scale_bench.py [--sizes 200000,1000000,3000000,10000000] [--ray 1000000]
                                     [--work DIR] [--out benchmarks/results/scale_bench.json]

Each corpus is N synthetic documents of 100 words drawn from a 30,000-word vocabulary with Zipf-like
frequencies (common words repeat, as in text), 2% of them near-copies (one word changed) of a document up to one
batch earlier. It is written straight into a registry version in parts of 50,000 rows (corpus building is not
timed). Then `run_dedup(near=True)` (what `datakit dedup --near` runs) deduplicates it in a fresh process;
reported: wall time end to end (reading, signing, bucketing, verifying, writing the new version), documents per
second, the process's peak RSS (VmHWM), and how many planted copies were removed. Sizes up to 1M run `--rounds`
times (median), larger ones once. With `--ray N` the same corpus of N runs on a local Ray cluster (2 CPUs)
started inside the timed process: its time includes the cluster start, reported separately; the memory is the
driver's only (Ray's workers and object store are separate processes).
A log-log plot of time and memory against N is written next to the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import peak_rss_mb, run_child

WORDS, VOCAB, COPY_SHARE, BATCH = 100, 30_000, 0.02, 50_000


def build_corpus(root: Path, n: int, seed: int = 0) -> int:
    """The corpus as registry version `corpus@v1`; returns how many planted copies it holds."""
    import polars as pl

    from datakit.registry.store import Registry

    rng = np.random.default_rng(seed)
    vocab = pl.Series([f"w{i:x}{'abcdefghij'[i % 10]}" for i in range(VOCAB)])
    p = 1.0 / (np.arange(VOCAB) + 10.0)
    p /= p.sum()
    reg, planted, prev = Registry(root), 0, None
    with reg.stage("corpus", "cpt") as st:
        for a in range(0, n, BATCH):
            m = min(BATCH, n - a)
            ids = rng.choice(VOCAB, size=(m, WORDS), p=p)
            copies = rng.random(m) < COPY_SHARE
            pool = ids if prev is None else np.concatenate([prev, ids])
            src = rng.integers(0, np.maximum(1, len(pool) - m + np.arange(m)), size=m)  # an earlier document (this or last batch)
            for i in np.flatnonzero(copies):
                if src[i] < len(pool) - m + i:
                    ids[i] = pool[src[i]]
                    ids[i, rng.integers(WORDS)] = rng.integers(VOCAB)
                    planted += 1
            words = vocab.gather(ids.ravel()).reshape((m, WORDS))
            text = words.arr.join(" ")
            st.write(pl.DataFrame({"text": text}).with_columns(
                source=pl.lit("synthetic"), doc_id=pl.format("d{}", pl.int_range(a, a + m)), group_id=pl.lit(None, pl.String),
                split=pl.lit(None, pl.String), meta=pl.lit(None, pl.String)))
            prev = ids
        st.commit(op="ingest", params={"synthetic": n})
    return planted


def child(root: str, engine: str) -> None:
    from datakit.ops.dedup import run_dedup
    from datakit.registry.store import Registry

    reg = Registry(root)
    t0 = time.perf_counter()
    started = 0.0
    if engine == "ray":
        from datakit.ops.ray_engine import connect

        connect(None)
        started = time.perf_counter() - t0
    [res] = run_dedup(reg, ["corpus"], [f"corpus-{engine}-{time.time_ns()}"], near=True, threshold=0.8,
                      engine=engine)
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "cluster_start_s": started, "peak_rss_mb": peak_rss_mb(),
                      "removed": res["stats"]["removed"], "rows_in": res["stats"]["rows_in"],
                      "content_hash": res["content_hash"]}))


def measure(root: Path, n: int, engine: str, rounds: int) -> dict:
    runs = [run_child(__file__, str(root), engine) for _ in range(rounds)]
    assert len({r["content_hash"] for r in runs}) == 1, "dedup gave different versions across rounds"
    med = statistics.median(r["seconds"] for r in runs)
    return {"n": n, "engine": engine, "rounds": rounds, "seconds": round(med, 2),
            "docs_per_s": round(n / med), "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs)),
            "cluster_start_s": round(statistics.median(r["cluster_start_s"] for r in runs), 2),
            "removed": runs[0]["removed"], "content_hash": runs[0]["content_hash"],
            "all_seconds": [round(r["seconds"], 2) for r in runs]}


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    local = [r for r in results if r["engine"] == "local"]
    ns = [r["n"] for r in local]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.loglog(ns, [r["seconds"] for r in local], "o-", label="local engine")
    ax1.loglog(ns, [local[0]["seconds"] * n / ns[0] for n in ns], ":", color="grey", label="linear from the first")
    for r in results:
        if r["engine"] == "ray":
            ax1.loglog([r["n"]], [r["seconds"]], "s", color="C3", label="ray engine (local cluster)")
    ax1.set(xlabel="documents", ylabel="seconds", title="near-dup dedup time")
    ax1.legend()
    ax2.loglog(ns, [r["peak_rss_mb"] for r in local], "o-", label="peak RSS")
    ax2.axhline(4096, color="C3", ls="--", label="4 GB target")
    ax2.set(xlabel="documents", ylabel="MB", title="peak memory")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="200000,1000000,3000000,10000000")
    ap.add_argument("--ray", type=int, default=1_000_000, help="corpus size for the Ray engine (0: skip)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds for sizes up to 1M (larger: one)")
    ap.add_argument("--work", type=Path, default=None, help="where corpora and registries go (needs ~1 KB/doc)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "scale_bench.json")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="scale-", dir=args.work))
    results: list[dict] = []
    try:
        for n in sorted(set(sizes + ([args.ray] if args.ray else []))):
            root = work / f"reg-{n}"
            t0 = time.perf_counter()
            planted = build_corpus(root, n)
            print(f"{n:>10,} docs built in {time.perf_counter() - t0:.0f}s ({planted} planted copies)", flush=True)
            rounds = args.rounds if n <= 1_000_000 else 1
            for engine in ["local"] * (n in sizes) + ["ray"] * (n == args.ray):
                r = measure(root, n, engine, rounds if engine == "local" else 1)
                r["planted"] = planted
                results.append(r)
                print(f"{n:>10,} {engine:5} {r['seconds']:8.1f}s {r['docs_per_s']:>8,} docs/s "
                      f"{r['peak_rss_mb']:>6,} MB removed {r['removed']:,}", flush=True)
                args.out.write_text(json.dumps({"results": results}, indent=1))  # saved as it goes
            shutil.rmtree(root, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    local = [r for r in results if r["engine"] == "local"]
    summary = {"cores": os.cpu_count(), "words_per_doc": WORDS, "copy_share": COPY_SHARE,
               "throughput_ratio_largest_vs_smallest": round(local[-1]["docs_per_s"] / local[0]["docs_per_s"], 3)
               if len(local) > 1 else None,
               "max_peak_rss_mb": max(r["peak_rss_mb"] for r in local) if local else None}
    same = {r["n"]: r["content_hash"] for r in local}
    for r in results:
        if r["engine"] == "ray" and r["n"] in same:
            summary["ray_same_version_as_local"] = r["content_hash"] == same[r["n"]]
    args.out.write_text(json.dumps({"summary": summary, "results": results}, indent=1))
    plot(results, args.out.with_suffix(".png"))
    print(json.dumps(summary))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
    else:
        main()
