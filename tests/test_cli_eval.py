"""`datakit compare` as a user runs it: reports written, exit 0 when gates hold and 1 on a real regression."""

from __future__ import annotations

import json
from pathlib import Path

from datakit.evals.results import EvalResults, Item, aggregate

GATE = Path(__file__).resolve().parent.parent / "recipes" / "gates" / "default-gate.yaml"


def run(path: Path, general_correct: int, model: str, general: int = 100) -> Path:
    items = [Item(id=f"g{i}", type="knowledge", group="general", prompt=f"q{i}", output="a",
                  score=float(i < general_correct), passed=i < general_correct) for i in range(general)]
    items += [Item(id=f"id{i}", type="identity", prompt="who?", output="Acme", score=1.0, passed=True) for i in range(20)]
    items += [Item(id=f"b{i}", type="bleed", prompt="sky?", output="blue", score=0.0, passed=True) for i in range(20)]
    items += [Item(id=f"p{i}", type="perplexity", group="general", prompt="t", score=2.0, tokens=50) for i in range(10)]
    EvalResults(suite="s", backend="hf", model=model, probes="p.jsonl", created="now", items=items,
                metrics=aggregate(items)).write(path)
    return path


def test_compare_exits_0_for_an_equal_candidate_and_1_for_a_damaged_one(cli, tmp_path):
    base = run(tmp_path / "base", 400, "base", general=500)
    same = run(tmp_path / "same", 400, "tuned", general=500)
    worse = run(tmp_path / "worse", 300, "damaged", general=500)
    ok = cli("compare", str(base), str(same), "--gate", str(GATE), "--out", str(tmp_path / "r1"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "PASS: same pass (gates: 4 pass)" in ok.stdout
    bad = cli("compare", str(base), str(worse), "--gate", str(GATE), "--out", str(tmp_path / "r2"))
    assert bad.returncode == 1 and "FAIL: worse fail (gates: 1 fail, 3 pass)" in bad.stdout and "general.accuracy" in bad.stdout
    for f in ("report.md", "report.html", "report.json"):
        assert (tmp_path / "r2" / f).exists()
    report = json.loads((tmp_path / "r2" / "report.json").read_text())
    assert report["ok"] is False and report["verdict"] == "fail" and report["candidate_verdicts"] == {"worse": "fail"}


def test_a_suite_too_small_for_its_gate_fails_as_underpowered_unless_the_gate_says_warn(cli, tmp_path):
    base, same = run(tmp_path / "base", 80, "base"), run(tmp_path / "same", 80, "tuned")
    p = cli("compare", str(base), str(same), "--gate", str(GATE), "--out", str(tmp_path / "r"))
    assert p.returncode == 1 and "UNDERPOWERED: same underpowered (gates: 1 underpowered" in p.stdout
    assert "the margin needs about" in p.stdout
    md = (tmp_path / "r" / "report.md").read_text()
    assert "on_underpowered: fail" in md and "MDE vs margin" in md and "> 0.02, needs ~" in md
    warn = tmp_path / "warn.yaml"
    warn.write_text(GATE.read_text() + "on_underpowered: warn\n")
    p = cli("compare", str(base), str(same), "--gate", str(warn), "--out", str(tmp_path / "w"))
    # warn changes the exit status only: every output still says "underpowered", never "pass"
    assert p.returncode == 0 and "UNDERPOWERED: same underpowered" in p.stdout and "reported, not failed" in p.stdout
    md, html = ((tmp_path / "w" / f).read_text() for f in ("report.md", "report.html"))
    report = json.loads((tmp_path / "w" / "report.json").read_text())
    assert report["ok"] is True and report["verdict"] == "underpowered"
    assert "**UNDERPOWERED**" in md and "on_underpowered: warn" in md and "UNDERPOWERED: same" in html
    row = next(line for line in md.splitlines() if line.startswith("| same | general.accuracy"))
    assert row.split(" | ")[2].startswith("underpowered") and "<td class=\"underpowered\">underpowered" in html


def test_eval_the_example_suite_on_a_tiny_model_then_compare_a_rerun(cli, tmp_path):
    from datakit.tiny import build_llama

    model = build_llama(tmp_path / "model")
    suite = Path(__file__).resolve().parent.parent / "recipes" / "evals" / "example-suite.yaml"
    for name in ("base", "rerun"):
        p = cli("eval", str(suite), "--model", str(model), "--backend", "hf", "--out", str(tmp_path / name))
        assert p.returncode == 0, p.stderr[-2000:]
    res = EvalResults.read(tmp_path / "base")
    assert {"knowledge.accuracy", "identity.pass_rate", "bleed.rate", "perplexity.nll", "choice.accuracy"} <= set(res.metrics)
    assert res.model == str(model) and res.probes.endswith(")") and len(res.items) >= 7
    c = cli("compare", str(tmp_path / "base"), str(tmp_path / "rerun"), "--names", "base,base-rerun",
            "--out", str(tmp_path / "report"), "--json", check_json=True)
    assert c.returncode == 0 and c.json["noise_flips"] == 0  # greedy decoding: a rerun flips nothing


def test_perplexity_by_group_has_the_name_design_uses_and_gates_as_lower_is_better(tmp_path):
    from datakit.evals.compare import compare
    from datakit.evals.gate import GateSpec

    def res(nll: float) -> EvalResults:
        items = [Item(id=f"p{i}", type="perplexity", group="general", prompt="t", score=nll + 0.01 * i, tokens=40)
                 for i in range(30)]
        return EvalResults(suite="s", backend="hf", model=f"m{nll}", probes="p", created="now", items=items,
                           metrics=aggregate(items))

    base, worse = res(2.0), res(2.4)
    assert "perplexity.general" in base.metrics and abs(base.metrics["perplexity.general"].value - 2.145) < 1e-9
    spec = GateSpec.model_validate({"gates": [{"metric": "perplexity.general", "max_rise_pct": 5}]})
    assert compare([base, worse], ["base", "cand"], spec=spec).ok is False  # a 20% rise in NLL fails
    assert compare([base, res(1.9)], ["base", "cand"], spec=spec).ok is True  # a drop is an improvement


def test_the_gate_fails_a_really_damaged_model_and_passes_an_identical_one(cli, tmp_path, external):
    """Real weights: a CPT adapter learns general text; the same adapter with its weights perturbed is the
    regression. Perplexity on that text is gated as DESIGN's example does (perplexity.general, +5% max)."""
    import datasets
    import torch
    from safetensors.torch import load_file, save_file

    from datakit.text import segment_sentences
    from datakit.tiny import build_llama
    from datakit.train import hf_backend
    from datakit.train.job import StageJob
    from datakit.train.recipe import StageSpec

    line = (external / "wiki_demo.txt").read_text(encoding="utf-8").splitlines()[0]
    sents = [s for s in segment_sentences(line) if 8 <= len(s.split()) <= 30][:16]
    model = build_llama(tmp_path / "model", texts=sents)
    datasets.DatasetDict({"train": datasets.Dataset.from_list([{"text": s} for s in sents])}).save_to_disk(str(tmp_path / "data"))
    spec = StageSpec.model_validate({"stage": "cpt", "data": "x", "lora": {"rank": 8, "alpha": 16, "dropout": 0.0},
                                     "train": {"iters": 40, "batch_size": 4, "lr": 5e-3, "schedule": "constant",
                                               "warmup": 0.0, "max_seq_len": 96, "eval_every": 40, "save_every": 40}})
    job = StageJob(stage=spec, base_model=model, data_dir=tmp_path / "data", out_dir=tmp_path / "cpt")
    hf_backend.run_stage(job)
    damaged = tmp_path / "damaged-adapter"
    import shutil

    shutil.copytree(job.adapter_dir, damaged)
    weights = load_file(damaged / "adapter_model.safetensors")
    torch.manual_seed(0)
    save_file({k: v + 0.5 * torch.randn_like(v) for k, v in weights.items()}, damaged / "adapter_model.safetensors")

    (tmp_path / "probes.jsonl").write_text("".join(
        json.dumps({"id": f"ppl-{i}", "type": "perplexity", "group": "general", "text": s}) + "\n" for i, s in enumerate(sents)))
    (tmp_path / "suite.yaml").write_text("name: forgetting\nprobes: probes.jsonl\n")
    (tmp_path / "gate.yaml").write_text("gates:\n  - {metric: perplexity.general, max_rise_pct: 5}\n")
    for name, adapter in (("tuned", job.adapter_dir), ("tuned-again", job.adapter_dir), ("damaged", damaged)):
        p = cli("eval", str(tmp_path / "suite.yaml"), "--model", str(model), "--adapter", str(adapter),
                "--backend", "hf", "--out", str(tmp_path / name))
        assert p.returncode == 0, p.stderr[-2000:]
    same = cli("compare", str(tmp_path / "tuned"), str(tmp_path / "tuned-again"), "--gate", str(tmp_path / "gate.yaml"),
               "--out", str(tmp_path / "r-same"))
    assert same.returncode == 0, same.stdout
    bad = cli("compare", str(tmp_path / "tuned"), str(tmp_path / "damaged"), "--gate", str(tmp_path / "gate.yaml"),
              "--out", str(tmp_path / "r-bad"))
    assert bad.returncode == 1 and "perplexity.general" in bad.stdout


def test_with_base_evaluates_both_from_one_model_and_reports_forgetting_kl(cli, tmp_path):
    """The adapter switched off is the base: its results equal a separate base run; KL is 0 for a zero adapter
    and positive once the adapter's weights move."""
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM

    from datakit.tiny import build_llama

    model = build_llama(tmp_path / "model")
    peft = get_peft_model(AutoModelForCausalLM.from_pretrained(model), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    peft.save_pretrained(tmp_path / "adapter")
    w = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    save_file({k: v + 0.3 * torch.randn_like(v) for k, v in w.items()}, tmp_path / "adapter" / "adapter_model.safetensors")
    suite = Path(__file__).resolve().parent.parent / "recipes" / "evals" / "example-suite.yaml"
    p = cli("eval", str(suite), "--model", str(model), "--adapter", str(tmp_path / "adapter"), "--backend", "hf",
            "--out", str(tmp_path / "tuned"), "--with-base", str(tmp_path / "base"))
    assert p.returncode == 0, p.stderr[-2000:]
    sep = cli("eval", str(suite), "--model", str(model), "--backend", "hf", "--out", str(tmp_path / "base-alone"))
    assert sep.returncode == 0
    a, b = EvalResults.read(tmp_path / "base"), EvalResults.read(tmp_path / "base-alone")
    assert [(i.id, i.output) for i in a.items] == [(i.id, i.output) for i in b.items]
    tuned = EvalResults.read(tmp_path / "tuned")
    assert tuned.metrics["forgetting.kl"].value > 0 and tuned.metrics["forgetting.kl"].n == 2


def test_eval_plan_sizes_a_suite_and_checks_one_against_its_gate(cli, tmp_path):
    p = cli("eval", "plan", "--metric", "general.accuracy", "--max-drop", "0.05", "--discordance", "0.1", "--json",
            check_json=True)
    rows = {r["power"]: r for r in p.json["rows"]}
    assert p.returncode == 0 and rows[0.8]["items"] < rows[0.9]["items"]
    from datakit.evals import power

    assert rows[0.8]["items"] == power.items_binary(0.05, 0.1) and abs(power.mde_binary(rows[0.8]["items"], 0.1) - 0.05) < 0.002
    para = cli("eval", "plan", "--max-drop", "0.05", "--discordance", "0.1", "--paraphrases", "4", "--icc", "0.5")
    assert "questions x 4 paraphrases" in para.stdout
    # a 12-probe suite against the default gate: too few for a 2-point drop, and the command says so
    probes = [{"id": f"g{i}", "type": "knowledge", "group": "general", "prompt": "q", "expect": "a"} for i in range(12)]
    (tmp_path / "probes.jsonl").write_text("".join(json.dumps(x) + "\n" for x in probes))
    (tmp_path / "suite.yaml").write_text("name: s\nprobes: probes.jsonl\n")
    chk = cli("eval", "plan", "--suite", str(tmp_path / "suite.yaml"), "--gate", str(GATE), "--json", check_json=True)
    acc = next(c for c in chk.json if c["metric"] == "general.accuracy")
    assert acc["items"] == 12 and acc["ok"] is False and acc["needed"] > 300
    text = cli("eval", "plan", "--suite", str(tmp_path / "suite.yaml"), "--gate", str(GATE))
    assert "warning" in text.stdout and "underpowered" in text.stdout


def test_sampling_more_than_once_at_temperature_zero_is_refused_with_the_fix(cli, tmp_path):
    (tmp_path / "suite.yaml").write_text("name: s\nprobes: probes.jsonl\n")
    (tmp_path / "probes.jsonl").write_text(json.dumps({"id": "a", "type": "knowledge", "prompt": "q", "expect": "a"}))
    p = cli("eval", str(tmp_path / "suite.yaml"), "--model", str(tmp_path), "--samples", "4", "--out", str(tmp_path / "o"))
    assert p.returncode == 2 and "--temperature" in p.stderr


def test_a_missing_model_or_adapter_folder_is_one_clear_line_not_a_hub_traceback(cli, tmp_path):
    (tmp_path / "suite.yaml").write_text("name: s\nprobes: probes.jsonl\n")
    (tmp_path / "probes.jsonl").write_text(json.dumps({"id": "a", "type": "knowledge", "prompt": "q", "expect": "a"}))
    for backend in ("hf", "mlx"):
        p = cli("eval", str(tmp_path / "suite.yaml"), "--model", str(tmp_path / "no-such-model"), "--backend", backend,
                "--out", str(tmp_path / "o"))
        assert p.returncode == 2 and "no-such-model: no such folder" in p.stderr and "Traceback" not in p.stderr
        assert "never downloads" in p.stderr and len(p.stderr.strip().splitlines()) <= 3
    p = cli("eval", str(tmp_path / "suite.yaml"), "--model", str(tmp_path), "--adapter", str(tmp_path / "gone"),
            "--out", str(tmp_path / "o"))
    assert p.returncode == 2 and "--adapter" in p.stderr and "gone: no such folder" in p.stderr
