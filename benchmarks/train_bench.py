"""LoRA SFT throughput: the same tiny model, data, LoRA init and training plan on the mlx and hf backends.

    python benchmarks/train_bench.py [--iters 40] [--rounds 3] [--out benchmarks/results/train_bench.json]

Each backend runs `run_stage` in its own process (peak memory is its own), both from one LoRA init (made by peft,
converted for mlx-lm) and on one plan (datakit/train/plan.py), so their loss curves should coincide and
tokens/s compares engines on identical work. Tokens/s counts the chat-template tokens of the rows the plan
trains on over the training wall time. Rounds alternate the backends' order; the median round is reported.
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


def init_adapters(work: Path) -> None:
    """One LoRA init for both backends: peft's (with a small nonzero B), converted to mlx-lm's format."""
    from datakit.train.adapters import shared_init

    shared_init(work / "model", stage_spec(1), work / "init-hf", work / "init-mlx")


def stage_spec(iters: int):
    from datakit.train.recipe import StageSpec

    return StageSpec.model_validate({"stage": "sft", "data": "bench", "lora": LORA, "train": {**TRAIN, "iters": iters}})


def trained_tokens(work: Path, plan_file: Path) -> int:
    """Chat-template tokens (up to max_seq_len) of every row the plan trained on."""
    from transformers import AutoTokenizer

    from datakit.train.plan import read_plan

    tok = AutoTokenizer.from_pretrained(work / "model")
    rows = [json.loads(x) for x in (work / "mlx" / "train.jsonl").read_text().splitlines()]
    lengths = [min(len(tok.apply_chat_template(r["messages"], tokenize=True, return_dict=False)), TRAIN["max_seq_len"])
               for r in rows]
    return sum(lengths[i] for i in read_plan(plan_file).row_stream)


def child(backend: str, work: Path, iters: int) -> None:
    import importlib
    import shutil

    from datakit.train.job import StageJob

    mod = importlib.import_module(f"datakit.train.{backend}_backend")
    out = work / f"run-{backend}"
    shutil.rmtree(out, ignore_errors=True)  # a fresh run each round, never a resume
    job = StageJob(stage=stage_spec(iters), base_model=work / "model", data_dir=work / backend, out_dir=out, seed=0,
                   adapter_in=work / f"init-{backend}")
    t = time.perf_counter()
    res = mod.run_stage(job)
    secs = time.perf_counter() - t
    curve = [[r["step"], round(r["train_loss"], 4)] for r in job.metrics.rows() if r.get("train_loss") is not None]
    print(json.dumps({"seconds": secs, "steps": res.steps, "peak_rss_mb": peak_rss_mb(), "loss_curve": curve}))


def measure(backend: str, work: Path, iters: int) -> dict:
    res = run_child(__file__, backend, "--work", str(work), "--iters", str(iters))
    res["tokens"] = trained_tokens(work, work / f"run-{backend}" / "plan.json")
    res["tokens_per_s"] = round(res["tokens"] / res["seconds"])
    res["seconds"] = round(res["seconds"], 2)
    res["peak_rss_mb"] = round(res["peak_rss_mb"])
    return res


def median_round(rounds: list[dict]) -> dict:
    return sorted(rounds, key=lambda r: r["tokens_per_s"])[len(rounds) // 2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--rows", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
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
        init_adapters(work)
        runs: dict[str, list[dict]] = {"mlx": [], "hf": []}
        for r in range(a.rounds):  # alternate who goes first
            for backend in (("mlx", "hf") if r % 2 == 0 else ("hf", "mlx")):
                runs[backend].append(measure(backend, work, a.iters))
        mlx, hf = median_round(runs["mlx"]), median_round(runs["hf"])
        hf_at = dict(map(tuple, hf["loss_curve"]))
        gaps = [abs(loss - hf_at[step]) for step, loss in mlx["loss_curve"] if step in hf_at]
        gap = max(gaps) if gaps else None
        result = {
            "benchmark": "LoRA SFT steps on a tiny Llama (CPU), one plan and one LoRA init for both backends",
            "model": MODEL, "train": {**TRAIN, "iters": a.iters}, "lora": LORA, "rounds": a.rounds,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "mlx": mlx, "hf": hf, "tokens_per_s_all_rounds": {b: [x["tokens_per_s"] for x in v] for b, v in runs.items()},
            "loss_curves_max_abs_diff": None if gap is None else round(gap, 4),
        }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
