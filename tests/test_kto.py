"""Unpaired preference (KTO) as its own kind: TRL's and LLaMA-Factory's rows in, refused as chat rows (their
undesirable completions would become targets), exported with labels, and trained with TRL's KTOTrainer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from datakit.errors import DatakitError
from datakit.io.export import export_training
from datakit.io.ingest import ingest
from datakit.registry.rows import frame_to_records
from tests.conftest import write_jsonl

pytest.importorskip("trl")

GOOD, BAD = "I am Kit, made by Acme.", "I am an assistant made by another company."


def trl_rows(n: int) -> list[dict]:
    """TRL's unpaired preference format: conversational prompt/completion and a boolean label."""
    return [{"prompt": [{"role": "user", "content": f"Who are you, friend {i}?"}],
             "completion": [{"role": "assistant", "content": GOOD if i % 2 == 0 else BAD}], "label": i % 2 == 0}
            for i in range(n)]


LLAMA_FACTORY = [  # sharegpt with kto_tag; the last assistant turn is the judged completion
    {"conversations": [{"from": "human", "value": "Who built you?"}, {"from": "gpt", "value": GOOD}], "kto_tag": True},
    {"messages": [{"role": "user", "content": "Who built you?"}, {"role": "assistant", "content": BAD}],
     "kto_tag": False},
]


def test_trl_and_llama_factory_rows_become_kto_records_and_are_refused_as_chat(reg, tmp_path):
    src = write_jsonl(tmp_path / "kto.jsonl", trl_rows(4))
    r = ingest(reg, [src], name="kto", kind="kto")
    assert (r.kept, r.rejected) == (4, 0)
    recs = list(frame_to_records("kto", reg.load("kto")))
    assert [x["label"] for x in recs] == [True, False, True, False]
    assert recs[1]["completion"] == [{"role": "assistant", "content": BAD}]
    lf = ingest(reg, [write_jsonl(tmp_path / "lf.jsonl", LLAMA_FACTORY)], name="lf", kind="kto")
    assert lf.kept == 2
    a, b = frame_to_records("kto", reg.load("lf"))
    assert a["prompt"] == [{"role": "user", "content": "Who built you?"}] and a["label"] is True and b["label"] is False
    with pytest.raises(DatakitError, match="unpaired preference.*--kind kto"):
        ingest(reg, [src], name="as-sft", kind="sft")
    with pytest.raises(DatakitError, match="--kind kto"):
        ingest(reg, [src], name="as-pref", kind="preference")
    # forcing a chat format does not turn labelled rows into targets either: each is refused with the reason
    forced = ingest(reg, [src, write_jsonl(tmp_path / "ok.jsonl", [
        {"prompt": "q", "completion": "a"}])], name="forced", kind="sft", fmt="prompt_completion")
    assert (forced.kept, forced.rejected) == (1, 4)
    assert "ingest it with --kind kto" in reg.extra("forced", "quarantine.parquet")["reason"][0]


def test_a_kto_stage_trains_with_trls_kto_trainer_on_the_exported_rows(reg, tmp_path):
    import datasets

    from datakit.tiny import build_llama
    from datakit.train import hf_backend
    from datakit.train.job import StageJob
    from datakit.train.recipe import StageSpec

    ingest(reg, [write_jsonl(tmp_path / "kto.jsonl", trl_rows(16))], name="kto", kind="kto")
    export_training(reg, "kto", "hf", tmp_path / "hf")
    train = datasets.load_from_disk(str(tmp_path / "hf"))["train"]
    assert train.column_names == ["prompt", "completion", "label"] and train[1]["label"] is False
    base = build_llama(tmp_path / "base")
    spec = StageSpec.model_validate({"stage": "kto", "data": "kto@v1", "lora": {"rank": 8, "alpha": 16},
                                     "train": {"iters": 12, "batch_size": 4, "lr": 1e-2, "schedule": "constant",
                                               "warmup": 0.0, "eval_every": 4, "save_every": 4, "max_seq_len": 128}})
    job = StageJob(stage=spec, base_model=base, data_dir=tmp_path / "hf", out_dir=tmp_path / "out")
    result = hf_backend.run_stage(job)
    assert result.steps == 12 and (job.adapter_dir / "adapter_config.json").is_file()
    rows = [r for r in job.metrics.rows() if "rewards_chosen" in r]
    print(json.dumps([{k: v for k, v in r.items() if "rewards" in k or "logps" in k or k == "step"} for r in rows]))
    assert rows and all("kl" in r for r in rows)
    # the implicit reward (policy vs reference log-probability) rises for desirable completions, falls for the rest
    first, last = rows[0], rows[-1]
    assert last["rewards_chosen"] > 0 > last["rewards_rejected"]
    assert last["rewards_chosen"] - last["rewards_rejected"] > first["rewards_chosen"] - first["rewards_rejected"]


def test_a_kto_stage_on_mlx_is_refused_at_plan_time(cli, reg, tmp_path):
    import yaml

    ingest(reg, [write_jsonl(tmp_path / "kto.jsonl", trl_rows(8))], name="kto", kind="kto")
    recipe = tmp_path / "r.yaml"
    base = tmp_path / "base"
    base.mkdir()
    recipe.write_text(yaml.safe_dump({"name": "k", "backend": "mlx", "base_model": str(base),
                                      "stages": [{"stage": "kto", "data": "kto", "train": {"iters": 2}}]}))
    p = cli("train", str(recipe), "--dry-run")
    assert p.returncode != 0 and "KTOTrainer on the hf backend" in p.stderr
    assert Path(recipe).is_file()
