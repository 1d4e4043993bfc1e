"""Recipes validate every field at once, and the runner plans a run (data, splits, chaining) before training."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from datakit.errors import DatakitError
from datakit.ingest import ingest
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
