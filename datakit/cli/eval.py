"""`datakit eval` and `datakit compare`: regression suites on a model, and gates on base vs candidates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import click
import typer
from typer.core import TyperGroup

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
    from datakit.evals.report import headline, report_runs

    if len(runs) < 2:
        raise typer.BadParameter("give a baseline and at least one candidate folder")
    res = report_runs(runs, gate=gate, out_dir=out_dir, names=names.split(",") if names else None)
    if as_json:
        emit_json(res.model_dump(mode="json"))
    else:
        for g in res.failed:
            out.print(f"[red]{g.candidate}[/] {g.message}")
        for g in res.underpowered:
            out.print(f"[yellow]{g.candidate}[/] {g.message}")
        for w in res.warnings:
            out.print(f"warning: {w}")
        out.print(f"{headline(res)} Reports in {out_dir}", markup=False)
    if not res.ok:
        raise typer.Exit(1)


class _RunByDefault(TyperGroup):
    """`datakit eval SUITE ...` runs `datakit eval run SUITE ...`; `datakit eval plan ...` is its own command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


eval_app = typer.Typer(cls=_RunByDefault, no_args_is_help=True,
                       help="Run a suite on a model (`datakit eval SUITE ...`), or size one (`datakit eval plan`).")
app.add_typer(eval_app, name="eval")


@eval_app.command("run")
def eval_run(
    suite: Annotated[Path, typer.Argument(help="Eval suite YAML (schemas/suite.schema.json).")],
    model: Annotated[str, typer.Option("--model", help="Model folder, or openai:MODEL@BASE_URL with --backend openai.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for results.json.")],
    backend: Annotated[str, typer.Option("--backend", help="hf, mlx or openai.")] = "hf",
    adapter: Annotated[Optional[Path], typer.Option("--adapter", help="Adapter folder (peft for hf, mlx-lm for mlx).")] = None,
    with_base: Annotated[Optional[Path], typer.Option("--with-base", help="hf with --adapter: also evaluate the base (adapter off) from the same loaded model into this folder, and add forgetting.kl.")] = None,
    samples: Annotated[Optional[int], typer.Option("--samples", help="Sampled answers per generation probe; each item scores the share that pass (same seeds on every model).")] = None,
    temperature: Annotated[Optional[float], typer.Option("--temperature", help="Sampling temperature (overrides the suite's; needed with --samples > 1).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Sampling seed (overrides the suite's): a rerun with another seed measures run-to-run noise.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a suite's probes on a model (and adapter); writes results.json with every item and metric."""
    from datakit.evals.run import evaluate, evaluate_with_base

    if backend not in ("hf", "mlx", "openai"):
        raise typer.BadParameter(f"--backend {backend}: use hf, mlx or openai")
    gen = {"samples": samples, "temperature": temperature, "seed": seed}
    if with_base is None:
        res = evaluate(reg(), suite, backend=backend, model=model, adapter=str(adapter) if adapter else None,
                       out_dir=out_dir, generation=gen)
    elif backend != "hf" or adapter is None:
        raise DatakitError("--with-base needs --backend hf and --adapter: the base is the same model with the adapter off")
    else:
        res = evaluate_with_base(reg(), suite, model=model, adapter=adapter, out_dir=out_dir, base_dir=with_base,
                                 generation=gen)
    if as_json:
        emit_json({"out": str(out_dir / "results.json"), "metrics": {k: v.model_dump() for k, v in res.metrics.items()}})
        return
    for name, m in res.metrics.items():
        out.print(f"  {name:28} {m.value:.3f} ± {m.stderr:.3f} (n={m.n})")
    out.print(f"results: {out_dir / 'results.json'}")


@eval_app.command("plan")
def eval_plan(
    metric: Annotated[str, typer.Option("--metric", help="Metric to size, e.g. general.accuracy.")] = "general.accuracy",
    max_drop: Annotated[Optional[float], typer.Option("--max-drop", help="The gate's margin, in the metric's units (0.02 = 2 points).")] = None,
    base_accuracy: Annotated[float, typer.Option("--base-accuracy", help="The base model's expected pass rate.")] = 0.8,
    discordance: Annotated[Optional[float], typer.Option("--discordance", help="Share of items whose pass/fail differs between base and candidate (from an earlier compare); default: independent errors, an upper bound.")] = None,
    sd: Annotated[Optional[float], typer.Option("--sd", help="Continuous metric: standard deviation of per-item changes (e.g. of answer NLL).")] = None,
    paraphrases: Annotated[int, typer.Option("--paraphrases", help="Wordings per question (items sharing a group_id).")] = 1,
    icc: Annotated[float, typer.Option("--icc", help="How alike the paraphrases of one question score (0-1).")] = 0.5,
    suite: Annotated[Optional[Path], typer.Option("--suite", help="Check a suite against --gate instead: enough items for each gate?")] = None,
    gate: Annotated[Optional[Path], typer.Option("--gate", help="Gate YAML for --suite.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """How many items a suite needs to detect a drop (80% and 90% power), or whether a suite can decide its gate."""
    from datakit.evals import plan

    if suite is not None or gate is not None:
        if suite is None or gate is None:
            raise DatakitError("give both --suite and --gate to check a suite, or --max-drop to size one")
        checks = plan.check_suite(*plan.load_for_check(reg(), suite, gate), base_rate=base_accuracy,
                                  discordance=discordance)
        if as_json:
            emit_json([c.model_dump() for c in checks])
        for c in [] if as_json else checks:
            out.print(("[green]ok[/] " if c.ok else "[yellow]warning[/] " if c.ok is False else "") + c.message)
        return
    if max_drop is None:
        raise DatakitError("give --max-drop (the gate's margin), e.g. --max-drop 0.02")
    p = plan.plan_items(metric, max_drop, base_rate=base_accuracy, discordance=discordance, sd=sd,
                        paraphrases=paraphrases, icc=icc)
    if as_json:
        emit_json(p.model_dump())
        return
    basis = f"discordance {p.discordance:.3f}" if p.binary else f"sd {p.sd:g} of per-item changes"
    out.print(f"to detect a drop of {max_drop:g} in {metric} (alpha {p.alpha:g}, {basis}):")
    for r in p.rows:
        shape = f" = {r.clusters} questions x {r.paraphrases} paraphrases (icc {icc:g})" if r.paraphrases > 1 else ""
        out.print(f"  {r.power:.0%} power: {r.total_items} items{shape}")
    if p.binary and discordance is None:
        out.print(f"(independent errors, an upper bound; if every changed item were a drop, {p.best_case_items} items "
                  "would do at 80% power. Pass --discordance from a first comparison for a real figure.)")
