"""`datakit train` end to end on tiny real models: registry data -> run folder with lineage, on both backends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from datakit.io.ingest import ingest
from datakit.ops import runner as ops
from datakit.ops.split import split
from datakit.tiny import build_llama
from tests.conftest import write_jsonl


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_llama(tmp_path_factory.mktemp("tiny") / "model")


def split_version(reg, src: Path, name: str, kind: str, **kw) -> str:
    ingest(reg, [src], name=name, kind=kind, **kw)
    inp = ops.load(reg, [name])[0]
    m, _ = ops.commit(reg, name=f"{name}-split", kind=kind, inputs=[inp[0]], op="split", params={},
                      out=split(inp, valid=0.2, seed=1))
    return m.ref


def recipe(tmp_path: Path, tiny: Path, backend: str, stages: list[dict]) -> Path:
    p = tmp_path / f"{backend}.yaml"
    p.write_text(yaml.safe_dump({"name": f"e2e-{backend}", "backend": backend, "base_model": str(tiny), "seed": 3,
                                 "output_dir": str(tmp_path / "runs"), "stages": stages}))
    return p


TRAIN = {"iters": 4, "batch_size": 2, "lr": 1e-3, "max_seq_len": 128, "eval_every": 2, "save_every": 2}


def test_mlx_cpt_then_sft_run_folder_holds_lineage_and_chained_adapters(cli, reg, tmp_path, tiny, external):
    docs = [{"text": json.loads(x)["text"][:400]} for x in (external / "c4_demo.jsonl").read_text().splitlines()[:30]]
    cpt = split_version(reg, write_jsonl(tmp_path / "c4.jsonl", docs), "c4", "cpt")
    sft = split_version(reg, external / "identity.json", "idn", "sft")
    stages = [{"stage": "cpt", "data": cpt, "lora": {"rank": 4, "alpha": 8}, "train": TRAIN},
              {"stage": "sft", "data": sft, "lora": {"rank": 4, "alpha": 8}, "train": TRAIN}]
    p = cli("train", str(recipe(tmp_path, tiny, "mlx", stages)), "--json", check_json=True)
    assert p.returncode == 0, p.stderr[-3000:]
    run_dir = Path(p.json["plan"]["run_dir"])
    lineage = json.loads((run_dir / "lineage.json").read_text())
    assert [d["ref"] for d in lineage["data"]] == [cpt, sft]
    assert lineage["data"][0]["content_hash"] == reg.resolve(cpt).content_hash
    assert lineage["versions"]["mlx-lm"] != "missing" and lineage["base_model"]["fingerprint"]["config.json"]
    assert yaml.safe_load((run_dir / "recipe.yaml").read_text())["stages"][0]["data"] == cpt
    cpt_dir, sft_dir = run_dir / "1-cpt", run_dir / "2-sft"
    for d in (cpt_dir, sft_dir):
        assert (d / "adapter" / "adapters.safetensors").exists() and (d / "metrics.jsonl").exists()
        assert json.loads((d / "preflight.json").read_text()).get("ok", True) is not False
    assert p.json["plan"]["stages"][1]["adapter_in"] == str(cpt_dir / "adapter")
    stop = json.loads((sft_dir / "result.json").read_text())["stop_check"]
    assert stop["prompts"] > 0 and stop["stop_token"] == "<|im_end|>"


def test_hf_sft_run_writes_a_peft_adapter_and_metrics(cli, reg, tmp_path, tiny, external):
    sft = split_version(reg, external / "identity.json", "idn", "sft")
    stages = [{"stage": "sft", "data": sft, "lora": {"rank": 4, "alpha": 8}, "train": TRAIN}]
    # a relative --registry: the run's lineage still says where the data lives, absolutely
    p = cli("--registry", "registry", "train", str(recipe(tmp_path, tiny, "hf", stages)), "--json", check_json=True)
    assert p.returncode == 0, p.stderr[-3000:]
    lineage = json.loads((Path(p.json["plan"]["run_dir"]) / "lineage.json").read_text())
    assert lineage["registry"] == str((tmp_path / "registry").resolve())
    weights = {k: v for k, v in lineage["base_model"]["fingerprint"].items() if k.endswith(".safetensors")}
    assert weights and all(v.startswith("xxh3_128:") for v in weights.values())  # the weights, not only configs
    stage_dir = Path(p.json["plan"]["run_dir"]) / "1-sft"
    assert (stage_dir / "adapter" / "adapter_config.json").exists()
    rows = [json.loads(x) for x in (stage_dir / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("train_loss") is not None for r in rows)


def test_a_launcher_runs_each_hf_stage_in_its_own_process_from_a_job_file(cli, reg, tmp_path, tiny, external):
    import sys

    sft = split_version(reg, external / "identity.json", "idn", "sft")
    stages = [{"stage": "sft", "data": sft, "lora": {"rank": 4, "alpha": 8}, "train": TRAIN}]
    # the launcher is any command that runs `-m datakit.train.hf_backend --job J` (torchrun, accelerate launch)
    p = cli("train", str(recipe(tmp_path, tiny, "hf", stages)), "--launcher", sys.executable, "--json",
            check_json=True)
    assert p.returncode == 0, p.stderr[-3000:]
    stage_dir = Path(p.json["plan"]["run_dir"]) / "1-sft"
    job = json.loads((stage_dir / "job.json").read_text())
    assert job["data_dir"] == str(stage_dir / "data") and job["stage"]["train"]["iters"] == TRAIN["iters"]
    assert (stage_dir / "adapter" / "adapter_config.json").exists()
    assert p.json["results"][0]["steps"] == TRAIN["iters"] and p.json["results"][0]["stop_check"]["prompts"] > 0
    bad = cli("train", str(recipe(tmp_path, tiny, "mlx", stages)), "--launcher", "torchrun")
    assert bad.returncode == 2 and "--launcher runs the hf backend" in bad.stderr


@pytest.mark.parametrize("recipe_file", sorted(p.name for p in (Path(__file__).resolve().parent.parent / "recipes").glob("*.yaml")))
def test_every_example_recipe_runs_in_a_tiny_variant(recipe_file, cli, reg, tmp_path, tiny, external):
    """The example recipes as written, with the tiny model, small data of the right kind and a few steps."""
    src = yaml.safe_load((Path(__file__).resolve().parent.parent / "recipes" / recipe_file).read_text())
    docs = [{"text": json.loads(x)["text"][:300]} for x in (external / "c4_demo.jsonl").read_text().splitlines()[:20]]
    data = {"cpt": split_version(reg, write_jsonl(tmp_path / "c4.jsonl", docs), "c4", "cpt"),
            "sft": split_version(reg, external / "identity.json", "idn", "sft")}
    if any(s["stage"] == "dpo" for s in src["stages"]):
        pairs = json.loads((external / "dpo_en_demo.json").read_text())[:20]
        for pair in pairs:  # short enough that no prompt fills the tiny max_seq_len
            for turn in [*pair["conversations"], pair["chosen"], pair["rejected"]]:
                turn["value"] = turn["value"][:80]
        (tmp_path / "dpo.json").write_text(json.dumps(pairs))
        data["dpo"] = split_version(reg, tmp_path / "dpo.json", "dpo", "preference")
    for st in src["stages"]:
        st["data"] = data[st["stage"]]
        st["train"] = {**{k: v for k, v in st["train"].items() if k not in ("iters", "epochs")},
                       "iters": 2, "batch_size": 2, "eval_every": 1, "save_every": 2, "max_seq_len": 96}
    src |= {"base_model": str(tiny), "output_dir": str(tmp_path / "runs")}
    path = tmp_path / recipe_file
    path.write_text(yaml.safe_dump(src))
    p = cli("train", str(path), "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    results = json.loads(p.stdout)["results"]
    assert [r["stage"] for r in results] == [s["stage"] for s in src["stages"]]
    assert all(Path(r["adapter"]).is_dir() for r in results)


@pytest.mark.parametrize("backend", ["hf", "mlx"])
def test_a_full_cpt_stage_hands_its_model_folder_to_a_lora_sft_stage(cli, reg, tmp_path, tiny, external, backend):
    docs = [{"text": json.loads(x)["text"][:300]} for x in (external / "c4_demo.jsonl").read_text().splitlines()[:12]]
    cpt = split_version(reg, write_jsonl(tmp_path / "c4.jsonl", docs), "c4", "cpt")
    sft = split_version(reg, external / "identity.json", "idn", "sft")
    stages = [{"stage": "cpt", "data": cpt, "method": "full", "train": TRAIN},
              {"stage": "sft", "data": sft, "lora": {"rank": 4, "alpha": 8}, "train": TRAIN}]
    p = cli("train", str(recipe(tmp_path, tiny, backend, stages)), "--json", check_json=True)
    assert p.returncode == 0, p.stderr[-3000:]
    plan = p.json["plan"]["stages"]
    run_dir = Path(p.json["plan"]["run_dir"])
    model = run_dir / "1-cpt" / "model"
    assert plan[0]["base_model"] == str(tiny) and plan[1]["base_model"] == str(model) and plan[1]["adapter_in"] is None
    assert (model / "config.json").is_file() and (model / "tokenizer.json").is_file()
    adapter = run_dir / "2-sft" / "adapter"
    assert (adapter / ("adapter_config.json")).is_file()
    assert json.loads((run_dir / "2-sft" / "result.json").read_text())["stop_check"]["prompts"] > 0
    # a full stage cannot follow an adapter stage: refused at plan time, with the fix
    lora_then_full = [{**stages[0], "method": "lora"}, {**stages[1], "method": "full"}]
    bad = cli("train", str(recipe(tmp_path, tiny, backend, lora_then_full)), "--dry-run")
    assert bad.returncode == 2 and "method full after the adapter stage" in bad.stderr


def test_dry_run_preflights_the_rows_the_trainer_reads_and_counts_its_truncations(cli, reg, tmp_path, tiny):
    """The dry run reports what the real run then meets: the same number of rows cut at max_seq_len, counted on
    the train and valid splits only (long test rows are never trained on)."""
    from datakit.registry.rows import records_to_frame

    def row(i: int, words: int, part: str) -> dict:
        return {"messages": [{"role": "user", "content": f"question {i}"},
                             {"role": "assistant", "content": " ".join(f"word{i}x{k}" for k in range(words))}],
                "split": part}

    rows = [row(i, 200 if i % 4 == 0 else 5, "train") for i in range(24)]  # 6 long train rows
    rows += [row(100 + i, 200 if i < 2 else 5, "valid") for i in range(6)]  # 2 long valid rows
    rows += [row(200 + i, 200, "test") for i in range(5)]  # 5 long test rows: not trained on
    reg.commit_frame("long", "sft", records_to_frame("sft", rows), op="test")
    stages = [{"stage": "sft", "data": "long", "lora": {"rank": 4, "alpha": 8}, "train": TRAIN}]
    path = recipe(tmp_path, tiny, "hf", stages)
    dry = cli("train", str(path), "--dry-run", "--json", check_json=True)
    assert dry.returncode == 0, dry.stderr[-2000:]
    pre = dry.json["plan"]["stages"][0]["preflight"]
    assert (pre["ok"], pre["rows"], pre["over_max_seq_len"], pre["max_seq_len"]) == (True, 30, 8, 128)
    shown = cli("train", str(path), "--dry-run")
    assert "preflight ok; 8 of 30 rows longer than max_seq_len=128 (cut)" in shown.stdout
    real = cli("train", str(path), "--json", check_json=True)
    assert real.returncode == 0, real.stderr[-2000:]
    assert real.json["results"][0]["truncated_rows"] == 8  # what the trainer itself counted
