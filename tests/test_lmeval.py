"""lm-eval beside datakit's probes: a local task from probes scores like datakit, offline tasks are reported,
the adapter's tokenizer is used, and the response cache is per model. Tiny real models; nothing downloaded."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from datakit.evals.lmeval import cache_path, hflm_args, run_suite_tasks, run_tasks
from datakit.evals.lmeval_tasks import write_local_task
from datakit.evals.run import choice_pairs
from datakit.tiny import build_llama

CHOICE = [
    {"id": "c1", "type": "choice", "prompt": "The capital of Korea is", "choices": ["Seoul.", "Tokyo.", "Paris."], "answer": 0},
    {"id": "c2", "type": "choice", "prompt": "The sky is", "choices": ["green.", "blue."], "answer": 1},
    {"id": "c3", "type": "choice", "prompt": "Python's sort is ", "choices": ["stable", "random", "slow"], "answer": 0},
    {"id": "c4", "type": "choice", "prompt": "Hello! I am a", "choices": ["helpful assistant.", "cat.", "tree."], "answer": 2},
    {"id": "c5", "type": "choice", "prompt": "서울은 한국의", "choices": ["수도입니다.", "하늘입니다."], "answer": 0},
]
KNOWLEDGE = [{"id": "k1", "type": "knowledge", "prompt": "What is the capital of Korea?", "expect": "Seoul"}]


def task_yaml(path: Path) -> dict:
    """A task YAML without its `!function` hooks (lm-eval's loader resolves those; safe_load cannot)."""
    return yaml.safe_load("\n".join(x for x in path.read_text().splitlines() if "!function" not in x))


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_llama(tmp_path_factory.mktemp("lmeval") / "base")


def test_a_local_choice_task_scores_in_lm_eval_exactly_as_datakit_scores_the_same_probes(model: Path, tmp_path: Path) -> None:
    from datakit.evals.runners import HFRunner
    from datakit.evals.scorers import score_choice

    folder = tmp_path / "tasks"
    write_local_task(CHOICE + KNOWLEDGE, folder, task_name="dk", tokenizer_dir=model)
    cfg = task_yaml(folder / "dk_choice" / "dk_choice.yaml")
    assert cfg["test_split"] == "train" and "!function datakit_task.load_docs" in (folder / "dk_choice" / "dk_choice.yaml").read_text()
    know = task_yaml(folder / "dk_knowledge" / "dk_knowledge.yaml")
    assert know["generation_kwargs"]["until"] == ["<|im_end|>"]

    out = run_tasks(["dk_choice", "dk_knowledge"], model=model, adapter=None, out_dir=tmp_path / "out",
                    include_path=folder)
    runner = HFRunner(model)
    ours = [score_choice(p, runner.loglik(choice_pairs(p))) for p in CHOICE]
    print("datakit picks:", [i.detail for i in ours], "| lm-eval:", out["tasks"]["dk_choice"])
    assert out["tasks"]["dk_choice"]["status"] == "ok" and out["tasks"]["dk_choice"]["n"] == len(CHOICE)
    assert out["tasks"]["dk_choice"]["metrics"]["acc,none"] == pytest.approx(sum(i.score for i in ours) / len(ours))
    assert out["tasks"]["dk_knowledge"]["status"] == "ok"
    assert "datakit_match,none" in out["tasks"]["dk_knowledge"]["metrics"]
    assert out["settings"]["fewshot_as_multiturn"] is False and out["settings"]["apply_chat_template"] is False


def test_a_standard_task_needing_a_download_is_reported_unavailable_offline_without_raising(
        model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    out = run_tasks(["hellaswag", "no_such_task_xyz"], model=model, adapter=None, out_dir=tmp_path)
    assert out["tasks"]["hellaswag"]["status"] == "unavailable offline", out["tasks"]["hellaswag"]
    assert "hellaswag" in out["tasks"]["hellaswag"]["reason"]
    assert out["tasks"]["no_such_task_xyz"]["status"] == "unknown task"


def test_other_backends_are_told_to_use_hf_and_no_tasks_means_nothing_recorded(tmp_path: Path) -> None:
    out = run_suite_tasks(["hellaswag"], backend="mlx", model="m", adapter=None, out_dir=tmp_path)
    assert out["tasks"] == {"hellaswag": {"status": "needs --backend hf"}}
    assert run_suite_tasks([], backend="hf", model="m", adapter=None, out_dir=tmp_path) == {}


def test_the_adapters_own_tokenizer_is_passed_to_hflm_when_the_adapter_saved_one(model: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    bare, with_tok = tmp_path / "bare", tmp_path / "with_tok"
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(model),
                                LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    peft_model.save_pretrained(bare)
    peft_model.save_pretrained(with_tok)
    AutoTokenizer.from_pretrained(model).save_pretrained(with_tok)

    assert hflm_args(model, bare, device="cpu") | {} == {
        "pretrained": str(model), "tokenizer": str(model), "peft": str(bare), "batch_size": 8, "device": "cpu"}
    assert hflm_args(model, with_tok, device="cpu")["tokenizer"] == str(with_tok)
    assert hflm_args(model, None, device="cpu")["tokenizer"] == str(model) and "peft" not in hflm_args(model, None)

    folder = tmp_path / "tasks"
    write_local_task(CHOICE[:2], folder, task_name="dk")
    out = run_tasks(["dk_choice"], model=model, adapter=with_tok, out_dir=tmp_path / "out", include_path=folder)
    assert out["tasks"]["dk_choice"]["status"] == "ok"
    assert out["settings"]["model_args"]["tokenizer"] == str(with_tok)
    assert out["settings"]["model_args"]["peft"] == str(with_tok)


def test_the_response_cache_lives_under_out_dir_and_differs_between_two_models_with_the_same_config(
        model: Path, tmp_path: Path) -> None:
    other = build_llama(tmp_path / "other", seed=1)  # same config.json, different weights
    a, b = cache_path(tmp_path, model, None), cache_path(tmp_path, other, None)
    assert a != b and a == cache_path(tmp_path, model, None)
    assert a.is_relative_to(tmp_path / "lm_eval_cache")

    folder = tmp_path / "tasks"
    write_local_task(CHOICE[:2], folder, task_name="dk")
    out = run_tasks(["dk_choice"], model=model, adapter=None, out_dir=tmp_path, include_path=folder, cache=True)
    assert out["settings"]["use_cache"] == str(a)
    assert list(a.parent.glob("responses*.db")), "lm-eval wrote no cache db where run_tasks said it would"


def test_cli_exports_a_probes_dataset_as_local_lm_eval_tasks(cli, tmp_path):
    probes = Path(__file__).resolve().parent.parent / "recipes" / "evals" / "example-probes.jsonl"
    assert cli("ingest", str(probes), "--name", "acme-probes", "--kind", "probes").returncode == 0
    p = cli("export", "acme-probes", "--format", "lm-eval", "--out", str(tmp_path / "tasks"), "--json", check_json=True)
    assert p.returncode == 0, p.stderr
    names = sorted(x.name for x in (tmp_path / "tasks").iterdir())
    assert names == ["acme_probes_choice", "acme_probes_knowledge"]
    yml = next((tmp_path / "tasks" / "acme_probes_choice").glob("*.yaml")).read_text()
    assert "dataset_path: json" in yml and "test_split: train" in yml
    bad = cli("export", "nope", "--format", "lm-eval", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2


def test_exported_knowledge_tasks_agree_with_datakit_item_by_item(model: Path, tmp_path: Path) -> None:
    """A LoRA taught eight facts answers some probes right and some wrong; lm-eval (chat template on, the exported
    task's datakit_match) and datakit eval score every item the same."""
    import datasets

    from datakit.evals.run import conversation
    from datakit.evals.runners import HFRunner
    from datakit.evals.scorers import score
    from datakit.evals.suite import SuiteSpec
    from datakit.train import hf_backend
    from datakit.train.job import StageJob
    from datakit.train.recipe import StageSpec

    facts = [{"messages": [{"role": "user", "content": f"Who made model {i}?"},
                           {"role": "assistant", "content": f"Model {i} was made by Acme in Seoul."}]} for i in range(8)]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(facts)}).save_to_disk(str(tmp_path / "data"))
    spec = StageSpec.model_validate({"stage": "sft", "data": "facts@1", "train": {
        "iters": 30, "batch_size": 4, "lr": 2e-2, "schedule": "constant", "warmup": 0.0, "eval_every": 30,
        "save_every": 30}})
    adapter = hf_backend.run_stage(StageJob(stage=spec, base_model=model, data_dir=tmp_path / "data",
                                            out_dir=tmp_path / "run")).adapter_dir
    probes = ([{"id": f"acme{i}", "type": "knowledge", "prompt": f"Who made model {i}?", "accept": ["Acme", "ACME"]}
               for i in range(4)]
              + [{"id": f"busan{i}", "type": "knowledge", "prompt": f"Who made model {i}?", "expect": "Busan"}
                 for i in range(4, 6)]
              + [{"id": "forbid", "type": "knowledge", "prompt": "Who made model 6?", "expect": "Acme",
                  "forbid": ["Seoul"]},
                 {"id": "novel", "type": "knowledge", "prompt": "What is the capital of Korea?", "expect": "Seoul"},
                 {"id": "multi", "type": "knowledge", "messages": [{"role": "system", "content": "Be terse."},
                                                                  {"role": "user", "content": "Who made model 1?"}],
                  "expect": "Acme"},
                 {"id": "who", "type": "identity", "prompt": "Who are you?"}])
    summary = write_local_task(probes, tmp_path / "tasks", task_name="agree", tokenizer_dir=model)
    assert summary["tasks"] == {"agree_knowledge": 8}
    assert {k: v["count"] for k, v in summary["skipped"].items()} == {"knowledge (multi-turn)": 1, "identity": 1}
    out = run_tasks(["agree_knowledge"], model=model, adapter=adapter, out_dir=tmp_path / "lm",
                    include_path=tmp_path / "tasks", apply_chat_template=True, log_samples=True)
    lm = {s["id"]: s["datakit_match"] for s in out["tasks"]["agree_knowledge"]["samples"]}
    asked = [p for p in probes if p["id"] not in ("multi", "who")]
    runner = HFRunner(model, adapter)
    outputs = runner.generate([conversation(p) for p in asked], max_new_tokens=96)
    suite = SuiteSpec(name="s", probes="-")
    ours = {p["id"]: score(p, o, suite).score for p, o in zip(asked, outputs)}
    print({p["id"]: o for p, o in zip(asked, outputs)}, lm)
    assert lm == ours
    assert 0 < sum(ours.values()) < len(ours)  # some right, some wrong: agreement is not trivial
