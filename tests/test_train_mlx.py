"""The MLX backend on a tiny real Llama: masks, losses, early stopping, resume, chaining, DPO."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("mlx_lm")

import mlx.core as mx  # noqa: E402
import mlx_lm  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

from datakit.errors import DatakitError  # noqa: E402
from datakit.tiny import IM_END, build_llama  # noqa: E402
from datakit.train.job import StageJob  # noqa: E402
from datakit.train.mlx_backend import load_model, prepare_stage, run_stage  # noqa: E402
from datakit.train.mlx_data import encode_chat, eval_batches, masked_loss  # noqa: E402
from datakit.train.recipe import StageSpec  # noqa: E402

QA = [("capital of Korea?", "Seoul."), ("sky color?", "Blue."), ("say hello", "Hello!"), ("sort?", "Stable."),
      ("who are you?", "A helpful assistant."), ("print?", "hello world"), ("weather?", "很好"), ("수도?", "서울")]


def chat(q: str, a: str) -> dict:
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


def write_split(folder: Path, train: list[dict], valid: list[dict] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    if valid:
        (folder / "valid.jsonl").write_text("".join(json.dumps(r) + "\n" for r in valid))
    return folder


def stage(kind: str = "sft", **train) -> StageSpec:
    base = {"iters": 40, "batch_size": 4, "lr": 3e-3, "schedule": "constant", "warmup": 0.0, "eval_every": 10,
            "save_every": 100, "max_seq_len": 128,
            # A random tiny model's frozen lm_head caps its logits; only trainable output rows can fit the data.
            "train_embeddings": True}
    return StageSpec(stage=kind, data="x@1", lora={"rank": 8, "alpha": 16, "dropout": 0.0},
                     train={**base, **train})


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_llama(tmp_path_factory.mktemp("tiny") / "base")


@pytest.fixture(scope="module")
def sft_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = [chat(q, a) for q, a in QA]
    return write_split(tmp_path_factory.mktemp("sft"), rows, rows)


def val_losses(job: StageJob) -> list[tuple[int, float]]:
    return [(r["step"], r["val_loss"]) for r in job.metrics.rows() if "val_loss" in r]


def test_assistant_mask_covers_every_assistant_turn_and_its_end_token_but_no_user_or_system_token(base: Path):
    _, tok = mlx_lm.load(str(base))
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "capital of Korea?"},
            {"role": "assistant", "content": "Seoul."}, {"role": "user", "content": "sky color?"},
            {"role": "assistant", "content": "Blue."}]
    ids, mask = encode_chat(tok, msgs)
    hf = tok._tokenizer
    end = hf.convert_tokens_to_ids(IM_END)
    targets = [i for i, m in zip(ids, mask) if m]
    assert hf.decode(targets, skip_special_tokens=False) == f"Seoul.{IM_END}Blue.{IM_END}"
    ends = [j for j, i in enumerate(ids) if i == end]
    assert [mask[j] for j in ends] == [0, 0, 1, 0, 1]  # system, user, assistant, user, assistant
    # Exactly two contiguous target runs, each ending on an end-of-turn token.
    run_ends = [j for j in range(len(mask)) if mask[j] and (j + 1 == len(mask) or not mask[j + 1])]
    assert run_ends == [ends[2], ends[4]]


def test_sft_loss_goes_down_on_a_memorizable_set_and_the_adapter_loads_in_mlx_lm(base: Path, sft_data: Path, tmp_path: Path):
    job = StageJob(stage=stage(), base_model=base, data_dir=sft_data, out_dir=tmp_path / "run")
    result = run_stage(job)
    vals = val_losses(job)
    print("sft val losses:", vals)
    assert vals[0][0] == 0 and vals[-1][0] == 40 and result.steps == 40
    assert vals[-1][1] < 0.6 * vals[0][1], vals
    assert result.best_val_loss == min(v for _, v in vals) and result.train_tokens > 0
    cfg = json.loads((result.adapter_dir / "adapter_config.json").read_text())
    assert cfg["lora_parameters"]["scale"] == 2.0 and cfg["num_layers"] == 2
    # mlx-lm's loader (plus the saved output rows) reproduces the best validation loss.
    model, _ = load_model(base, result.adapter_dir)
    model.eval()
    pairs = [masked_loss(model, *b) for b in eval_batches(prepare_stage(job)[3], 4, 128)]
    total = sum(loss.item() * n.item() for loss, n in pairs) / sum(n.item() for _, n in pairs)
    assert total == pytest.approx(result.best_val_loss, rel=1e-3)


def test_cpt_loss_goes_down_on_raw_text(base: Path, tmp_path: Path):
    texts = [{"text": f"{q} {a}"} for q, a in QA]
    job = StageJob(stage=stage("cpt", iters=30), base_model=base, data_dir=write_split(tmp_path / "d", texts, texts),
                   out_dir=tmp_path / "run")
    run_stage(job)
    vals = val_losses(job)
    print("cpt val losses:", vals)
    assert vals[-1][1] < 0.6 * vals[0][1], vals


def test_early_stopping_fires_on_rising_validation_loss_and_keeps_the_earliest_best_adapter(base: Path, tmp_path: Path):
    train = [chat(q, a) for q, a in QA]
    valid = [chat(q, QA[(i + 3) % len(QA)][1]) for i, (q, _) in enumerate(QA)]  # same questions, wrong answers
    spec = stage(iters=200, lr=1e-2, eval_every=4, early_stopping={"patience": 2})
    job = StageJob(stage=spec, base_model=base, data_dir=write_split(tmp_path / "d", train, valid),
                   out_dir=tmp_path / "run")
    result = run_stage(job)
    vals = val_losses(job)
    print("early stopping val losses:", vals)
    assert result.stopped_early and result.steps < 200 and result.best_step > 0
    best = min(v for _, v in vals)
    assert result.best_step == next(s for s, v in vals if v == best)  # the earliest step with the minimum
    assert [s for s, _ in vals][-1] == result.best_step + 2 * 4  # patience 2 reports after the best
    best_weights = mx.load(str(job.checkpoint_dir / "best" / "adapters.safetensors"))
    final_weights = mx.load(str(result.adapter_dir / "adapters.safetensors"))
    assert all(mx.array_equal(best_weights[k], final_weights[k]).item() for k in best_weights)


def test_final_adapter_last_hands_on_the_last_weights_not_the_best(base: Path, tmp_path: Path):
    train = [chat(q, a) for q, a in QA]
    valid = [chat(q, QA[(i + 3) % len(QA)][1]) for i, (q, _) in enumerate(QA)]  # validation loss rises
    job = StageJob(stage=stage(iters=12, lr=1e-2, eval_every=4, final_adapter="last"), base_model=base,
                   data_dir=write_split(tmp_path / "d", train, valid), out_dir=tmp_path / "run")
    result = run_stage(job)
    assert result.best_step is not None and result.best_step < result.steps  # a best was found, and not last
    best_weights = mx.load(str(job.checkpoint_dir / "best" / "adapters.safetensors"))
    final_weights = mx.load(str(result.adapter_dir / "adapters.safetensors"))
    assert not all(mx.array_equal(best_weights[k], final_weights[k]).item() for k in best_weights)


def test_resume_after_a_killed_run_continues_from_the_last_checkpoint_with_optimizer_state(base: Path, sft_data: Path,
                                                                                          tmp_path: Path):
    spec6, spec10 = stage(iters=6, save_every=3, keep_last=2), stage(iters=10, save_every=3, keep_last=2)
    train_only = write_split(tmp_path / "d", [chat(q, a) for q, a in QA])
    first = run_stage(StageJob(stage=spec6, base_model=base, data_dir=train_only, out_dir=tmp_path / "run"))
    assert first.resumed_from_step is None and first.extra["optimizer_step"] == 6
    second = run_stage(StageJob(stage=spec10, base_model=base, data_dir=train_only, out_dir=tmp_path / "run"))
    assert second.resumed_from_step == 6 and second.steps == 10
    assert second.extra["optimizer_step"] == 10  # 4 new updates on top of the restored Adam step count
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step-*")) == ["step-0000006", "step-0000009"]
    # Same data order, same Adam moments: identical to a run that was never interrupted.
    straight = run_stage(StageJob(stage=spec10, base_model=base, data_dir=train_only, out_dir=tmp_path / "straight"))
    a = mx.load(str(second.adapter_dir / "adapters.safetensors"))
    b = mx.load(str(straight.adapter_dir / "adapters.safetensors"))
    assert all(mx.allclose(a[k], b[k], atol=1e-5).item() for k in a)


def test_a_chained_stage_starts_from_exactly_the_previous_adapter_and_rejects_another_rank(base: Path, sft_data: Path,
                                                                                         tmp_path: Path):
    first = run_stage(StageJob(stage=stage(iters=5), base_model=base, data_dir=sft_data, out_dir=tmp_path / "one"))
    job = StageJob(stage=stage(iters=5), base_model=base, data_dir=sft_data, out_dir=tmp_path / "two",
                   adapter_in=first.adapter_dir)
    model = prepare_stage(job)[0]
    start = dict(tree_flatten(model.trainable_parameters()))
    saved = {**mx.load(str(first.adapter_dir / "adapters.safetensors")),
             **mx.load(str(first.adapter_dir / "embeddings.safetensors"))}
    assert set(start) == set(saved) and all(mx.array_equal(start[k], saved[k]).item() for k in saved)
    other = stage(iters=5)
    other.lora.rank = 4
    with pytest.raises(DatakitError, match="rank: adapter has 8, this stage has 4"):
        run_stage(StageJob(stage=other, base_model=base, data_dir=sft_data, out_dir=tmp_path / "three",
                           adapter_in=first.adapter_dir))


def test_dpo_increases_the_reward_margin_of_chosen_over_rejected(base: Path, tmp_path: Path):
    bad = ["No.", "I do not know.", "???", "no idea"]
    rows = [{"prompt": [{"role": "user", "content": q}], "chosen": [{"role": "assistant", "content": a}],
             "rejected": [{"role": "assistant", "content": bad[i % 4]}]} for i, (q, a) in enumerate(QA)]
    job = StageJob(stage=stage("dpo", iters=20, lr=1e-3), base_model=base, data_dir=write_split(tmp_path / "d", rows, rows),
                   out_dir=tmp_path / "run")
    result = run_stage(job)
    assert result.extra["reward_margin_start"] == pytest.approx(0.0, abs=1e-4)
    assert result.extra["reward_margin_end"] > 1.0
    vals = val_losses(job)
    print("dpo val losses:", vals, result.extra)
    assert vals[0][1] == pytest.approx(0.6931, abs=1e-3) and vals[-1][1] < vals[0][1]  # log 2 at the start


def test_a_batch_larger_than_the_dataset_is_refused_with_the_numbers(base: Path, tmp_path: Path):
    data = write_split(tmp_path / "d", [chat(q, a) for q, a in QA[:2]])
    with pytest.raises(DatakitError, match="at least batch_size=4 examples but only has 2"):
        run_stage(StageJob(stage=stage(), base_model=base, data_dir=data, out_dir=tmp_path / "run"))


def test_a_validation_split_smaller_than_the_batch_still_validates_every_row(base: Path, tmp_path: Path):
    train = [chat(q, a) for q, a in QA]
    data = write_split(tmp_path / "d", train, train[:3])  # 3 held-out rows, batch_size 4
    job = StageJob(stage=stage(iters=4, eval_every=2), base_model=base, data_dir=data, out_dir=tmp_path / "run")
    run_stage(job)
    vals = val_losses(job)
    assert [s for s, _ in vals] == [0, 2, 4] and all(v > 0 for _, v in vals)


def test_grad_accum_counts_optimizer_steps_not_micro_batches(base: Path, sft_data: Path, tmp_path: Path):
    job = StageJob(stage=stage(iters=4, grad_accum=2, eval_every=2), base_model=base, data_dir=sft_data,
                   out_dir=tmp_path / "run")
    result = run_stage(job)
    assert result.steps == 4 and result.extra["optimizer_step"] == 4
    assert [s for s, _ in val_losses(job)] == [0, 2, 4]


def test_settings_the_mlx_backend_cannot_honour_are_refused_not_ignored(base: Path, sft_data: Path, tmp_path: Path):
    with pytest.raises(DatakitError, match="packing"):
        run_stage(StageJob(stage=stage(packing=True), base_model=base, data_dir=sft_data, out_dir=tmp_path / "a"))
    spec = stage()
    spec.lora.qlora = True
    with pytest.raises(DatakitError, match="not quantized"):
        run_stage(StageJob(stage=spec, base_model=base, data_dir=sft_data, out_dir=tmp_path / "b"))


def test_lora_alone_lowers_sft_loss_on_a_memorizable_set(base, tmp_path):
    """No trainable embeddings: the adapters inside the layers do the learning."""
    rows = [{"messages": [{"role": "user", "content": f"Who makes product {i}?"},
                          {"role": "assistant", "content": f"Acme makes product {i}."}]} for i in range(8)]
    data = write_split(tmp_path / "data", rows * 4, rows)
    job = StageJob(stage=stage(iters=40, train_embeddings=False), base_model=base, data_dir=data, out_dir=tmp_path / "out")
    res = run_stage(job)
    losses = [r["val_loss"] for r in job.metrics.rows() if r.get("val_loss") is not None]
    assert losses[-1] < losses[0] * 0.7 and res.best_val_loss == min(losses)


def test_qlora_trains_adapters_on_a_4bit_quantized_base(base, tmp_path):
    """QLoRA where the hardware allows: mlx quantizes the tiny base to 4 bits locally, LoRA trains on top."""
    from mlx_lm import convert

    quant = tmp_path / "base-4bit"
    convert(str(base), mlx_path=str(quant), quantize=True, q_bits=4, q_group_size=32)
    assert json.loads((quant / "config.json").read_text())["quantization"]["bits"] == 4
    rows = [{"messages": [{"role": "user", "content": f"Who makes product {i}?"},
                          {"role": "assistant", "content": f"Acme makes product {i}."}]} for i in range(8)]
    data = write_split(tmp_path / "data", rows * 4, rows)
    spec = stage(iters=30, train_embeddings=False)
    spec = spec.model_copy(update={"lora": spec.lora.model_copy(update={"qlora": True})})
    job = StageJob(stage=spec, base_model=quant, data_dir=data, out_dir=tmp_path / "out")
    res = run_stage(job)
    losses = [r["val_loss"] for r in job.metrics.rows() if r.get("val_loss") is not None]
    assert res.best_val_loss < losses[0] * 0.7
