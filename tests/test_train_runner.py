"""Recipes validate every field at once, and the runner plans a run (data, splits, chaining) before training."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from datakit.errors import DatakitError
from datakit.io.ingest import ingest
from datakit.ops import runner as ops
from datakit.ops.split import split
from datakit.train.recipe import load_recipe
from datakit.train.runner import plan, run

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def write_recipe(tmp_path: Path, **over) -> Path:
    base = {"name": "t", "backend": "mlx", "base_model": str(tmp_path / "model"), "seed": 1,
            "output_dir": str(tmp_path / "runs"),
            "stages": [{"stage": "sft", "data": "idn-split", "train": {"iters": 5, "batch_size": 2,
                                                                       "early_stopping": {"patience": 2}}}]}
    base.update(over)
    p = tmp_path / "recipe.yaml"
    p.write_text(yaml.safe_dump(base))
    return p


@pytest.fixture
def split_identity(reg, external):
    ingest(reg, [external / "identity.json"], name="idn", kind="sft")
    inp = ops.load(reg, ["idn"])[0]
    ops.commit(reg, name="idn-split", kind="sft", inputs=[inp[0]], op="split", params={}, out=split(inp, valid=0.2))
    return reg


def test_every_recipe_error_is_reported_at_once_with_the_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump({"name": "Bad Name", "backend": "tpu", "base_model": "x",
                                 "stages": [{"stage": "sft", "data": "a", "train": {"batch_size": 0}}]}))
    with pytest.raises(DatakitError) as e:
        load_recipe(p)
    msg = str(e.value)
    assert "bad.yaml" in msg and "name" in msg and "backend" in msg and "batch_size" in msg
    assert "iters or epochs" in msg or "stages.0.train" in msg


def test_stages_must_run_cpt_then_sft_then_dpo(tmp_path):
    p = write_recipe(tmp_path, stages=[{"stage": "sft", "data": "a", "train": {"iters": 1}},
                                       {"stage": "cpt", "data": "b", "train": {"iters": 1}}])
    with pytest.raises(DatakitError, match="cpt -> sft -> dpo"):
        load_recipe(p)


def test_dry_run_plans_stages_and_chains_adapters(split_identity, tmp_path):
    (tmp_path / "model").mkdir()
    stages = [{"stage": "sft", "data": "idn-split", "train": {"iters": 5, "batch_size": 2}},
              {"stage": "sft", "data": "idn-split", "train": {"iters": 5, "batch_size": 2}}]
    spec = load_recipe(write_recipe(tmp_path, stages=stages))
    p, results = run(split_identity, spec, recipe_dir=tmp_path, dry_run=True, run_id="r1")
    assert results == [] and not Path(p.run_dir).exists()
    assert [s.data_ref for s in p.stages] == ["idn-split@v1", "idn-split@v1"]
    assert p.stages[0].adapter_in is None and p.stages[1].adapter_in == str(Path(p.stages[0].dir) / "adapter")
    assert p.stages[0].rows["valid"] > 0 and sum(p.stages[0].rows.values()) == 91


def test_plan_lists_every_problem_before_anything_trains(split_identity, tmp_path):
    stages = [{"stage": "cpt", "data": "idn", "train": {"iters": 5, "batch_size": 500, "early_stopping": {"patience": 1}}},
              {"stage": "sft", "data": "nope", "train": {"iters": 5}}]
    spec = load_recipe(write_recipe(tmp_path, stages=stages))
    p = plan(split_identity, spec, recipe_dir=tmp_path)
    text = "\n".join(p.problems)
    assert "base_model" in text and "no such folder" in text
    assert "a cpt stage needs cpt data; idn@v1 is sft" in text
    assert "early stopping needs a validation split" in text and "datakit split idn@v1" in text
    assert "fewer than batch_size=500" in text
    assert "no dataset named 'nope'" in text
    with pytest.raises(DatakitError, match="5 problem"):
        run(split_identity, spec, recipe_dir=tmp_path)


def test_example_recipes_load(tmp_path):
    for p in sorted(RECIPES.glob("*.yaml")):
        spec = load_recipe(p)
        assert spec.stages and spec.name


def test_export_for_mlx_and_hf_writes_splits_and_preflights_with_a_tokenizer(cli, tmp_path, external):
    from datakit.tiny import build_llama

    model = build_llama(tmp_path / "model")
    cli("ingest", str(external / "identity.json"), "--name", "idn", "--kind", "sft")
    cli("split", "idn", "--valid", "0.2", "--name", "idn-split")
    p = cli("export", "idn-split", "--format", "mlx", "--out", str(tmp_path / "mlx"), "--tokenizer", str(model),
            "--max-seq-len", "16", "--json", check_json=True)
    assert p.returncode == 0, p.stderr
    assert p.json["rows"]["train"] + p.json["rows"]["valid"] == 91 and p.json["rows"]["valid"] > 0
    assert (tmp_path / "mlx" / "train.jsonl").exists() and (tmp_path / "mlx" / "valid.jsonl").exists()
    assert not (tmp_path / "mlx" / "test.jsonl").exists()
    pre = p.json["preflight"]
    assert pre["ok"] and pre["report"]["stats"]["over_max_seq_len"] > 0 and "max_seq_len=16" in pre["text"]
    hf = cli("export", "idn-split", "--format", "hf", "--out", str(tmp_path / "hf"))
    assert hf.returncode == 0
    import datasets

    dd = datasets.load_from_disk(str(tmp_path / "hf"))
    assert set(dd) == {"train", "valid"} and dd["train"].column_names == ["messages", "tools"]


def test_export_preflight_fails_on_a_template_without_end_of_turn(cli, tmp_path, external):
    from datakit.tiny import build_llama

    model = build_llama(tmp_path / "model")
    (model / "chat_template.jinja").write_text(
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}")
    cli("ingest", str(external / "identity.json"), "--name", "idn", "--kind", "sft")
    p = cli("export", "idn", "--format", "mlx", "--out", str(tmp_path / "mlx"), "--tokenizer", str(model))
    assert p.returncode == 1 and "FAILED" in p.stdout


def test_a_stage_may_name_a_mixture_file_which_is_mixed_into_the_registry_first(split_identity, tmp_path, external):
    ingest(split_identity, [external / "alpaca_en_demo.json"], name="alpaca-en", kind="sft")
    (tmp_path / "model").mkdir()
    mixture = tmp_path / "mix.yaml"
    mixture.write_text(yaml.safe_dump({"name": "stage-mix", "seed": 1, "total": 200, "components": [
        {"dataset": "idn-split", "weight": 0.3}, {"dataset": "alpaca-en", "weight": 0.7}]}))
    stages = [{"stage": "sft", "data": "mix.yaml", "train": {"iters": 2, "batch_size": 2}}]
    p, _ = run(split_identity, load_recipe(write_recipe(tmp_path, stages=stages)), recipe_dir=tmp_path, dry_run=True)
    assert p.problems == [] and p.stages[0].data_ref == "stage-mix@v1"
    assert split_identity.resolve("stage-mix").rows == 200
