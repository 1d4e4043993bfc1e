"""`datakit eval` and `datakit compare`: regression suites on a model, and gates on base vs candidates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from datakit.cli.common import JsonOpt, app, emit_json, out, reg
from datakit.errors import DatakitError


@app.command()
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Eval output folders: the baseline first, then candidates.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for report.md, report.html and report.json.")],
    gate: Annotated[Optional[Path], typer.Option("--gate", help="Gate YAML (e.g. recipes/gates/default-gate.yaml).")] = None,
    names: Annotated[Optional[str], typer.Option("--names", help="Comma-separated run names (end one in 'rerun' for a noise floor).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Paired comparison of eval runs on the same items; exit 1 when any gate fails."""
    from datakit.evals.report import report_runs

    if len(runs) < 2:
        raise typer.BadParameter("give a baseline and at least one candidate folder")
    res = report_runs(runs, gate=gate, out_dir=out_dir, names=names.split(",") if names else None)
    if as_json:
        emit_json(res.model_dump(mode="json"))
    else:
        for g in res.failed:
            out.print(f"[red]FAIL[/] {g.message}")
        for g in res.underpowered:
            out.print(f"[yellow]UNDERPOWERED[/] {g.message}")
        for w in res.warnings:
            out.print(f"warning: {w}")
        out.print(f"{'all gates passed' if res.ok else f'{len(res.failed)} gate(s) failed'}; reports in {out_dir}")
    if not res.ok:
        raise typer.Exit(1)


@app.command(name="eval")
def eval_cmd(
    suite: Annotated[Path, typer.Argument(help="Eval suite YAML (schemas/suite.schema.json).")],
    model: Annotated[str, typer.Option("--model", help="Model folder, or openai:MODEL@BASE_URL with --backend openai.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for results.json.")],
    backend: Annotated[str, typer.Option("--backend", help="hf, mlx or openai.")] = "hf",
    adapter: Annotated[Optional[Path], typer.Option("--adapter", help="Adapter folder (peft for hf, mlx-lm for mlx).")] = None,
    with_base: Annotated[Optional[Path], typer.Option("--with-base", help="hf with --adapter: also evaluate the base (adapter off) from the same loaded model into this folder, and add forgetting.kl.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a suite's probes on a model (and adapter); writes results.json with every item and metric."""
    from datakit.evals.run import evaluate, evaluate_with_base

    if backend not in ("hf", "mlx", "openai"):
        raise typer.BadParameter(f"--backend {backend}: use hf, mlx or openai")
    if with_base is None:
        res = evaluate(reg(), suite, backend=backend, model=model, adapter=str(adapter) if adapter else None, out_dir=out_dir)
    elif backend != "hf" or adapter is None:
        raise DatakitError("--with-base needs --backend hf and --adapter: the base is the same model with the adapter off")
    else:
        res = evaluate_with_base(reg(), suite, model=model, adapter=adapter, out_dir=out_dir, base_dir=with_base)
    if as_json:
        emit_json({"out": str(out_dir / "results.json"), "metrics": {k: v.model_dump() for k, v in res.metrics.items()}})
        return
    for name, m in res.metrics.items():
        out.print(f"  {name:28} {m.value:.3f} ± {m.stderr:.3f} (n={m.n})")
    out.print(f"results: {out_dir / 'results.json'}")
