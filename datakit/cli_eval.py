"""`datakit eval` and `datakit compare`: regression suites on a model, and gates on base vs candidates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from datakit.cli_common import JsonOpt, app, emit_json, out


@app.command()
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Eval output folders: the baseline first, then candidates.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for report.md, report.html and report.json.")],
    gate: Annotated[Optional[Path], typer.Option("--gate", help="Gate YAML (e.g. recipes/gates/default-gate.yaml).")] = None,
    names: Annotated[Optional[str], typer.Option("--names", help="Comma-separated run names (end one in 'rerun' for a noise floor).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Paired comparison of eval runs on the same items; exit 1 when any gate fails."""
    from datakit.evals.compare import compare_runs

    if len(runs) < 2:
        raise typer.BadParameter("give a baseline and at least one candidate folder")
    res = compare_runs(runs, gate=gate, out_dir=out_dir, names=names.split(",") if names else None)
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
