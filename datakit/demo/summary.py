"""The demo's last screen: each model's headline metrics, each gate's verdict, the time each step took."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from datakit.evals.report import read_report

HEADLINE = ["general.accuracy", "general.answer_nll", "domain.accuracy", "identity.pass_rate", "bleed.rate",
            "perplexity.general"]


def summarize(report_dir: Path, *, timings: dict[str, float], console: Console) -> Path:
    """Print the table and the verdicts, write timings.json beside the reports; returns the report folder."""
    r = read_report(report_dir / "report.json")
    (report_dir / "timings.json").write_text(json.dumps(timings, indent=2))
    names = list(r.models)
    table = Table(title="what fine-tuning did to the model", title_justify="left")
    table.add_column("metric")
    for n in names:
        table.add_column(n, justify="right")
    for metric in [m for m in HEADLINE if any(m in r.models[n] for n in names)]:
        table.add_row(metric, *(f"{r.models[n][metric]:.3f}" if metric in r.models[n] else "-" for n in names))
    console.print(table)
    colour = {"pass": "green", "underpowered": "yellow", "fail": "red"}
    for cand, verdicts in r.verdicts.items():  # the words report.json and the report use
        marks = ", ".join(f"{m} [{colour[v]}]{v}[/]" for m, v in verdicts.items())
        v = r.candidate_verdicts.get(cand, "pass")
        console.print(f"gate for [bold]{cand}[/]: [{colour[v]}]{v}[/] ({marks})")
    console.print("time: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))
    console.print(f"report: {report_dir / 'report.html'} (also report.md, report.json)")
    console.print(str(report_dir))
    return report_dir
