"""`datakit demo`: the whole loop on a fictional company, each step run as the command a user would type."""

from __future__ import annotations

import sys
from contextlib import nullcontext, redirect_stdout
from pathlib import Path
from typing import Annotated, Any, Optional

import orjson
import typer

from datakit.cli.common import app, emit_json, err, out, reg, registry_root
from datakit.cli.registry import registry_ls


def run_in_process(argv: list[str]) -> int:
    """The demo's command runner: one `datakit ...` invocation in this process; returns its exit code."""
    from datakit.cli import app as full_app  # the package's app, with every command registered

    rv = full_app(argv, standalone_mode=False)
    return rv if isinstance(rv, int) else 0  # a command's typer.Exit(code) comes back as its return value


@app.command()
def demo(
    data: Annotated[Path, typer.Option(help="Folder with the external demo datasets.")] = Path("../shared/data/external"),
    quick: Annotated[bool, typer.Option("--quick", help="A shorter CPT stage (the full demo takes about 2 minutes on 2 cores).")] = False,
    backend: Annotated[str, typer.Option(help="Training and eval backend: hf, or mlx (fast on Apple silicon only).")] = "hf",
    base_model: Annotated[Optional[Path], typer.Option("--base-model", help="A real model folder instead of the tiny "
                                                       "pre-trained one (default: the tiny one).")] = None,
    work: Annotated[Path, typer.Option(help="Folder for the demo's data files (and registry, unless --registry).")] = Path("build/demo"),
    base_cache: Annotated[Path, typer.Option(envvar="DATAKIT_BASE_CACHE", help="Where the tiny base model is pre-trained once and reused.")] = Path("build/demo/base"),
    runs: Annotated[Path, typer.Option(help="Folder for training runs, eval results and the report.")] = Path("runs/demo"),
    ingest_only: Annotated[bool, typer.Option("--ingest-only", help="Only ingest the external datasets and print the catalog.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object at the end (report folder, gate "
                                                         "verdicts, seconds per step); the steps' output goes to "
                                                         "stderr.")] = False,
) -> None:
    """The whole loop on a fictional company: data, two mixtures, training, evals, a gate and a report."""
    from datakit.demo import DemoConfig, run_demo
    from datakit.demo import quick as quick_size
    from datakit.demo.external import ingest_external

    # with --json, stdout carries only the final JSON: the steps (and the commands they run in this process,
    # which print to stdout) are sent to stderr
    console = err if as_json else out
    with redirect_stdout(sys.stderr) if as_json else nullcontext():
        if ingest_only:
            ingest_external(reg(), data, console)
        else:
            cfg = DemoConfig(external=data, work=work, runs=runs, backend=backend, base_model=base_model,
                             base_cache=base_cache, registry=registry_root() or work / "registry")
            report = run_demo(quick_size(cfg) if quick else cfg, console, run_in_process)
    if ingest_only:
        registry_ls(as_json=as_json)
    elif as_json:
        emit_json(demo_result(report))


def demo_result(report: Path) -> dict[str, Any]:
    """What `demo --json` prints: the report folder, each candidate's gate verdicts, seconds per step."""
    r = orjson.loads((report / "report.json").read_bytes())
    timings = orjson.loads((report / "timings.json").read_bytes())
    return {"report": str(report), "ok": r.get("ok"), "verdict": r.get("verdict"),
            "candidate_verdicts": r.get("candidate_verdicts", {}), "verdicts": r.get("verdicts", {}), "timings": timings}
