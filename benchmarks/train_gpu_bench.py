"""LoRA SFT on a GPU: datakit's HF backend vs the plain TRL script a user would otherwise write.

The model has Qwen2-0.5B's shape (24 layers, 896 wide, 14 heads, 2 KV heads, 4864 MLP, 151,936-token
vocabulary, tied embeddings; 494M parameters), randomly initialized in bf16 with a tokenizer trained
on the spot: throughput depends on the shape, not on the weights, and nothing is downloaded.
Both contenders: LoRA r=8 alpha=16 on every projection, bf16, batch 8, max length 512, same rows.

    python benchmarks/train_gpu_bench.py [--iters 40]       # needs a CUDA GPU
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

QWEN2_05B = {"hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
             "intermediate_size": 4864, "vocab_size": 151936, "tie_word_embeddings": True,
             "max_position_embeddings": 4096, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6}
BATCH, SEQ, LR = 8, 512, 2e-4
LORA = {"rank": 8, "alpha": 16, "dropout": 0.0}


def make_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    topics = ["billing", "shipping", "warranty", "returns", "pricing", "security", "onboarding", "refunds"]
    rows = []
    for _ in range(n):
        t = rng.choice(topics)
        q = f"How does {t} work for plan {rng.randint(1, 99)} in region {rng.randint(1, 9)}? Explain every step."
        a = " ".join(f"For {t}, step {k} is to check item {rng.randint(1, 999)} and confirm it with the team."
                     for k in range(rng.randint(10, 28)))
        rows.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
    return rows


SMOKE = {**QWEN2_05B, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "intermediate_size": 128}


def prepare(work: Path, n_rows: int, shape: dict) -> None:
    import datasets
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    from datakit.tiny import IM_END, PAD, train_tokenizer

    rows = make_rows(n_rows)
    train_tokenizer(work / "model", [m["content"] for r in rows[:300] for m in r["messages"]], vocab_size=2048)
    tok = AutoTokenizer.from_pretrained(work / "model")
    end, pad = tok.convert_tokens_to_ids(IM_END), tok.convert_tokens_to_ids(PAD)
    torch.manual_seed(0)
    config = Qwen2Config(**shape, bos_token_id=None, eos_token_id=end, pad_token_id=pad, torch_dtype="bfloat16")
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.generation_config = GenerationConfig(eos_token_id=[end], pad_token_id=pad)
    model.save_pretrained(work / "model", safe_serialization=True)
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(work / "hf"))


def trained_tokens(work: Path, iters: int) -> int:
    import datasets
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(work / "model")
    rows = datasets.load_from_disk(str(work / "hf"))["train"]
    lengths = [min(len(tok.apply_chat_template(r["messages"], tokenize=True, return_dict=False)), SEQ) for r in rows]
    return sum(lengths[i % len(lengths)] for i in range(BATCH * iters))


def child_datakit(work: Path, iters: int) -> dict:
    from datakit.train import hf_backend
    from datakit.train.job import StageJob
    from datakit.train.recipe import StageSpec

    stage = StageSpec.model_validate({"stage": "sft", "data": "bench", "lora": LORA, "train": {
        "iters": iters, "batch_size": BATCH, "lr": LR, "max_seq_len": SEQ, "schedule": "constant", "warmup": 0.0,
        "eval_every": 10_000, "save_every": 10_000}})
    job = StageJob(stage=stage, base_model=work / "model", data_dir=work / "hf", out_dir=work / "run-datakit", seed=0)
    res = hf_backend.run_stage(job)
    losses = [r["train_loss"] for r in job.metrics.rows() if r.get("train_loss") is not None]
    return {"steps": res.steps, "train_tokens_per_s_reported": res.tokens_per_s, "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None}


def child_trl(work: Path, iters: int) -> dict:
    """What a user writes without datakit: TRL's SFTTrainer with a peft LoraConfig (loss on every token:
    TRL's assistant-only loss needs generation markers a plain ChatML template lacks)."""
    import datasets
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tok = AutoTokenizer.from_pretrained(work / "model")
    model = AutoModelForCausalLM.from_pretrained(work / "model", dtype=torch.bfloat16)
    args = SFTConfig(output_dir=str(work / "run-trl"), max_steps=iters, per_device_train_batch_size=BATCH,
                     learning_rate=LR, lr_scheduler_type="constant", max_length=SEQ, bf16=torch.cuda.is_available(),
                     use_cpu=not torch.cuda.is_available(), logging_steps=10,
                     save_strategy="no", report_to="none", disable_tqdm=True, seed=0)
    lora = LoraConfig(r=LORA["rank"], lora_alpha=LORA["alpha"], lora_dropout=0.0, target_modules="all-linear",
                      task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=datasets.load_from_disk(str(work / "hf"))["train"],
                         processing_class=tok, peft_config=lora)
    out = trainer.train()
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    return {"steps": out.global_step, "train_runtime": out.metrics["train_runtime"], "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None}


def child(name: str, work: Path, iters: int) -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    res = child_datakit(work, iters) if name == "datakit" else child_trl(work, iters)
    res.update(seconds=time.perf_counter() - t, peak_rss_mb=peak_rss_mb(),
               peak_gpu_mb=torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None)
    print(json.dumps(res))


def measure(name: str, work: Path, iters: int, tokens: int) -> dict:
    res = run_child(__file__, name, "--work", str(work), "--iters", str(iters))
    res["tokens"] = tokens
    res["tokens_per_s_end_to_end"] = round(tokens / res["seconds"])  # model load and data prep included
    if "train_runtime" in res:
        res["train_tokens_per_s"] = round(tokens / res["train_runtime"])
    elif res.get("train_tokens_per_s_reported"):
        res["train_tokens_per_s"] = round(res["train_tokens_per_s_reported"])
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in res.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--rows", type=int, default=512)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "train_gpu_bench.json")
    ap.add_argument("--child")
    ap.add_argument("--work", type=Path)
    ap.add_argument("--order", default="trl,datakit", help="contenders in run order (the first pays GPU warm-up)")
    ap.add_argument("--smoke", action="store_true", help="a 2-layer model of the same vocabulary, on any device")
    a = ap.parse_args()
    if a.child:
        child(a.child, a.work, a.iters)
        return
    import torch

    if not torch.cuda.is_available() and not a.smoke:
        raise SystemExit("train_gpu_bench needs a CUDA GPU; benchmarks/train_bench.py is the CPU benchmark")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepare(work, a.rows, SMOKE if a.smoke else QWEN2_05B)
        tokens = trained_tokens(work, a.iters)
        result = {
            "benchmark": "LoRA SFT, Qwen2-0.5B-shaped model, bf16, one GPU", "model": SMOKE if a.smoke else QWEN2_05B,
            "train": {"iters": a.iters, "batch_size": BATCH, "max_seq_len": SEQ, "lr": LR}, "lora": LORA,
            "machine": {"gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "cpus": os.cpu_count(),
                        "python": platform.python_version(), "torch": torch.__version__},
        }
        for name in a.order.split(","):
            result[name] = measure(name, work, a.iters, tokens)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
