"""The gate on real models: the demo's pre-trained tiny base, evaluated with sampling, against a second sampled
evaluation of the same weights (must not fail) and against a copy with noise added to its weights (must fail).
Sampled pass rates and the answer likelihood are what let 63 probes decide."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from datakit.demo import general

GATE = """holm: true
gates:
  - {metric: general.accuracy, max_drop: 0.15, require_significance: true}
  - {metric: general.answer_nll, max_rise_pct: 50}
"""


def _damage(src: Path, dst: Path, scale: float) -> Path:
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    weights = load_file(dst / "model.safetensors")
    g = torch.Generator().manual_seed(0)
    noisy = {k: v + scale * v.float().std() * torch.randn(v.shape, generator=g) if v.ndim == 2 else v
             for k, v in weights.items()}
    save_file(noisy, dst / "model.safetensors")
    return dst


def test_a_second_sampled_run_of_the_same_weights_passes_and_noisy_weights_fail(demo_base, cli, tmp_path):
    (tmp_path / "probes.jsonl").write_text("".join(json.dumps(p) + "\n" for p in general.probes()))
    (tmp_path / "suite.yaml").write_text("name: general\nprobes: probes.jsonl\n"
                                         "generation: {max_new_tokens: 24, batch_size: 32}\n")
    (tmp_path / "gate.yaml").write_text(GATE)
    same = shutil.copytree(demo_base, tmp_path / "same-weights")  # another folder: a candidate, not a rerun
    noisy = _damage(demo_base, tmp_path / "noisy", 0.3)
    runs = {"base": (demo_base, "0"), "same": (same, "1"), "noisy": (noisy, "0")}
    for name, (model, seed) in runs.items():
        p = cli("eval", str(tmp_path / "suite.yaml"), "--model", str(model), "--samples", "4", "--temperature", "0.7",
                "--seed", seed, "--out", str(tmp_path / name))
        assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads((tmp_path / "base" / "results.json").read_text())
    assert res["settings"]["generation"]["samples"] == 4
    assert all(it["samples"] == 4 for it in res["items"] if it["type"] == "knowledge")
    assert sum(it["type"] == "answer" for it in res["items"]) == 63

    ok = cli("compare", str(tmp_path / "base"), str(tmp_path / "same"), "--gate", str(tmp_path / "gate.yaml"),
             "--out", str(tmp_path / "r-same"), "--json", check_json=True)
    verdicts = ok.json["verdicts"]["same"]
    assert "fail" not in verdicts.values(), ok.stdout
    bad = cli("compare", str(tmp_path / "base"), str(tmp_path / "noisy"), "--gate", str(tmp_path / "gate.yaml"),
              "--out", str(tmp_path / "r-noisy"), "--json", check_json=True)
    assert bad.returncode == 1 and "fail" in bad.json["verdicts"]["noisy"].values(), bad.stdout
    md = (tmp_path / "r-noisy" / "report.md").read_text()
    assert "MDE vs margin" in md and "sign-flip" in md
