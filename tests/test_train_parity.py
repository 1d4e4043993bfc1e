"""One recipe, two backends, the same model: MLX and Hugging Face start from the same weights (one LoRA init,
converted), follow the same plan (batches, order, clipping, accumulation, per-token loss), and end with the same
adapter. Real mlx-lm and real TRL on a tiny Llama."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import chat

pytest.importorskip("mlx_lm")

ROWS = [chat(f"What is fact number {i}?", "Fact " + " ".join(["number"] * (1 + i % 5)) + f" {i} is true.")
        for i in range(14)]


@pytest.fixture(scope="module", params=["lora", "dora-rslora"])
def setup(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """A tiny base, the same rows exported for both backends, and one adapter init in both formats."""
    import datasets

    from datakit.tiny import build_llama
    from datakit.train.adapters import shared_init

    tmp = tmp_path_factory.mktemp("parity")
    method = {"lora": {}, "dora-rslora": {"method": "dora", "rslora": True}}[request.param]
    base = build_llama(tmp / "base", layers=2, hidden=64)
    (tmp / "mlx-data").mkdir()
    (tmp / "mlx-data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS)}).save_to_disk(str(tmp / "hf-data"))
    shared_init(base, stage(**method), tmp / "init-hf", tmp / "init-mlx", b_std=0.02)
    return base, tmp / "mlx-data", tmp / "hf-data", tmp / "init-hf", tmp / "init-mlx", method


def stage(method: str = "lora", rslora: bool = False, **train):
    from datakit.train.recipe import StageSpec

    return StageSpec.model_validate({
        "stage": "sft", "data": "x@1", "method": method, "lora": {"rank": 4, "alpha": 8, "dropout": 0.0, "rslora": rslora},
        "train": {"iters": 10, "batch_size": 2, "grad_accum": 2, "lr": 3e-3, "schedule": "constant", "warmup": 0.0,
                  "max_seq_len": 128, "eval_every": 1, "save_every": 100, **train}})


def losses(out: Path) -> dict[int, float]:
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["train_loss"] for r in rows if "train_loss" in r}


def test_both_backends_follow_one_plan_and_learn_the_same_adapter(setup, tmp_path):
    from datakit.train import hf_backend, mlx_backend
    from datakit.train.adapters import lora_cosine, read_lora
    from datakit.train.job import StageJob
    from datakit.train.plan import read_plan

    base, mlx_data, hf_data, init_hf, init_mlx, method = setup
    spec = stage(**method)
    hf = hf_backend.run_stage(StageJob(stage=spec, base_model=base, data_dir=hf_data, out_dir=tmp_path / "hf",
                                       adapter_in=init_hf))
    mlx = mlx_backend.run_stage(StageJob(stage=spec, base_model=base, data_dir=mlx_data, out_dir=tmp_path / "mlx",
                                         adapter_in=init_mlx))
    plan_hf, plan_mlx = read_plan(tmp_path / "hf" / "plan.json"), read_plan(tmp_path / "mlx" / "plan.json")
    assert plan_hf == plan_mlx and plan_hf.steps == 10 and len(plan_hf.micro_batches) == 20
    assert sorted(plan_hf.row_stream[:14]) == list(range(14))  # every row once in the first epoch, none dropped
    lh, lm = losses(tmp_path / "hf"), losses(tmp_path / "mlx")
    print("step  hf      mlx")
    for s in sorted(lh):
        print(f"{s:4d}  {lh[s]:.4f}  {lm.get(s, float('nan')):.4f}")
    assert sorted(lh) == sorted(lm) == list(range(1, 11))
    for s in lh:
        assert lm[s] == pytest.approx(lh[s], rel=2e-3, abs=2e-3), s
    assert lh[10] < lh[1]  # and it learned something
    start, a, b = read_lora(init_hf), read_lora(hf.adapter_dir), read_lora(mlx.adapter_dir)
    moved = lora_cosine(a, b, start)
    print(f"cosine of how far the two adapters moved from their shared start: {moved:.5f}")
    assert moved > 0.99 and lora_cosine(start, a) < 0.9999  # the same place, and not where they started
    assert all((p[2] is not None) == (spec.method == "dora") for p in a.values())


def test_mlx_clips_the_global_gradient_norm_like_torch_and_hf_is_told_the_same_limit(setup):
    import mlx.core as mx
    import mlx.nn as nn
    import mlx.optimizers as optim
    import torch
    from mlx.utils import tree_flatten, tree_map

    from datakit.train.hf_backend import trainer_args
    from datakit.train.job import StageJob
    from datakit.train.mlx_backend import ClippedOptimizer

    layer = nn.Linear(4, 3)
    before = {k: np.array(v) for k, v in tree_flatten(layer.parameters())}
    grads = tree_map(lambda p: mx.full(p.shape, 2.0), layer.parameters())  # global norm 2 * sqrt(15)
    opt = ClippedOptimizer(optim.SGD(learning_rate=1.0), 1.0)
    opt.update(layer, grads)
    step = np.concatenate([(before[k] - np.array(v)).ravel() for k, v in tree_flatten(layer.parameters())])
    # torch's rule on the same gradients
    tg = [torch.full(v.shape, 2.0, requires_grad=False) for v in before.values()]
    ps = [torch.zeros(v.shape, requires_grad=True) for v in before.values()]
    for p, g in zip(ps, tg):
        p.grad = g
    torch.nn.utils.clip_grad_norm_(ps, 1.0)
    assert np.linalg.norm(step) == pytest.approx(1.0, rel=1e-4)
    assert np.linalg.norm(step) == pytest.approx(float(torch.cat([p.grad.ravel() for p in ps]).norm()), rel=1e-4)
    base, _, hf_data, *_ = setup
    args = trainer_args(StageJob(stage=stage(max_grad_norm=0.5), base_model=base, data_dir=hf_data,
                                 out_dir=base.parent / "args"), has_valid=False, steps=10)
    assert args.max_grad_norm == 0.5 and args.train_sampling_strategy == "sequential" and args.max_steps == 10


def test_a_chained_stage_refuses_an_adapter_of_another_method_on_either_backend(setup):
    from transformers import AutoModelForCausalLM

    from datakit.errors import DatakitError
    from datakit.train.hf_backend import check_adapter
    from datakit.train.job import StageJob
    from datakit.train.mlx_checkpoint import adapter_config, check_compatible

    base, _, hf_data, init_hf, init_mlx, method = setup
    other = stage(**({} if method else {"method": "dora", "rslora": True}))  # the opposite of the init's method
    job = StageJob(stage=other, base_model=base, data_dir=hf_data, out_dir=base.parent / "chain")
    with pytest.raises(DatakitError, match="use_dora is"):
        check_adapter(init_hf, AutoModelForCausalLM.from_pretrained(base), job)
    keys = json.loads((init_mlx / "adapter_config.json").read_text())["lora_parameters"]["keys"]
    with pytest.raises(DatakitError, match="fine_tune_type"):
        check_compatible(init_mlx, adapter_config(other.lora, num_layers=2, keys=keys, method=other.method))


def test_full_fine_tuning_agrees_across_backends_and_writes_a_model_both_load(tmp_path):
    """method: full trains every weight; each backend writes model/ (weights, config, tokenizer) that
    transformers loads, and the two end in the same place."""
    import datasets
    from safetensors.numpy import load_file
    from transformers import AutoModelForCausalLM

    from datakit.tiny import build_llama
    from datakit.train import hf_backend, mlx_backend
    from datakit.train.job import StageJob

    base = build_llama(tmp_path / "base", layers=2, hidden=64)
    (tmp_path / "mlx-data").mkdir()
    (tmp_path / "mlx-data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS)}).save_to_disk(str(tmp_path / "hf-data"))
    spec = stage(method="full", iters=6, lr=1e-3)
    hf = hf_backend.run_stage(StageJob(stage=spec, base_model=base, data_dir=tmp_path / "hf-data", out_dir=tmp_path / "hf"))
    mlx = mlx_backend.run_stage(StageJob(stage=spec, base_model=base, data_dir=tmp_path / "mlx-data",
                                         out_dir=tmp_path / "mlx"))
    assert hf.adapter_dir.name == mlx.adapter_dir.name == "model"
    lh, lm = losses(tmp_path / "hf"), losses(tmp_path / "mlx")
    print("full:", [(s, round(lh[s], 4), round(lm[s], 4)) for s in sorted(lh)])
    assert sorted(lh) == sorted(lm) == list(range(1, 7))
    assert all(lm[s] == pytest.approx(lh[s], rel=5e-3, abs=5e-3) for s in lh)
    w0 = load_file(str(base / "model.safetensors"))
    wh, wm = load_file(str(hf.adapter_dir / "model.safetensors")), load_file(str(mlx.adapter_dir / "model.safetensors"))
    shared = sorted(set(w0) & set(wh) & set(wm))
    assert len(shared) == len(w0)
    dh = np.concatenate([(wh[k].astype(np.float32) - w0[k]).ravel() for k in shared])
    dm = np.concatenate([(wm[k].astype(np.float32) - w0[k]).ravel() for k in shared])
    cos = float(dh @ dm / (np.linalg.norm(dh) * np.linalg.norm(dm)))
    print(f"cosine of the two full updates: {cos:.5f}")
    assert cos > 0.99 and np.linalg.norm(dh) > 0
    for folder in (hf.adapter_dir, mlx.adapter_dir):  # both are model folders transformers loads
        m = AutoModelForCausalLM.from_pretrained(folder)
        assert (folder / "tokenizer.json").is_file() and m.config.num_hidden_layers == 2
