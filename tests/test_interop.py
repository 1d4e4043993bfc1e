"""Round trips through the engines' own entry points, not datakit's backends: `python -m mlx_lm lora
--mask-prompt`, plain TRL SFTTrainer / DPOTrainer / KTOTrainer on `datasets.load_from_disk` of the HF export,
and the `lm-eval` CLI (validate, run) on exported tasks, agreeing with datakit item by item. Tiny models, offline."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from datakit.io.export import export_training
from datakit.io.ingest import ingest
from datakit.ops import runner as ops
from datakit.ops.split import split
from tests.conftest import write_jsonl
from tests.test_kto import trl_rows
from tests.test_tool_calls import ARGS, PARALLEL, PLAIN, weather_row

pytest.importorskip("trl")
pytest.importorskip("mlx_lm")

QWEN = Path(__file__).resolve().parent / "fixtures" / "chat_templates" / "chatml_qwen.jinja"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama whose tokenizer carries Qwen2.5's chat template, which renders tools and tool calls."""
    from transformers import AutoTokenizer

    from datakit.tiny import build_llama

    path = build_llama(tmp_path_factory.mktemp("interop") / "base", max_positions=1024)
    tok = AutoTokenizer.from_pretrained(path)
    tok.chat_template = QWEN.read_text()
    tok.save_pretrained(path)
    return path


def chat_rows() -> list[dict]:
    rows = [weather_row(json.dumps(ARGS)), weather_row(ARGS), PARALLEL, PLAIN]
    return [json.loads(json.dumps(r).replace("Paris", f"Paris{i}")) for i in range(3) for r in rows]


def split_ref(reg, path: Path, name: str, kind: str) -> str:
    ingest(reg, [path], name=name, kind=kind)
    inp = ops.load(reg, [name])[0]
    m, _ = ops.commit(reg, name=f"{name}-split", kind=kind, inputs=[inp[0]], op="split", params={},
                      out=split(inp, valid=0.25, seed=0))
    return m.ref


def test_mlx_lm_lora_trains_on_the_mlx_export_with_mask_prompt(reg, tmp_path, base):
    ref = split_ref(reg, write_jsonl(tmp_path / "chat.jsonl", chat_rows()), "chat", "sft")
    export_training(reg, ref, "mlx", tmp_path / "mlx")
    proc = subprocess.run([sys.executable, "-m", "mlx_lm", "lora", "--model", str(base), "--train", "--data",
                           str(tmp_path / "mlx"), "--iters", "2", "--batch-size", "1", "--mask-prompt",
                           "--max-seq-length", "1024", "--steps-per-report", "1", "--val-batches", "1", "--num-layers", "2",
                           "--adapter-path", str(tmp_path / "adapter")],
                          capture_output=True, text=True, env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "adapter" / "adapters.safetensors").is_file()
    text = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)  # mlx-lm prints a coloured table
    losses = [float(v) for v in re.findall(r"(?m)^\s*\d+\s+([0-9.]+) [▼▲=]?", text)]
    assert losses and all(math.isfinite(v) for v in losses), proc.stdout[-2000:]


def trl_args(kind: str, out: Path):
    common = {"output_dir": str(out), "max_steps": 2, "per_device_train_batch_size": 2, "learning_rate": 1e-4,
              "report_to": "none", "use_cpu": True, "save_strategy": "no", "logging_steps": 1,
              "disable_tqdm": True, "dataloader_num_workers": 0}
    import trl

    return {"sft": trl.SFTConfig, "dpo": trl.DPOConfig, "kto": trl.KTOConfig}[kind](**common)


def test_plain_trl_trainers_take_the_hf_exports_as_they_are(reg, tmp_path, base):
    import datasets
    import trl
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    ingest(reg, [write_jsonl(tmp_path / "chat.jsonl", chat_rows())], name="chat", kind="sft")
    pairs = [{"prompt": [{"role": "user", "content": f"Who are you {i}?"}],
              "chosen": [{"role": "assistant", "content": "I am Kit."}],
              "rejected": [{"role": "assistant", "content": "I am someone else."}]} for i in range(6)]
    ingest(reg, [write_jsonl(tmp_path / "pref.jsonl", pairs)], name="pref", kind="preference")
    ingest(reg, [write_jsonl(tmp_path / "kto.jsonl", trl_rows(8))], name="kto", kind="kto")
    engines = {"chat": ("sft", trl.SFTTrainer), "pref": ("dpo", trl.DPOTrainer), "kto": ("kto", trl.KTOTrainer)}
    for name, (kind, engine) in engines.items():
        export_training(reg, name, "hf", tmp_path / f"hf-{name}")
        train = datasets.load_from_disk(str(tmp_path / f"hf-{name}"))["train"]
        model = AutoModelForCausalLM.from_pretrained(base)
        trainer = engine(model=model, args=trl_args(kind, tmp_path / f"out-{name}"), train_dataset=train,
                         processing_class=tok)
        out = trainer.train()
        assert math.isfinite(out.training_loss), name
        if name == "chat":  # TRL rendered the row's own tools and the call's arguments as JSON once
            text = tok.decode(trainer.train_dataset[0]["input_ids"])
            assert '"name": "get_weather"' in text and '"city": "Paris0"' in text and '\\"city' not in text
            plain = tok.decode(trainer.train_dataset[3]["input_ids"])
            assert "<tools>" not in plain  # the plain chat row got no other row's tools


def test_lm_eval_cli_validates_and_runs_the_exported_tasks_as_datakit_scores_them(cli, tmp_path, base):
    from datakit.evals.run import choice_pairs, conversation
    from datakit.evals.runners import HFRunner
    from datakit.evals.scorers import score, score_choice
    from datakit.evals.suite import SuiteSpec

    probes = [
        {"id": "c1", "type": "choice", "prompt": "The capital of Korea is", "choices": ["Seoul.", "Tokyo."], "answer": 0},
        {"id": "c2", "type": "choice", "prompt": "The sky is", "choices": ["green.", "blue.", "red."], "answer": 1},
        {"id": "c3", "type": "choice", "prompt": "Hello! I am a", "choices": ["helpful assistant.", "cat."], "answer": 0},
        {"id": "k1", "type": "knowledge", "prompt": "What is the capital of Korea?", "expect": "Seoul"},
        {"id": "k2", "type": "knowledge", "prompt": "Say hello.", "accept": ["hello", "hi"]},
        {"id": "i1", "type": "identity", "prompt": "Who are you?"},
    ]
    assert cli("ingest", str(write_jsonl(tmp_path / "p.jsonl", probes)), "--name", "px", "--kind", "probes").returncode == 0
    exp = cli("export", "px", "--format", "lm-eval", "--out", str(tmp_path / "tasks"), "--tokenizer", str(base),
              "--json", check_json=True)
    assert exp.returncode == 0, exp.stderr
    assert exp.json["skipped"]["identity"]["count"] == 1 and exp.json["rows"] == 5 and exp.json["rows_in"] == 6
    tasks = ",".join(exp.json["tasks"])
    lm_eval = [sys.executable, "-m", "lm_eval"]
    elsewhere = tmp_path / "elsewhere"  # the tasks find their rows from any working directory
    elsewhere.mkdir()
    val = subprocess.run([*lm_eval, "validate", "--tasks", tasks, "--include_path", str(tmp_path / "tasks")],
                         capture_output=True, text=True, env=ENV, timeout=300, cwd=elsewhere)
    assert val.returncode == 0, val.stdout[-2000:] + val.stderr[-2000:]
    run = subprocess.run([*lm_eval, "run", "--model", "hf", "--model_args", f"pretrained={base}", "--tasks", tasks,
                          "--include_path", str(tmp_path / "tasks"), "--apply_chat_template", "--log_samples",
                          "--output_path", str(tmp_path / "lm"), "--batch_size", "4", "--device", "cpu"],
                         capture_output=True, text=True, env=ENV, timeout=600, cwd=elsewhere)
    assert run.returncode == 0, run.stderr[-3000:]
    logged = {}
    for f in (tmp_path / "lm").rglob("samples_*.jsonl"):
        for line in f.read_text().splitlines():
            s = json.loads(line)
            logged[s["doc"]["id"]] = s.get("acc", s.get("datakit_match"))
    runner = HFRunner(base)
    suite = SuiteSpec(name="s", probes="-")
    ours = {p["id"]: score_choice(p, runner.loglik(choice_pairs(p))).score for p in probes if p["type"] == "choice"}
    know = [p for p in probes if p["type"] == "knowledge"]
    outputs = runner.generate([conversation(p) for p in know], max_new_tokens=96)
    ours |= {p["id"]: score(p, o, suite).score for p, o in zip(know, outputs)}
    assert logged == ours
