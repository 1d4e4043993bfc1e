"""`datakit demo --quick`, end to end on the CPU: the forgetting effect and its cure, measured.

The tiny base model is pre-trained once per test session into the session's tmp dir (`base_cache`, shared with
the notebook tests; never the project's build/demo/base); everything else is written under the test's tmp dir.
Timeouts are generous: on a busy 2-core machine the demo takes several times its usual 6 minutes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EXTERNAL, ROOT

DEMO_TIMEOUT_S = 3600
pytestmark = pytest.mark.timeout(DEMO_TIMEOUT_S + 120)  # the module's demo fixture runs inside its first test


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, base_cache: Path) -> tuple[subprocess.CompletedProcess, Path]:
    tmp = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "COLUMNS": "200", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "datakit.cli", "demo", "--quick", "--data", str(EXTERNAL), "--work", str(tmp / "work"),
         "--runs", str(tmp / "runs"), "--base-cache", str(base_cache)],
        capture_output=True, text=True, env=env, cwd=tmp, timeout=DEMO_TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, tmp / "runs" / "report"


def test_the_demo_prints_every_command_and_the_report_path_last(demo) -> None:
    proc, report = demo
    for command in ("datakit build cpt", "datakit build sft", "datakit build identity", "datakit dedup",
                    "datakit decontam", "datakit mix", "datakit split", "datakit lint", "datakit train",
                    "datakit eval", "datakit compare"):
        assert f"$ {command}" in proc.stdout, command
    assert proc.stdout.strip().splitlines()[-1] == str(report)
    assert {p.name for p in report.iterdir()} >= {"report.md", "report.html", "report.json", "timings.json"}


def test_domain_only_tuning_forgets_general_facts_and_the_mixture_keeps_them(demo) -> None:
    _, report = demo
    r = json.loads((report / "report.json").read_text())
    base, dom, mixed = (r["models"][n] for n in ("base", "domain-only", "mixed"))
    # the base knows its general facts and nothing about the company or who it is
    assert base["general.accuracy"] >= 0.9 and base["domain.accuracy"] <= 0.1 and base["identity.pass_rate"] == 0
    # domain only: learns the company, forgets the world, and answers general questions with company talk
    assert dom["domain.accuracy"] >= base["domain.accuracy"] + 0.4
    assert dom["general.accuracy"] <= base["general.accuracy"] - 0.5
    assert dom["identity.pass_rate"] <= 0.5
    # mixed (domain + identity at 30% + general replay): learns the company and keeps the world
    assert mixed["domain.accuracy"] >= 0.5
    assert mixed["general.accuracy"] >= base["general.accuracy"] - 0.1
    assert mixed["identity.pass_rate"] >= 0.75
    assert r["verdicts"]["domain-only"]["general.accuracy"] == "fail"
    assert r["verdicts"]["domain-only"]["general.answer_nll"] == "fail"
    assert r["verdicts"]["mixed"] == {"general.accuracy": "pass", "general.answer_nll": "pass", "domain.accuracy": "pass",
                                      "identity.pass_rate": "pass", "bleed.rate": "pass"}
    # no silent pass: every relative gate states its MDE within its margin, and the test it used
    for g in (g for c in r["comparisons"] for g in c["gates"] if g["kind"].startswith("max_")):
        assert g["mde"] is not None and g["test"] in ("mcnemar", "sign-flip")
        assert g["verdict"] != "pass" or g["mde"] <= g["limit"]
    md = (report / "report.md").read_text()
    assert "MDE vs margin" in md and "mcnemar" in md and "sign-flip" in md
    assert not r["ok"]  # a candidate failed its gate, so `datakit compare` alone would exit 1


def test_the_demo_keeps_lineage_from_report_back_to_the_documents(demo) -> None:
    from datakit.registry.store import Registry

    _, report = demo
    runs = report.parent
    lineage = json.loads((runs / "train" / "mixed" / "demo" / "lineage.json").read_text())
    assert [d["ref"] for d in lineage["data"]] == ["acme-cpt-split@v1", "mixed@v1"]
    results = json.loads((runs / "eval" / "mixed" / "results.json").read_text())
    assert results["adapter"].endswith("2-sft/adapter") and results["probes"].startswith("demo-probes@v1")
    reg = Registry(runs.parent / "work" / "registry")
    seen, todo = set(), ["mixed@v1"]
    while todo:  # walk the parents from the training mixture back to the documents' cpt rows
        m = reg.resolve(todo.pop())
        seen.add(m.name)
        todo += [p.ref for p in m.parents]
    assert {"acme-sft-split", "acme-sft-dedup", "acme-sft", "acme-cpt", "acme-identity", "general-replay"} <= seen


def test_the_ui_links_the_training_mixture_to_its_runs_and_their_eval_report(demo) -> None:
    from fastapi.testclient import TestClient

    from datakit.registry.store import Registry
    from datakit.ui.app import create_app

    _, report = demo
    runs = report.parent
    client = TestClient(create_app(Registry(runs.parent / "work" / "registry"), runs_dir=runs))
    page = client.get("/v/mixed@v1?tab=lineage")
    assert page.status_code == 200 and 'class="node run"' in page.text and 'class="node report"' in page.text
    link = page.text.split('href="/report?')[1].split('"')[0].replace("&amp;", "&")
    html = client.get(f"/report?{link}")
    assert html.status_code == 200 and html.text == (report / "report.html").read_text()
    assert 'class="node file"' in client.get("/v/acme-cpt@v1?tab=lineage").text  # the documents it was built from


def test_the_example_recipes_run_on_the_demo_registry_as_their_comments_say(demo, base_cache) -> None:
    """`recipes/*.yaml` name the datasets `make demo` leaves in build/demo/registry: here, the demo's registry."""
    _, report = demo
    registry = report.parent.parent / "work" / "registry"
    env = {**os.environ, "DATAKIT_REGISTRY": str(registry), "HF_HUB_OFFLINE": "1"}

    def datakit(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "datakit.cli", *args], capture_output=True, text=True, env=env,
                              cwd=ROOT, timeout=600)

    mixed = datakit("mix", "recipes/mixtures/example-mix.yaml", "--json")
    assert mixed.returncode == 0 and json.loads(mixed.stdout)["rows_out"] == 600, mixed.stderr[-2000:]
    assert datakit("split", "dpo-en", "--valid", "0.1", "--name", "acme-preference-split").returncode == 0
    for recipe in ("recipes/acme-cpt-sft-mlx.yaml", "recipes/acme-sft-dpo-hf.yaml"):
        plan = datakit("train", recipe, "--dry-run", "--base-model", str(base_cache), "--json")
        assert plan.returncode == 0, f"{recipe}: {plan.stderr[-2000:]}"
        assert all(s["rows"]["train"] > 0 for s in json.loads(plan.stdout)["plan"]["stages"]), plan.stdout[-2000:]
