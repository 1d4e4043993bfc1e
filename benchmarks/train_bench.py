"""LoRA SFT throughput: the same tiny model, data and LoRA settings on the mlx and hf backends.

    python benchmarks/train_bench.py [--iters 40] [--out benchmarks/results/train_bench.json]

Each backend runs `run_stage` in its own process (peak memory is its own). Tokens/s counts the
chat-template tokens of the rows trained on (batch_size x iters rows, cycling through the set)
over the training wall time, so both backends are measured against the same token count.
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

from common import peak_rss_mb, run_child

MODEL = {"layers": 4, "hidden": 256, "heads": 8, "kv_heads": 4, "intermediate": 688, "max_positions": 1024}
TRAIN = {"batch_size": 8, "lr": 2e-4, "max_seq_len": 256, "eval_every": 1000, "save_every": 1000, "schedule": "constant",
         "warmup": 0.0}
LORA = {"rank": 8, "alpha": 16, "dropout": 0.0}


def make_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    topics = ["billing", "shipping", "warranty", "returns", "pricing", "security"]
    rows = []
    for i in range(n):
        t = rng.choice(topics)
        q = f"How does {t} work for plan {rng.randint(1, 99)} in region {rng.randint(1, 9)}?"
        a = " ".join(f"For {t}, step {k} is to check item {rng.randint(1, 999)}." for k in range(rng.randint(4, 10)))
        rows.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
    return rows


def prepare(work: Path, n_rows: int) -> None:
    from datakit.tiny import build_llama

    rows = make_rows(n_rows)
    texts = [m["content"] for r in rows[:200] for m in r["messages"]]
    build_llama(work / "model", texts=texts, vocab_size=1024, **MODEL)
    (work / "mlx").mkdir()
    for split, part in (("train", rows[: n_rows - 32]), ("valid", rows[n_rows - 32:])):
        (work / "mlx" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    import datasets

    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[: n_rows - 32]),
                          "valid": datasets.Dataset.from_list(rows[n_rows - 32:])}).save_to_disk(str(work / "hf"))


def trained_tokens(work: Path, iters: int) -> int:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(work / "model")
    rows = [json.loads(x) for x in (work / "mlx" / "train.jsonl").read_text().splitlines()]
    lengths = [min(len(tok.apply_chat_template(r["messages"], tokenize=True, return_dict=False)), TRAIN["max_seq_len"])
               for r in rows]
    n = TRAIN["batch_size"] * iters
    return sum(lengths[i % len(lengths)] for i in range(n))


def child(backend: str, work: Path, iters: int) -> None:
    import importlib

    from datakit.train.job import StageJob
    from datakit.train.recipe import StageSpec

    mod = importlib.import_module(f"datakit.train.{backend}_backend")
    stage = StageSpec.model_validate({"stage": "sft", "data": "bench", "lora": LORA, "train": {**TRAIN, "iters": iters}})
    job = StageJob(stage=stage, base_model=work / "model", data_dir=work / backend, out_dir=work / f"run-{backend}", seed=0)
    t = time.perf_counter()
    res = mod.run_stage(job)
    secs = time.perf_counter() - t
    losses = [r["train_loss"] for r in job.metrics.rows() if r.get("train_loss") is not None]
    print(json.dumps({"seconds": secs, "steps": res.steps, "peak_rss_mb": peak_rss_mb(),
                      "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None}))


def measure(backend: str, work: Path, iters: int, tokens: int) -> dict:
    res = run_child(__file__, backend, "--work", str(work), "--iters", str(iters))
    res["tokens"] = tokens
    res["tokens_per_s"] = round(tokens / res["seconds"])
    res["seconds"] = round(res["seconds"], 2)
    res["peak_rss_mb"] = round(res["peak_rss_mb"])
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--rows", type=int, default=512)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "train_bench.json")
    ap.add_argument("--child")
    ap.add_argument("--work", type=Path)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.work, a.iters)
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepare(work, a.rows)
        tokens = trained_tokens(work, a.iters)
        result = {
            "benchmark": "LoRA SFT steps on a tiny Llama (CPU)", "model": MODEL, "train": {**TRAIN, "iters": a.iters},
            "lora": LORA, "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "mlx": measure("mlx", work, a.iters, tokens), "hf": measure("hf", work, a.iters, tokens),
        }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
