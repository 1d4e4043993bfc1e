"""The notebooks in notebooks/ run top to bottom, offline, on this venv's Python, and teach what they claim.

Each notebook is executed once (nbclient, a fresh ipykernel, cwd = the repo root) into a workspace under
the test's tmp dir; only the tiny base model is shared, pre-trained once per test session into the session's
tmp dir (`base_cache`, through DATAKIT_BASE_CACHE; the demo test uses it too). The committed .ipynb files
carry no outputs.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbclient  # the [dev] extra: a missing one must fail the suite, not skip the notebooks
import nbformat
import pytest

from tests.conftest import EXTERNAL, ROOT

NOTEBOOKS = ROOT / "notebooks"
BUILD, TRAIN = "01_build_data", "02_train_and_eval"
CELL_TIMEOUT = 2400  # the first pre-training of the base model is the longest cell (1-2 minutes on 2 idle cores)


def _execute(name: str, work: Path, base_cache: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    env = {"DATAKIT_NB_WORK": str(work), "DATAKIT_EXTERNAL_DATA": str(EXTERNAL), "DATAKIT_BASE_CACHE": str(base_cache),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with pytest.MonkeyPatch.context() as mp:  # the kernel inherits this process's environment
        for k, v in env.items():
            mp.setenv(k, v)
        # "python3" resolves to the running interpreter when ipykernel is installed in it (checked below)
        client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                                         resources={"metadata": {"path": str(ROOT)}})
        client.execute()
    return nb


def _text(nb: nbformat.NotebookNode) -> str:
    """Everything the notebook printed or displayed, as plain text."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                parts.append(out.text)
            elif out.output_type in ("display_data", "execute_result"):
                parts.append(out.data.get("text/plain", ""))
    return "\n".join(parts)


def _kernel_python(text: str) -> str:
    """The interpreter the first cell says it runs on."""
    return re.search(r"^python\s+(\S+)$", text, re.M).group(1)


@pytest.fixture(scope="module")
def build_nb(tmp_path_factory: pytest.TempPathFactory, base_cache: Path) -> tuple[nbformat.NotebookNode, Path]:
    work = tmp_path_factory.mktemp("notebooks")
    return _execute(BUILD, work, base_cache), work / BUILD


@pytest.fixture(scope="module")
def train_nb(tmp_path_factory: pytest.TempPathFactory, base_cache: Path) -> tuple[nbformat.NotebookNode, Path]:
    work = tmp_path_factory.mktemp("notebooks")
    return _execute(TRAIN, work, base_cache), work / TRAIN


@pytest.mark.parametrize("name", [BUILD, TRAIN])
def test_the_committed_notebooks_carry_no_outputs(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{name} has no code cells"
    for i, cell in enumerate(code):
        assert cell.outputs == [] and cell.execution_count is None, f"{name}: code cell {i} has outputs; strip them"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.parametrize("name", [BUILD, TRAIN])
def test_the_notebooks_use_the_python_api_not_shell_commands(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not re.search(r"^\s*[!%]", cell.source, re.M), f"{name}: shell or magic line in\n{cell.source}"


@pytest.mark.timeout(2400)
def test_the_build_data_notebook_mixes_identity_at_30_percent_and_lints_it(build_nb) -> None:
    nb, work = build_nb
    text = _text(nb)
    assert _kernel_python(text) == sys.executable  # the kernel ran on this venv's interpreter
    share = float(re.search(r"identity share of mixed: ([0-9.]+)", text).group(1))
    assert abs(share - 0.30) < 0.02
    # what the notebook printed is what its registry holds
    from datakit.registry.store import Registry

    reg = Registry(work / "registry")
    mixed = reg.resolve("mixed")
    assert mixed.version == "v1" and mixed.parents
    identity = [c for c in mixed.stats["components"] if c["kind"] == "identity"]
    assert abs(sum(c["realized_share"] for c in identity) - share) < 0.001
    assert reg.resolve("acme-sft-split").stats["rows"]["valid"] > 0
    # lint: the mixture passes, identity at 5% and the vendor-naming seeds fail
    assert "ok: mixed@v1" in text
    assert "FAILED: mixed-identity-5@v1" in text and "identity_share" in text
    assert "ChatGTP" in text and "0penAI" in text
    # verify caught the flipped byte, and the registry was whole again afterwards
    assert "sha256 mismatch" in text and "exit code 1" in text and "verified 2 version(s): ok" in text


@pytest.mark.timeout(3600)
def test_the_train_and_eval_notebook_writes_a_report_for_base_and_the_tuned_model(train_nb) -> None:
    nb, work = train_nb
    text = _text(nb)
    assert _kernel_python(text) == sys.executable
    report = json.loads((work / "report" / "report.json").read_text())
    assert set(report["models"]) == {"base", "mixed"}
    base, tuned = report["models"]["base"], report["models"]["mixed"]
    for metric in ("general.accuracy", "domain.accuracy", "identity.pass_rate", "bleed.rate", "perplexity.general"):
        assert metric in base and metric in tuned, metric
    assert set(report["verdicts"]["mixed"]) == {"general.accuracy", "general.answer_nll", "domain.accuracy",
                                               "identity.pass_rate", "bleed.rate"}
    assert set(report["verdicts"]["mixed"].values()) <= {"pass", "fail", "underpowered"}
    # the fine-tune did something: the base never says it is Acme Assistant, the tuned model learns to
    assert base["identity.pass_rate"] == 0 and tuned["identity.pass_rate"] >= 0.5
    assert tuned["domain.accuracy"] > base["domain.accuracy"]
    # the run folder keeps its lineage: data versions with hashes, the base model's fingerprint
    lineage = json.loads(next((work / "runs").glob("mixed/*/lineage.json")).read_text())
    assert [d["ref"] for d in lineage["data"]] == ["acme-cpt-split@v1", "mixed@v1"]
    assert "exit code" in text and "| verdict:" in text  # the notebook printed the compare verdict


def test_the_notebooks_are_generated_from_their_sources(tmp_path: Path) -> None:
    import subprocess

    subprocess.run([sys.executable, str(NOTEBOOKS / "src" / "gen.py"), str(tmp_path)], check=True, capture_output=True)
    for name in (BUILD, TRAIN):
        assert (tmp_path / f"{name}.ipynb").read_text() == (NOTEBOOKS / f"{name}.ipynb").read_text(), (
            f"{name}.ipynb differs from notebooks/src/{name}.py: run `python notebooks/src/gen.py`")
