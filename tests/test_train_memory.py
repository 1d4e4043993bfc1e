"""Will it fit? The dry run's memory estimate against peaks measured on real mlx-lm and TRL runs, and the
advice it gives when a stage does not fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from datakit.tiny import build_llama
from tests.test_train_e2e import TRAIN, recipe, split_version

pytest.importorskip("mlx_lm")

# shapes the calibration (benchmarks/memory_calibration.py, seed 0) never measured
CASES = [
    {"backend": "hf", "method": "lora", "hidden": 160, "layers": 3, "intermediate": 448, "batch_size": 2,
     "max_seq_len": 320},
    {"backend": "mlx", "method": "lora", "hidden": 160, "layers": 3, "intermediate": 448, "batch_size": 2,
     "max_seq_len": 320},
    {"backend": "hf", "method": "full", "hidden": 224, "layers": 2, "intermediate": 608, "embedding_rows": 6000,
     "batch_size": 3, "max_seq_len": 192},
    {"backend": "mlx", "method": "full", "hidden": 224, "layers": 2, "intermediate": 608, "embedding_rows": 6000,
     "batch_size": 3, "max_seq_len": 192},
    {"backend": "hf", "method": "dora", "hidden": 96, "layers": 4, "intermediate": 256, "embedding_rows": 3000,
     "batch_size": 1, "max_seq_len": 448, "gradient_checkpointing": True},
    {"backend": "mlx", "method": "dora", "hidden": 96, "layers": 4, "intermediate": 256, "embedding_rows": 3000,
     "batch_size": 1, "max_seq_len": 448, "gradient_checkpointing": True},
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['backend']}-{c['method']}-h{c['hidden']}")
def test_the_estimate_is_within_a_quarter_of_the_measured_peak(case, tmp_path_factory):
    from datakit.train.memory_probe import ProbeCase, probe_stage

    r = probe_stage(ProbeCase.model_validate(case), tmp_path_factory.mktemp("probe"))
    err = (r["estimate"] - r["measured"]) / r["measured"]
    print(f"{case['backend']} {case['method']}: measured {r['measured'] / 2**20:.1f} MiB, "
          f"estimated {r['estimate'] / 2**20:.1f} MiB ({err:+.1%}) parts {r['parts']}")
    assert r["measured"] > r["parts"]["weights"]  # the probe saw the training step, not just the weights
    assert abs(err) <= 0.25


def test_model_shape_reads_sizes_from_the_weight_headers(tmp_path):
    from datakit.train.memory import model_shape

    base = build_llama(tmp_path / "m", layers=3, hidden=64, intermediate=160, embedding_rows=1000)
    shape = model_shape(base)
    assert (shape.layers, shape.hidden, shape.intermediate, shape.vocab) == (3, 64, 160, 1000)
    assert shape.linear_shapes["gate_proj"] == (64, 160) and shape.linear_shapes["k_proj"] == (64, 32)
    assert shape.weight_bytes == 4 * shape.params and shape.stored_dtype == "F32"
    # the file holds the header plus exactly these bytes
    size = sum(f.stat().st_size for f in base.glob("*.safetensors"))
    assert 0 < size - shape.weight_bytes < 64 * 1024


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_llama(tmp_path_factory.mktemp("tiny") / "model")


def test_dry_run_prints_each_stage_estimate_and_what_to_change(cli, reg, tmp_path, tiny, external):
    sft = split_version(reg, external / "identity.json", "idn", "sft")
    train = {**TRAIN, "batch_size": 8, "max_seq_len": 256}
    stages = [{"stage": "sft", "data": sft, "method": "full", "train": train}]
    path = recipe(tmp_path, tiny, "hf", stages)
    # this machine: tens of MiB against GiBs free
    ok = cli("train", str(path), "--dry-run", "--json", check_json=True)
    mem = ok.json["plan"]["stages"][0]["memory"]
    assert ok.returncode == 0 and mem["device"] == "cpu" and mem["fits"] is True and mem["free_bytes"] > 2**30
    assert set(mem["parts"]) >= {"weights", "gradients", "optimizer", "activations"}
    assert mem["total_bytes"] == sum(mem["parts"].values())
    # planning for a GPU that holds half the batch but not the whole one
    from datakit.train.memory import estimate, model_shape
    from datakit.train.recipe import StageSpec

    spec = StageSpec.model_validate(stages[0])
    whole = estimate(model_shape(tiny), spec, "hf", "cuda").total_bytes
    half = estimate(model_shape(tiny), spec, "hf", "cuda", batch_size=4).total_bytes
    assert half < whole
    gb = str((whole + half) / 2 / 2**30)
    small = cli("train", str(path), "--dry-run", "--device", "cuda", "--memory-gb", gb)
    assert small.returncode == 0, small.stderr
    text = " ".join(small.stdout.split())
    assert "does NOT fit" in text and ", gradient checkpointing" in text  # on for hf on a GPU
    assert "train.batch_size: 4 with train.grad_accum: 2 (same effective batch)" in text
    js = cli("train", str(path), "--dry-run", "--device", "cuda", "--memory-gb", gb, "--json", check_json=True)
    m = js.json["plan"]["stages"][0]["memory"]
    assert m["fits"] is False and m["total_bytes"] == whole and m["device"] == "cuda" and m["gradient_checkpointing"]
    assert m["parts"]["weights"] == ok.json["plan"]["stages"][0]["memory"]["parts"]["weights"] // 2  # bf16 on a GPU
    bad = cli("train", str(path), "--dry-run", "--device", "tpu")
    assert bad.returncode != 0 and "cuda, gpu" in bad.stderr


def test_qlora_on_hf_without_a_gpu_is_refused_with_the_fix(tmp_path, tiny):
    from datakit.errors import DatakitError
    from datakit.train.hf_backend import load_policy
    from datakit.train.job import StageJob
    from datakit.train.recipe import StageSpec

    spec = StageSpec.model_validate({"stage": "sft", "data": "x@1", "lora": {"qlora": True}, "train": TRAIN})
    with pytest.raises(DatakitError, match="bitsandbytes on a CUDA GPU.*lora.qlora: false"):
        load_policy(StageJob(stage=spec, base_model=tiny, data_dir=tmp_path, out_dir=tmp_path / "o"))
    json.dumps(spec.model_dump())  # the spec itself stays valid: the refusal is the backend's
