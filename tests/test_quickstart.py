"""docs/quickstart.md runs verbatim: every line of its ```bash blocks, in order, as a new user would type it.

The commands run in a fresh folder laid out like the repository (examples/, recipes/ and docs/ linked in, the
external data at ../shared/data/external), with the installed `datakit` on PATH and no DATAKIT_REGISTRY, so the
default ./registry is used. A line whose comment says `exits 1` must exit 1; every other line must exit 0.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EXTERNAL, ROOT

QUICKSTART = ROOT / "docs" / "quickstart.md"
pytestmark = pytest.mark.timeout(3600)  # ~2 min here; generous for a machine several times slower


def bash_lines(markdown: str) -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", markdown, flags=re.S)
    return [line for block in blocks for line in block.splitlines() if line.strip() and not line.startswith("#")]


@pytest.fixture(scope="module")
def walked(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("quickstart")
    (root / "shared" / "data").mkdir(parents=True)
    (root / "shared" / "data" / "external").symlink_to(EXTERNAL)
    work = root / "work"
    work.mkdir()
    for name in ("examples", "recipes", "docs"):
        (work / name).symlink_to(ROOT / name)
    env = {k: v for k, v in os.environ.items() if k != "DATAKIT_REGISTRY"}
    env |= {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", "COLUMNS": "200",
            "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    outputs = {}
    for line in bash_lines(QUICKSTART.read_text()):
        proc = subprocess.run(line, shell=True, executable="/bin/bash", cwd=work, env=env, capture_output=True,
                              text=True, timeout=1800)
        want = 1 if "exits 1" in line else 0
        assert proc.returncode == want, f"{line}\nexit {proc.returncode}, expected {want}\n{proc.stdout}\n{proc.stderr}"
        outputs[line.split("#")[0].strip()] = proc.stdout + proc.stderr
    return {"work": work, "out": outputs, "env": env}


def said(walked: dict, prefix: str) -> str:
    """What the line `prefix` printed (that exact line, else the first line starting with it)."""
    out = walked["out"]
    return out[prefix] if prefix in out else next(text for line, text in out.items() if line.startswith(prefix))


def test_the_quickstart_runs_verbatim_and_each_step_reports_what_it_did(walked):
    assert len(walked["out"]) >= 15  # every step of the page ran
    listing = said(walked, "datakit registry ls")
    for name in ("acme-cpt", "acme-sft", "acme-identity", "alpaca-en"):
        assert name in listing
    assert "realized" in said(walked, "datakit mix") and "committed quickstart-mix@v1" in said(walked, "datakit mix")
    dry = said(walked, "datakit train examples/quickstart/sft.yaml --dry-run")
    assert "preflight ok" in dry and "rows longer than max_seq_len" in dry
    trained = said(walked, "datakit train examples/quickstart/sft.yaml --run-id first")
    assert "steps (100%)" in trained and "stop check:" in trained and "{'" not in trained  # no dict reprs


def test_the_compare_step_says_one_verdict_everywhere(walked):
    report_dir = walked["work"] / "runs" / "quickstart" / "report"
    report = json.loads((report_dir / "report.json").read_text())
    verdict = report["verdict"]
    assert verdict == "fail" and report["candidate_verdicts"] == {"sft": "fail"}
    terminal = said(walked, "datakit compare")
    assert f"{verdict.upper()}: sft {verdict}" in terminal
    assert f"**{verdict.upper()}**: sft {verdict}" in (report_dir / "report.md").read_text()
    assert f"{verdict.upper()}: sft {verdict}" in (report_dir / "report.html").read_text()
    for gate, v in report["verdicts"]["sft"].items():  # each gate's word is the same on the terminal
        assert re.search(rf"sft {v}\b.*{re.escape(gate)}", terminal) or v == "pass", (gate, v)


def test_runs_show_traces_the_run_from_its_report_to_the_source_files(walked):
    listing = said(walked, "datakit runs ls")
    assert listing.startswith("quickstart/first  hf  trained") and "trained" in listing and "eval fail (report)" in listing
    shown = said(walked, "datakit runs show quickstart/first")
    assert "judged by runs/quickstart/report/report.json as 'sft': fail" in shown
    assert re.search(r"base model build/tiny-llama \(fingerprint [0-9a-f]{16}: \d+ config, weight", shown)
    assert "<- quickstart-mix@v1" in shown and "<- acme-sft-split@v1" in shown
    sha = hashlib.sha256((EXTERNAL / "alpaca_en_demo.json").read_bytes()).hexdigest()
    assert f"<- file alpaca_en_demo.json (sha256 {sha[:16]})" in shown
    assert "<- file products.md (sha256" in shown  # the company's documents, through build cpt -> sft -> dedup
    spec_sha = hashlib.sha256((ROOT / "examples" / "acme" / "identity.yaml").read_bytes()).hexdigest()
    assert f"<- file identity.yaml (sha256 {spec_sha[:16]})" in shown  # build identity records its spec


def test_run_lineage_tells_apart_two_bases_with_the_same_config(walked):
    """A second tiny model: same config, other weights (seed 1). The runs' base fingerprints differ."""
    def run(*args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(["datakit", *args], cwd=walked["work"], env=walked["env"], capture_output=True,
                              text=True, timeout=1800)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    run("tiny-model", "build/tiny-llama-seed1", "--seed", "1")
    run("train", "examples/quickstart/sft.yaml", "--base-model", "build/tiny-llama-seed1",
        "--set", "stages.0.train.iters=2", "--set", "stages.0.train.eval_every=2", "--set", "stages.0.train.save_every=2")
    runs = json.loads(run("runs", "ls", "--json").stdout)
    assert len(runs) == 2
    a, b = (r["base_model"]["fingerprint"] for r in runs)
    assert a["config.json"] == b["config.json"] and a["model.safetensors"] != b["model.safetensors"]
    assert runs[0]["base_digest"] != runs[1]["base_digest"]
    assert [r["reports"] != [] for r in runs] == [True, False]  # only the first run was evaluated
