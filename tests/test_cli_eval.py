"""`datakit compare` as a user runs it: reports written, exit 0 when gates hold and 1 on a real regression."""

from __future__ import annotations

import json
from pathlib import Path

from datakit.evals.results import EvalResults, Item, aggregate

GATE = Path(__file__).resolve().parent.parent / "recipes" / "gates" / "default-gate.yaml"


def run(path: Path, general_correct: int, model: str) -> Path:
    items = [Item(id=f"g{i}", type="knowledge", group="general", prompt=f"q{i}", output="a",
                  score=float(i < general_correct), passed=i < general_correct) for i in range(100)]
    items += [Item(id=f"id{i}", type="identity", prompt="who?", output="Acme", score=1.0, passed=True) for i in range(20)]
    items += [Item(id=f"b{i}", type="bleed", prompt="sky?", output="blue", score=0.0, passed=True) for i in range(20)]
    items += [Item(id=f"p{i}", type="perplexity", group="general", prompt="t", score=2.0, tokens=50) for i in range(10)]
    EvalResults(suite="s", backend="hf", model=model, probes="p.jsonl", created="now", items=items,
                metrics=aggregate(items)).write(path)
    return path


def test_compare_exits_0_for_an_equal_candidate_and_1_for_a_damaged_one(cli, tmp_path):
    base = run(tmp_path / "base", 80, "base")
    same = run(tmp_path / "same", 80, "tuned")
    worse = run(tmp_path / "worse", 55, "damaged")
    ok = cli("compare", str(base), str(same), "--gate", str(GATE), "--out", str(tmp_path / "r1"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "all gates passed" in ok.stdout
    bad = cli("compare", str(base), str(worse), "--gate", str(GATE), "--out", str(tmp_path / "r2"))
    assert bad.returncode == 1 and "FAIL" in bad.stdout and "general.accuracy" in bad.stdout
    for f in ("report.md", "report.html", "report.json"):
        assert (tmp_path / "r2" / f).exists()
    assert json.loads((tmp_path / "r2" / "report.json").read_text())["ok"] is False


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
