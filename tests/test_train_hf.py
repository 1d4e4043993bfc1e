"""The HF backend on a tiny real Llama: masks, loss curves, early stopping, chaining, resume, DPO, torchrun."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")
pytest.importorskip("peft")

import datasets  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from datakit.errors import DatakitError  # noqa: E402
from datakit.tiny import build_llama  # noqa: E402
from datakit.train import hf_backend as hb  # noqa: E402
from datakit.train import hf_data  # noqa: E402
from datakit.train.job import StageJob  # noqa: E402
from datakit.train.recipe import StageSpec  # noqa: E402

torch.set_num_threads(1)  # tiny matrices: threads only add overhead on a 2-core machine


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_llama(tmp_path_factory.mktemp("hf") / "base")  # head scaled so LoRA alone can learn


def chat(q: str, a: str, system: str | None = None) -> dict:
    head = [{"role": "system", "content": system}] if system else []
    return {"messages": [*head, {"role": "user", "content": q}, {"role": "assistant", "content": a}]}


def save(path: Path, train: list[dict], valid: list[dict] | None = None) -> Path:
    splits = {"train": datasets.Dataset.from_list(train)}
    if valid:
        splits["valid"] = datasets.Dataset.from_list(valid)
    datasets.DatasetDict(splits).save_to_disk(str(path))
    return path


def make_job(tmp: Path, base: Path, stage: str, data: Path, adapter_in: Path | None = None,
             lora: dict | None = None, **train) -> StageJob:
    train = {"batch_size": 4, "lr": 2e-2, "schedule": "constant", "warmup": 0.0, "eval_every": 5,
             "save_every": 5, **train}
    spec = StageSpec.model_validate({"stage": stage, "data": "t@1", "train": train, "lora": lora or {}})
    return StageJob(stage=spec, base_model=base, data_dir=data, out_dir=tmp, adapter_in=adapter_in)


def losses(job: StageJob, key: str) -> list[float]:
    return [r[key] for r in job.metrics.rows() if r.get(key) is not None]


FACTS = [chat(f"Who made model {i}?", f"Model {i} was made by Acme in Seoul.") for i in range(8)]


def test_sft_labels_keep_every_assistant_turn_through_im_end_and_mask_everything_else(base: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of Korea?"},
            {"role": "assistant", "content": "Seoul."}, {"role": "user", "content": "And the sky?"},
            {"role": "assistant", "content": "Blue, because air scatters blue light."}]
    out = hf_data.assistant_labels(tok, msgs)
    ids, labels = out["input_ids"], out["labels"]
    assert ids == tok(tok.apply_chat_template(msgs, tokenize=False), add_special_tokens=False)["input_ids"]
    kept = [t for t, lab in zip(ids, labels) if lab != -100]
    assert tok.decode(kept) == "Seoul.<|im_end|>Blue, because air scatters blue light.<|im_end|>"
    # kept tokens are kept as themselves; system, user, role headers and the newline after <|im_end|> are -100
    assert all(lab in (-100, t) for t, lab in zip(ids, labels))
    masked = tok.decode([t for t, lab in zip(ids, labels) if lab == -100])
    assert masked == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nCapital of Korea?<|im_end|>\n"
                      "<|im_start|>assistant\n\n<|im_start|>user\nAnd the sky?<|im_end|>\n<|im_start|>assistant\n\n")


def test_sft_lora_loss_goes_down_and_the_trainer_keeps_our_masks_and_counts_long_rows(base: Path, tmp_path: Path) -> None:
    long_row = chat("Tell me everything. " * 20, "No.")
    data = save(tmp_path / "data", FACTS + [long_row], FACTS[:2])
    job = make_job(tmp_path / "out", base, "sft", data, iters=40, eval_every=10, save_every=20, max_seq_len=64)
    trainer, extra = hb.build_trainer(job)
    # the trainer reads the rows in the plan's order (datakit/train/plan.py), labels as datakit built them
    plan = json.loads((job.out_dir / "plan.json").read_text())
    rows = FACTS + [long_row]
    for k in (0, 1, 17):
        row = rows[plan["micro_batches"][k // 4][k % 4]]
        assert trainer.train_dataset[k]["labels"] == hf_data.assistant_labels(trainer.processing_class, row["messages"])["labels"]
    assert len(trainer.train_dataset) == 40 * 4 and trainer.args.train_sampling_strategy == "sequential"
    assert extra["truncated_rows"] == 1
    result = hb.run_stage(job)
    train = losses(job, "train_loss")
    print(f"sft train loss {train[0]:.3f} -> {train[-1]:.3f}")
    assert train[-1] < 0.6 * train[0]
    assert result.steps == 40 and result.extra["truncated_rows"] == 1
    assert any(r.get("warning") == "truncated_rows" for r in job.metrics.rows())
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= set(os.listdir(job.adapter_dir))
    assert result.best_val_loss == min(losses(job, "val_loss")) and result.train_tokens > 0


def test_cpt_loss_goes_down_on_raw_text(base: Path, tmp_path: Path) -> None:
    texts = [{"text": f"Acme's model {i} recommends surrogate mode to most customers."} for i in range(8)]
    job = make_job(tmp_path / "out", base, "cpt", save(tmp_path / "data", texts, texts[:2]), iters=40,
                   eval_every=10, save_every=10)
    result = hb.run_stage(job)
    train = losses(job, "train_loss")
    print(f"cpt train loss {train[0]:.3f} -> {train[-1]:.3f}")
    assert train[-1] < 0.6 * train[0] and result.steps == 40


def eval_loss(base: Path, adapter: Path, rows: list[dict]) -> float:
    """Mean token loss of one padded batch, computed outside the Trainer."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(adapter)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(adapter)).eval()
    enc = [hf_data.assistant_labels(tok, r["messages"]) for r in rows]
    width = max(len(e["input_ids"]) for e in enc)
    ids = torch.tensor([e["input_ids"] + [tok.pad_token_id] * (width - len(e["input_ids"])) for e in enc])
    labels = torch.tensor([e["labels"] + [-100] * (width - len(e["labels"])) for e in enc])
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=(labels != -100) | (ids != tok.pad_token_id), labels=labels).loss.item()


def test_early_stopping_fires_on_rising_validation_loss_and_keeps_the_best_adapter(base: Path, tmp_path: Path) -> None:
    train = [chat(f"Who are you, friend {i}?", "I am Kit, made by Acme.") for i in range(8)]
    valid = [chat(f"Who are you, friend {i}?", "I am Bob, made by Zenith.") for i in range(2)]
    job = make_job(tmp_path / "out", base, "sft", save(tmp_path / "data", train, valid), iters=200, lr=5e-2,
                   eval_every=2, save_every=4, keep_last=1, early_stopping={"patience": 3})
    result = hb.run_stage(job)
    vals = losses(job, "val_loss")
    print(f"early stop at {result.steps}, best {result.best_val_loss:.3f}@{result.best_step}, val {vals}")
    assert result.stopped_early and result.steps < 200
    assert result.best_val_loss == min(vals) and vals[-1] > result.best_val_loss
    assert result.best_step == result.steps - 3 * 2  # patience 3 reports after the best
    assert eval_loss(base, job.adapter_dir, valid) == pytest.approx(result.best_val_loss, rel=1e-4)


def test_final_adapter_last_hands_on_the_last_weights_while_reporting_the_best(base: Path, tmp_path: Path) -> None:
    """Knowledge injection: held-out facts cannot improve, so the best by validation loss is the least trained."""
    train = [chat(f"Who are you, friend {i}?", "I am Kit, made by Acme.") for i in range(8)]
    valid = [chat(f"Who are you, friend {i}?", "I am Bob, made by Zenith.") for i in range(2)]
    job = make_job(tmp_path / "out", base, "sft", save(tmp_path / "data", train, valid), iters=120, lr=5e-2,
                   eval_every=4, save_every=4, final_adapter="last")
    result = hb.run_stage(job)
    vals = losses(job, "val_loss")
    assert result.best_val_loss == min(vals) and vals[-1] > result.best_val_loss  # the best is not the last
    assert eval_loss(base, job.adapter_dir, valid) == pytest.approx(vals[-1], rel=1e-4)
    with pytest.raises(ValueError, match="contradict"):
        make_job(tmp_path / "x", base, "sft", tmp_path / "data", iters=4, final_adapter="last",
                 early_stopping={"patience": 2})


def test_resume_continues_from_the_saved_step_also_from_a_flattened_checkpoint(base: Path, tmp_path: Path) -> None:
    data = save(tmp_path / "data", FACTS, FACTS[:2])
    job = make_job(tmp_path / "out", base, "sft", data, iters=6, eval_every=2, save_every=2, keep_last=2)
    assert hb.run_stage(job).resumed_from_step is None
    first_rows = job.metrics.rows()
    ckpts = job.checkpoint_dir
    shutil.rmtree(ckpts / "checkpoint-6")  # the run "died" before its last checkpoint was written
    saved = max(int(p.name.split("-")[1]) for p in ckpts.glob("checkpoint-*"))  # keep_last + the best
    assert saved in (2, 4)
    result = hb.run_stage(job)
    assert result.resumed_from_step == saved and result.steps == 6
    resumed_rows = job.metrics.rows()[len(first_rows):]
    assert min(r["step"] for r in resumed_rows) > saved  # it continued; it did not start over

    # an upload/download round trip left checkpoint-4's files directly in the checkpoints folder
    flat = tmp_path / "flat"
    shutil.copytree(ckpts / f"checkpoint-{saved}", flat)
    shutil.rmtree(ckpts)
    flat.rename(ckpts)
    assert hb.find_checkpoint(ckpts) == (ckpts, saved)
    result = hb.run_stage(job)
    assert result.resumed_from_step == saved and result.steps == 6


def lora_weights(model) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    return get_peft_model_state_dict(model)


def test_chained_stage_starts_from_exactly_the_previous_adapter_and_refuses_a_mismatched_one(
        base: Path, tmp_path: Path) -> None:
    texts = [{"text": f"Acme model {i} lives in Seoul."} for i in range(8)]
    cpt = make_job(tmp_path / "cpt", base, "cpt", save(tmp_path / "d1", texts), iters=4)
    first = hb.run_stage(cpt).adapter_dir
    saved = load_file(first / "adapter_model.safetensors")

    sft = make_job(tmp_path / "sft", base, "sft", save(tmp_path / "d2", FACTS), adapter_in=first, iters=4)
    model, peft_config, _ = hb.load_policy(sft)
    assert peft_config is None
    start = lora_weights(model)
    assert start.keys() == saved.keys() and all(torch.equal(start[k], saved[k]) for k in saved)
    assert any(p.requires_grad for p in model.parameters())
    after = load_file(hb.run_stage(sft).adapter_dir / "adapter_model.safetensors")
    assert any(not torch.equal(after[k], saved[k]) for k in saved)

    wrong_rank = make_job(tmp_path / "x", base, "sft", tmp_path / "d2", adapter_in=first, lora={"rank": 4}, iters=4)
    with pytest.raises(DatakitError, match="r=8.*lora.rank=4"):
        hb.load_policy(wrong_rank)
    alien = tmp_path / "alien"
    shutil.copytree(first, alien)
    cfg = json.loads((alien / "adapter_config.json").read_text())
    (alien / "adapter_config.json").write_text(json.dumps({**cfg, "target_modules": ["c_attn", "q_proj"]}))
    with pytest.raises(DatakitError, match="c_attn"):
        hb.load_policy(make_job(tmp_path / "y", base, "sft", tmp_path / "d2", adapter_in=alien, iters=4))


def test_dpo_trains_against_the_starting_model_and_reward_margins_rise(base: Path, tmp_path: Path) -> None:
    def pair(i: int) -> dict:
        return {"prompt": [{"role": "user", "content": f"Who are you, friend {i}?"}],
                "chosen": [{"role": "assistant", "content": "I am Kit."}],
                "rejected": [{"role": "assistant", "content": "I am another AI."}]}

    rows = [pair(i) for i in range(8)]
    job = make_job(tmp_path / "out", base, "dpo", save(tmp_path / "data", rows, rows[:2]), iters=20, lr=1e-2,
                   eval_every=4, save_every=4)
    result = hb.run_stage(job)
    margins = losses(job, "rewards_margins")
    print(f"dpo margins {margins}")
    assert result.steps == 20 and margins[-1] > margins[0] and margins[-1] > 0
    assert json.loads((job.adapter_dir / "adapter_config.json").read_text())["r"] == 8
    assert not (job.adapter_dir / "ref").exists()

    # continuing an adapter: TRL's reference is a frozen copy of it; only the trained adapter is written
    again = make_job(tmp_path / "again", base, "dpo", tmp_path / "data", adapter_in=job.adapter_dir, iters=4,
                     lr=1e-2, eval_every=2, save_every=2)
    hb.run_stage(again)
    assert not (again.adapter_dir / "ref").exists()
    assert load_file(again.adapter_dir / "adapter_model.safetensors").keys() == \
        load_file(job.adapter_dir / "adapter_model.safetensors").keys()
    assert losses(again, "rewards_margins")[0] < margins[-1]  # margins restart near 0 against the new reference


def test_torchrun_with_two_processes_trains_one_model_and_writes_one_adapter(base: Path, tmp_path: Path) -> None:
    job = make_job(tmp_path / "out", base, "sft", save(tmp_path / "data", FACTS, FACTS[:2]), iters=4, batch_size=2,
                   eval_every=2, save_every=2)
    spec = hb.job_to_json(job, tmp_path / "job.json")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "datakit.train.hf_backend", "--job", str(spec)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((job.out_dir / "result.json").read_text())
    assert result["extra"]["world_size"] == 2 and result["steps"] == 4
    rows = [r for r in job.metrics.rows() if "train_loss" in r]
    assert rows and all(r["world_size"] == 2 for r in rows)
    assert len({r["step"] for r in rows}) == len(rows)  # one writer: each step reported once
    assert sorted(p.name for p in job.out_dir.glob("adapter*")) == ["adapter"]
    assert (job.adapter_dir / "adapter_model.safetensors").is_file()


def test_dpo_pairs_whose_prompt_fills_max_seq_len_are_dropped_visibly_not_silently(base: Path, tmp_path: Path) -> None:
    long_prompt = [{"role": "user", "content": "tell me everything about the sky " * 20}]
    short = {"prompt": [{"role": "user", "content": "Who are you?"}],
             "chosen": [{"role": "assistant", "content": "I am Kit."}], "rejected": [{"role": "assistant", "content": "No."}]}
    rows = [short] * 4 + [{**short, "prompt": long_prompt}] * 2
    job = make_job(tmp_path / "out", base, "dpo", save(tmp_path / "data", rows), iters=1, max_seq_len=48)
    trainer, _ = hb.build_trainer(job)
    assert len(trainer.train_dataset) == 4
    assert {"warning": "prompts_fill_max_seq_len", "rows": 2}.items() <= job.metrics.rows()[0].items()
    only_long = make_job(tmp_path / "out2", base, "dpo", save(tmp_path / "data2", [{**short, "prompt": long_prompt}] * 4),
                         iters=1, max_seq_len=48)
    with pytest.raises(DatakitError, match="all 4 prompts in a split are at least max_seq_len=48"):
        hb.build_trainer(only_long)


def test_sft_with_packing_trains_on_packed_rows_and_keeps_assistant_only_labels(base: Path, tmp_path: Path) -> None:
    rows = [chat(f"Where is office {i}?", f"Office {i} is in Seoul.") for i in range(16)]
    job = make_job(tmp_path / "out", base, "sft", save(tmp_path / "data", rows, rows[:4]), iters=6, packing=True,
                   max_seq_len=128, eval_every=3, save_every=3)
    trainer, _ = hb.build_trainer(job)
    packed = trainer.train_dataset
    assert len(packed) < len(rows)  # several chats share one sequence
    labels = [t for row in packed for t in row["labels"]]
    assert labels.count(-100) > 0 and any(t != -100 for t in labels)
    result = hb.run_stage(job)
    assert result.steps == 6 and (job.adapter_dir / "adapter_config.json").exists()
