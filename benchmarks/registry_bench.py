"""Ingest-and-commit throughput: datakit vs Hugging Face `datasets`, on synthetic chat rows.

    python benchmarks/registry_bench.py [--rows 1000000] [--out benchmarks/results/registry_bench.json]

Each contender runs in its own process on the same JSONL file, so peak memory (max RSS) is
its own. datakit: `ingest` into a fresh registry (parse, validate every row, content ids,
Parquet, manifest). datasets: `load_dataset("json")` then `save_to_disk` (parse and Arrow
files, no row validation), what a user would otherwise reach for.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import time
from pathlib import Path

import orjson
from common import peak_rss_mb, run_child

TOPICS = ["billing", "shipping", "warranty", "onboarding", "returns", "pricing", "security", "api limits"]


def make_rows(path: Path, n: int, seed: int = 0) -> None:
    """Chat rows shaped like real SFT data: system, user, assistant, some multi-turn."""
    rng = random.Random(seed)
    with open(path, "wb") as f:
        for i in range(n):
            topic = rng.choice(TOPICS)
            msgs = [{"role": "system", "content": "You are a helpful support assistant."}] if rng.random() < 0.5 else []
            for t in range(rng.choice([1, 1, 1, 2])):
                msgs.append({"role": "user", "content": f"Question {i}.{t} about {topic}: how does {topic} work for plan {rng.randint(1, 99)}?"})
                msgs.append({"role": "assistant", "content": " ".join([f"For {topic}, step {k} is to check item {rng.randint(1, 999)}." for k in range(rng.randint(2, 8))])})
            f.write(orjson.dumps({"messages": msgs}) + b"\n")


def run_datakit(src: Path, work: Path) -> dict:
    from datakit.io.ingest import ingest
    from datakit.registry.store import Registry

    t = time.perf_counter()
    res = ingest(Registry(work / "registry"), [src], name="bench-chat", kind="sft")
    return {"seconds": time.perf_counter() - t, "rows": res.kept, "rejected": res.rejected}


def run_datasets(src: Path, work: Path) -> dict:
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    import datasets

    datasets.disable_progress_bars()
    t = time.perf_counter()
    ds = datasets.load_dataset("json", data_files=str(src), split="train", cache_dir=str(work / "hf-cache"))
    ds.save_to_disk(str(work / "hf-saved"))
    return {"seconds": time.perf_counter() - t, "rows": ds.num_rows}


def child(which: str, src: Path, work: Path) -> None:
    res = {"datakit": run_datakit, "datasets": run_datasets}[which](src, work)
    res["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(res))


def measure(which: str, src: Path, work: Path) -> dict:
    res = run_child(__file__, which, "--src", str(src), "--work", str(work))
    res["rows_per_s"] = round(res["rows"] / res["seconds"])
    res["seconds"] = round(res["seconds"], 2)
    res["peak_rss_mb"] = round(res["peak_rss_mb"])
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "registry_bench.json")
    ap.add_argument("--child")
    ap.add_argument("--src", type=Path)
    ap.add_argument("--work", type=Path)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.src, a.work)
        return
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "chat.jsonl"
        make_rows(src, a.rows)
        result = {
            "benchmark": "ingest and commit synthetic chat rows from JSONL",
            "rows": a.rows, "file_mb": round(src.stat().st_size / 2**20, 1),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "datakit": measure("datakit", src, Path(tmp) / "dk"),
            "datasets": measure("datasets", src, Path(tmp) / "hf"),
            "targets": {"rows_per_s": 100_000, "peak_rss_mb": 2048},
        }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
