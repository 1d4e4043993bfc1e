"""Fit and check the training-memory model (datakit/train/memory.py) against measured peaks.

    python benchmarks/memory_calibration.py [--cases 24] [--seed 0] [--out benchmarks/results/memory_calibration.json]

Each case trains 2 steps of a tiny Llama on each backend (real mlx-lm and TRL, rows that fill max_seq_len) in a
fresh process and records the measured peak (mx.get_peak_memory; torch: live tensor storages, memory_probe.py).
The activation coefficients are then fitted per backend and method family by non-negative least squares on
relative error, and every case's error under the fitted model is reported. Paste the coefficients into
memory.COEFFS; tests/test_train_memory.py checks fresh shapes.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
from pathlib import Path

from common import run_child


def cases(n: int, seed: int, methods: list[str]) -> list[dict]:
    rng, out = random.Random(seed), []
    while len(out) < n:
        h = rng.choice([64, 128, 192, 256, 384])
        c = {"method": rng.choice(methods), "hidden": h, "layers": rng.choice([1, 2, 3, 4]),
             "intermediate": int(h * rng.choice([2, 2.75, 4])), "embedding_rows": rng.choice([None, 2048, 8192]),
             "batch_size": rng.choice([1, 2, 4]), "max_seq_len": rng.choice([64, 128, 256, 512]),
             "gradient_checkpointing": rng.random() < 0.25}
        if c["batch_size"] * c["max_seq_len"] <= 1024:
            out.append(c)
    return out


def _known_and_terms(r: dict) -> tuple[int, dict[str, float]]:
    """What the model knows exactly (weights, adapter, gradients, optimizer, buffers) and the activation terms."""
    from datakit.train import memory
    from datakit.train.memory_probe import ProbeCase, probe_spec

    case = ProbeCase.model_validate(r["case"])
    shape, spec = memory.ModelShape.model_validate(r["shape"]), probe_spec(case)
    zero = {k: dict.fromkeys(memory.TERMS, 0.0) for k in memory.COEFFS}
    est = memory.estimate(shape, spec, case.backend, "cpu", coeffs=zero)
    terms = memory.activation_terms(shape, spec, method=case.method, batch_size=case.batch_size,
                                    max_seq_len=case.max_seq_len, checkpointed=case.gradient_checkpointing, act_bytes=4,
                                    trainable_bytes=est.parts["gradients"])
    return est.total_bytes, terms


def fit(results: list[dict]) -> tuple[dict, list[dict]]:
    """Non-negative least squares on relative error, per backend and method family."""
    import numpy as np
    from scipy.optimize import nnls

    from datakit.train.memory import TERMS, family

    coeffs, rows = {}, []
    for fam in sorted({family(r["case"]["backend"], r["case"]["method"]) for r in results}):
        group = [r for r in results if family(r["case"]["backend"], r["case"]["method"]) == fam]
        X, y = [], []
        for r in group:
            known, terms = _known_and_terms(r)
            X.append([terms[t] / r["measured"] for t in TERMS])
            y.append((r["measured"] - known) / r["measured"])
        c, _ = nnls(np.array(X), np.array(y))
        coeffs[fam] = {t: round(float(v), 3) for t, v in zip(TERMS, c)}
        for r, xr, yr in zip(group, X, y):
            rows.append({**r["case"], "measured_mib": round(r["measured"] / 2**20, 1),
                         "error": round(float(np.dot(xr, c) - yr), 3)})  # (estimate - measured) / measured
    return coeffs, rows


def child(case_json: str, work: str) -> None:
    from datakit.train.memory_probe import ProbeCase, probe_stage

    print(json.dumps(probe_stage(ProbeCase.model_validate_json(case_json), Path(work))))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default="lora,dora,full", help="comma-separated methods to draw cases from")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "memory_calibration.json")
    ap.add_argument("--child", nargs=2)
    ap.add_argument("--refit", type=Path, nargs="+", help="fit again from the measurements in earlier --out files")
    a = ap.parse_args()
    if a.child:
        return child(*a.child)
    if a.refit:
        return report([m for f in a.refit for m in json.loads(f.read_text())["measurements"]], a.out)
    from rich.progress import Progress

    results = []
    with tempfile.TemporaryDirectory() as tmp, Progress() as bar:
        todo = [{**c, "backend": b} for c in cases(a.cases, a.seed, a.methods.split(",")) for b in ("hf", "mlx")]
        task = bar.add_task("measuring peaks", total=len(todo))
        for c in todo:
            results.append(run_child(__file__, json.dumps(c), tmp))
            bar.advance(task)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"measurements": results}))  # kept even if the fit below fails
    report(results, a.out)


def report(results: list[dict], out: Path) -> None:
    coeffs, rows = fit(results)
    worst = max(abs(r["error"]) for r in rows)
    data = {"machine": platform.platform(), "python": sys.version.split()[0], "cases": len(rows),
            "coefficients": coeffs, "max_abs_relative_error": worst, "rows": rows, "measurements": results}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2))
    print(json.dumps({k: v for k, v in data.items() if k not in ("rows", "measurements")}, indent=2))


if __name__ == "__main__":
    main()
