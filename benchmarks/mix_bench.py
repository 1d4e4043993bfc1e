"""Mixing speed and share accuracy: datakit `run_mix` vs Hugging Face `datasets.interleave_datasets`.

    python benchmarks/mix_bench.py [--rows 1000000] [--out benchmarks/results/mix_bench.json]

Three synthetic components (general 600k sft, domain 280k sft, identity 120k identity rows in
groups of 4 variants) are committed to a temporary registry first (not timed). The mixture
asks for 1,000,000 rows, weights 0.6/0.3/0.1 with identity raised to 30% by a min_share
policy, so identity is upsampled 2.5x (max_repeats 3) and the others downsampled.

The components are built in a process of their own and each contender runs in its own
process, so peak memory (VmHWM) is the contender's own; 3 rounds, contenders alternating,
median by time.
- datakit: `run_mix` end to end, streamed: plan from the ids, shuffle the rows through spilled
  runs (bounded memory), commit the new version (row ids, Parquet, manifest) and the mix_sources
  side file.
- in_memory: the same mix with the three versions loaded whole (`mix()` on frames) and committed:
  what streaming costs. Both must give the same content hash (checked).
- datasets: `interleave_datasets(probabilities=planned shares, seed, stopping_strategy=
  "all_exhausted")`, then the first N rows materialized with `save_to_disk`. Its inputs are
  built from the same Parquet files before the clock starts (identity rows cut to sft columns,
  plus two small int columns to measure shares and repeats afterwards).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
from common import peak_rss_mb, run_child

SEED = 42
PARTS = [("general", "sft", 0.60, 0.60), ("domain", "sft", 0.30, 0.28), ("identity", "identity", 0.10, 0.12)]
IDENTITY_SHARE = 0.3
ROUNDS = 3
CONTENDERS = ("datakit", "in_memory", "datasets")


def spec_dict(rows: int) -> dict:
    return {
        "name": "bench-mix", "seed": SEED, "unit": "rows", "total": rows, "max_repeats": 3,
        "components": [{"dataset": f"bench-{n}", "weight": w} for n, _, w, _ in PARTS],
        "policies": [{"min_share": {"dataset": "bench-identity", "share": IDENTITY_SHARE}}],
    }


def chat_frame(n: int, label: str, kind: str) -> pl.DataFrame:
    """Chat rows built column-wise (a million records through records_to_frame would take minutes)."""
    from datakit.schemas import MESSAGES, TOOL_CALL, stored_schema

    def msg(role: str, content: pl.Expr) -> pl.Expr:
        none = pl.lit(None, pl.String)
        return pl.struct(role=pl.lit(role), content=content, name=none, tool_call_id=none,
                         tool_calls=pl.lit(None, pl.List(TOOL_CALL)), weight=pl.lit(None, pl.Float64))

    i = pl.col("i")
    user = pl.format("{} question {}: how does feature {} work on plan {}?", pl.lit(label), i, i % 97, i % 13)
    answer = pl.format("For feature {}, first check setting {}, then restart the {} service and confirm item {}.",
                       i % 97, i % 1009, pl.lit(label), i)
    cols = {
        "messages": pl.concat_list([msg("user", user), msg("assistant", answer)]).cast(MESSAGES),
        "tools": pl.lit(None, pl.String),
        "parallel_tool_calls": pl.lit(None, pl.Boolean),
        # identity rows come as 4 paraphrased variants per seed fact; the others stand alone
        "group_id": pl.format("{}-g{}", pl.lit(label), i // 4) if kind == "identity" else pl.lit(None, pl.String),
        "intent": pl.when(i % 3 == 0).then(pl.lit("deny")).otherwise(pl.lit("affirm")),
        "lang": pl.lit("en"),
        "split": pl.lit(None, pl.String),
        "meta": pl.lit("{}"),
    }
    schema = stored_schema(kind)
    return pl.DataFrame({"i": np.arange(n)}).select(**{c: cols[c] for c in schema if c != "id"})


def build(root: Path, rows: int) -> None:
    from datakit.registry.store import Registry

    reg = Registry(root)
    for name, kind, _, frac in PARTS:
        reg.commit_frame(f"bench-{name}", kind, chat_frame(int(rows * frac), name, kind), op="bench")


def run_datakit(root: Path, work: Path, rows: int) -> dict:
    from datakit.ops.mix import run_mix
    from datakit.ops.mix_spec import MixtureSpec
    from datakit.registry.store import Registry

    spec = MixtureSpec.model_validate(spec_dict(rows) | {"name": f"bench-mix-{work.name}"})
    t = time.perf_counter()
    res = run_mix(Registry(root), spec)
    seconds = time.perf_counter() - t
    return _report(seconds, res)


def run_in_memory(root: Path, work: Path, rows: int) -> dict:
    """The same mix with every component loaded whole (`mix()` on frames), then committed: what streaming costs."""
    from datakit.ops import runner
    from datakit.ops.mix import MixResult, mix
    from datakit.ops.mix_spec import MixtureSpec
    from datakit.registry.store import Registry

    reg = Registry(root)
    spec = MixtureSpec.model_validate(spec_dict(rows))
    t = time.perf_counter()
    inputs = runner.load(reg, [c.dataset for c in spec.components])
    out = mix(inputs, spec)
    manifest, created = runner.commit(reg, name=f"bench-mem-{work.name}", kind="sft", inputs=[m for m, _ in inputs],
                                      op="mix", params={}, out=out)
    seconds = time.perf_counter() - t
    return _report(seconds, MixResult(manifest=manifest, created=created, unit="rows", total=out.stats["total"],
                                      rows_out=out.stats["rows_out"], components=out.stats["components"]))


def _report(seconds: float, res) -> dict:  # noqa: ANN001
    return {"seconds": seconds, "rows": res.rows_out, "content_hash": res.manifest.content_hash,
            "planned": {c.dataset: c.planned_share for c in res.components},
            "realized": {c.dataset: c.realized_share for c in res.components},
            "max_repeat": {c.dataset: c.max_repeat for c in res.components}}


def run_datasets(root: Path, work: Path, rows: int) -> dict:
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    import datasets

    from datakit.ops.mix import planned_shares
    from datakit.ops.mix_spec import MixtureSpec
    from datakit.registry.store import Registry
    from datakit.schemas import stored_schema

    datasets.disable_progress_bars()
    reg = Registry(root)
    spec = MixtureSpec.model_validate(spec_dict(rows))
    shares = [float(s) for s in planned_shares(spec)]
    cols = list(stored_schema("sft"))
    parts = [datasets.Dataset.from_polars(reg.load(f"bench-{n}").select(cols).with_columns(
        pl.lit(k, pl.Int8).alias("_c"), pl.int_range(pl.len(), dtype=pl.Int64).alias("_r")))
        for k, (n, *_) in enumerate(PARTS)]
    t = time.perf_counter()
    mixed = datasets.interleave_datasets(parts, probabilities=shares, seed=SEED, stopping_strategy="all_exhausted")
    mixed.select(range(rows)).save_to_disk(str(work / "hf-mix"))
    seconds = time.perf_counter() - t
    out = pl.from_arrow(datasets.load_from_disk(str(work / "hf-mix")).select_columns(["_c", "_r"]).data.table)
    names = [f"bench-{n}@v1" for n, *_ in PARTS]
    counts = out.group_by("_c").len().sort("_c")["len"].to_list()
    reps = out.group_by("_c", "_r").len().group_by("_c").agg(pl.col("len").max()).sort("_c")["len"].to_list()
    return {"seconds": seconds, "rows": out.height, "interleaved_rows_before_cut": len(mixed),
            "planned": dict(zip(names, [round(s, 6) for s in shares])),
            "realized": {n: round(c / out.height, 6) for n, c in zip(names, counts)},
            "max_repeat": dict(zip(names, reps))}


def child(which: str, root: Path, work: Path, rows: int) -> None:
    if which == "build":
        build(root, rows)
        return
    res = {"datakit": run_datakit, "in_memory": run_in_memory, "datasets": run_datasets}[which](root, work, rows)
    res["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(res))


def measure(which: str, root: Path, work: Path, rows: int) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    res = run_child(__file__, which, "--root", str(root), "--work", str(work), "--rows", str(rows))
    res["rows_per_s"] = round(res["rows"] / res["seconds"])
    res["seconds"] = round(res["seconds"], 2)
    res["peak_rss_mb"] = round(res["peak_rss_mb"])
    res["max_share_error_pp"] = round(max(abs(res["realized"][k] - res["planned"][k]) for k in res["planned"]) * 100, 3)
    return res


def median_of(runs: list[dict]) -> dict:
    """The median round by time, with every round's seconds and peak memory listed."""
    mid = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
    return mid | {"rounds_seconds": [r["seconds"] for r in runs], "rounds_peak_rss_mb": [r["peak_rss_mb"] for r in runs]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "mix_bench.json")
    ap.add_argument("--child")
    ap.add_argument("--root", type=Path)
    ap.add_argument("--work", type=Path)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.root, a.work, a.rows)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "registry"
        subprocess.run([sys.executable, __file__, "--child", "build", "--root", str(root), "--rows", str(a.rows)],
                       check=True)
        result = {
            "benchmark": "mix 3 registry components into N rows: min_share policy, upsampled identity",
            "rows": a.rows, "components": {f"bench-{n}": int(a.rows * f) for n, _, _, f in PARTS},
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "rounds": ROUNDS,
            "targets": {"seconds": 5.0, "max_share_error_pp": 1.0},
        }
        runs: dict[str, list[dict]] = {k: [] for k in CONTENDERS}
        for r in range(ROUNDS):  # contenders alternate within each round
            for k in CONTENDERS:
                runs[k].append(measure(k, root, Path(tmp) / f"{k}{r}", a.rows))
        result |= {k: median_of(v) for k, v in runs.items()}
        hashes = {r["content_hash"] for k in ("datakit", "in_memory") for r in runs[k]}
        assert len(hashes) == 1, f"streamed and in-memory mixes differ: {hashes}"
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
