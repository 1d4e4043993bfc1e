"""Probe generation throughput: batched vs one-at-a-time on the HF and MLX runners (tiny model, CPU).

    python benchmarks/eval_bench.py [--probes 64] [--out benchmarks/results/eval_bench.json]

Each (runner, batch size) runs in its own process. Greedy, a fixed number of new tokens budget;
probes/s counts prompts answered per second of generation (model load excluded).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from common import peak_rss_mb, run_child

MODEL = {"layers": 4, "hidden": 256, "heads": 8, "kv_heads": 4, "intermediate": 688}
MAX_NEW = 32


def prompts(n: int) -> list[list[dict]]:
    topics = ["billing", "shipping", "warranty", "returns", "pricing", "security", "support", "refunds"]
    return [[{"role": "user", "content": f"Question {i}: how does {topics[i % len(topics)]} work for plan {i % 7}?"}]
            for i in range(n)]


def child(backend: str, model: Path, n: int, batch: int) -> None:
    from datakit.evals.runners import HFRunner, MLXRunner

    runner = (HFRunner if backend == "hf" else MLXRunner)(model)
    runner.generate(prompts(2), max_new_tokens=4, temperature=0.0, seed=0, batch_size=2)  # warm-up
    t = time.perf_counter()
    outs = runner.generate(prompts(n), max_new_tokens=MAX_NEW, temperature=0.0, seed=0, batch_size=batch)
    secs = time.perf_counter() - t
    print(json.dumps({"seconds": secs, "answers": len(outs), "peak_rss_mb": peak_rss_mb()}))


def measure(backend: str, model: Path, n: int, batch: int) -> dict:
    r = run_child(__file__, backend, "--model", str(model), "--probes", str(n), "--batch", str(batch))
    return {"batch_size": batch, "seconds": round(r["seconds"], 2), "probes_per_s": round(r["answers"] / r["seconds"], 2),
            "peak_rss_mb": round(r["peak_rss_mb"])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--probes", type=int, default=64)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "eval_bench.json")
    ap.add_argument("--child")
    ap.add_argument("--model", type=Path)
    ap.add_argument("--batch", type=int, default=1)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.model, a.probes, a.batch)
        return
    with tempfile.TemporaryDirectory() as tmp:
        from datakit.tiny import build_llama

        model = build_llama(Path(tmp) / "model", vocab_size=1024, **MODEL)
        result = {"benchmark": "greedy probe generation, tiny Llama on CPU", "model": MODEL, "probes": a.probes,
                  "max_new_tokens": MAX_NEW, "machine": {"cpus": os.cpu_count()},
                  "hf": [measure("hf", model, a.probes, b) for b in (1, 8)],
                  "mlx": [measure("mlx", model, a.probes, b) for b in (1, 8)]}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
