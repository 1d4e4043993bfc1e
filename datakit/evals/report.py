"""Reports of a comparison: report.md (for people and PRs), report.json (everything, for scripts),
report.html (self-contained: inline CSS, plots as inline base64 PNG drawn with matplotlib's Agg backend).

Gate verdicts come first in every report: the question a reader has is "did it regress?".
"""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path

from datakit.errors import DatakitError
from datakit.evals.compare import CompareResult, RunComparison, compare_runs
from datakit.evals.gate import GateResult

LEARN = ("domain", "knowledge", "completion")  # metric prefixes the fine-tune should raise
KEEP = ("general",)  # prefixes it should not lower (forgetting shows up here first)


def report_runs(run_dirs: list[Path], *, gate: Path | None, out_dir: Path,
                names: list[str] | None = None) -> CompareResult:
    """`datakit compare`: compare the runs (baseline first), judge the gate, write the three reports."""
    result = compare_runs(run_dirs, gate=gate, names=names)
    write_reports(result, Path(out_dir))
    return result


def write_reports(result: CompareResult, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": out_dir / "report.md", "json": out_dir / "report.json", "html": out_dir / "report.html"}
    paths["json"].write_text(result.model_dump_json(indent=2))
    paths["md"].write_text(to_markdown(result))
    paths["html"].write_text(to_html(result))
    return paths


def read_report(path: Path) -> CompareResult:
    """Load a report.json (or its folder) back into a CompareResult."""
    p = path / "report.json" if path.is_dir() else path
    return CompareResult.model_validate_json(p.read_text())


def _f(x: float | None, digits: int = 4) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}g}"


def _signed(x: float | None) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:+.4g}"


def _ci(lo: float | None, hi: float | None) -> str:
    return "–" if lo is None or hi is None else f"[{_signed(lo)}, {_signed(hi)}]"


def _headline(r: CompareResult) -> str:
    """The comparison's verdict and each candidate's, in the words report.json and the CLI use."""
    if r.gate is None or r.verdict is None:
        return "No gate given: comparison only."
    per = []
    for c in (c for c in r.comparisons if c.gates):  # which model fails and which passes, not only a count
        counts = {v: sum(g.verdict == v for g in c.gates) for v in ("fail", "underpowered", "pass")}
        said = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
        per.append(f"{c.name} {r.candidate_verdicts[c.name]} (gates: {said})")
    extra = ""
    if r.underpowered:
        extra = (f"; underpowered gates need more items to decide (on_underpowered: {r.gate.on_underpowered}: "
                 + ("they fail the comparison)" if r.gate.on_underpowered == "fail" else "reported, not failed)"))
    return f"**{r.verdict.upper()}**: {'; '.join(per)}{extra}."


def headline(r: CompareResult) -> str:
    """The headline as plain text (the CLI's last line and the HTML's)."""
    return _headline(r).replace("**", "")


def _gate_change(g: GateResult) -> tuple[str, str]:
    """Relative gates: the change vs base and its CI; absolute gates: the value's CI and the headroom."""
    if g.kind in ("min", "max"):
        sign = 1.0 if g.kind == "min" else -1.0  # headroom > 0 means inside the limit
        return f"headroom {_signed(sign * g.change)}", f"[{_f(g.ci_low + g.limit)}, {_f(g.ci_high + g.limit)}]"
    pct = "%" if g.kind.endswith("_pct") else ""
    return _signed(g.change) + pct, _ci(g.ci_low, g.ci_high) + pct


def gate_rows(r: CompareResult) -> list[list[str]]:
    rows = []
    for g in (g for c in r.comparisons for g in c.gates):
        p = _f(g.p_value, 3) + (f" (adj {_f(g.p_adjusted, 3)})" if g.p_adjusted is not None else "")
        rows.append([g.candidate, g.rule, g.label, _f(g.base_value), _f(g.cand_value), *_gate_change(g), p,
                     _mde(g), f"{g.n} ({g.test})"])
    return rows


def _mde(g: GateResult) -> str:
    """The smallest worsening the comparison could see, beside the margin it must resolve (relative gates)."""
    if g.mde is None:
        return "–"
    pct = "%" if g.kind.endswith("_pct") else ""
    need = f", needs ~{g.items_needed} items" if g.verdict == "underpowered" and g.items_needed else ""
    return f"{_f(g.mde, 3)}{pct} {'≤' if g.mde <= g.limit + 1e-12 else '>'} {g.limit:g}{pct}{need}"


GATE_HEAD = ["candidate", "gate", "verdict", "base", "candidate value", "change", "95% CI", "p", "MDE vs margin",
             "n (test)"]


def value_rows(r: CompareResult) -> list[list[str]]:
    """One row per metric: every run's value ± stderr, side by side."""
    rows = []
    for i, m in enumerate(r.metrics):
        base = r.comparisons[0].metrics[i]
        cells = [m, f"{_f(base.base_value)} ± {_f(base.base_stderr, 2)}" if base.base_value is not None else "–"]
        cells += [f"{_f(c.metrics[i].cand_value)} ± {_f(c.metrics[i].cand_stderr, 2)}"
                  if c.metrics[i].cand_value is not None else "–" for c in r.comparisons]
        rows.append(cells)
    return rows


def delta_rows(r: CompareResult, c: RunComparison) -> list[list[str]]:
    rows = []
    for d in c.metrics:
        arrow = "" if d.delta in (None, 0) else ("better" if (d.delta > 0) == d.higher_is_better else "worse")
        rows.append([d.metric, _signed(d.delta), arrow, _ci(d.ci_low, d.ci_high),
                     f"{_f(d.p_value, 3)} ({d.test})" if d.test else "–", str(d.n),
                     _f(r.noise.get(d.metric)) if r.noise else "–"])
    return rows


DELTA_HEAD = ["metric", "change", "", "95% CI (paired)", "p (test)", "n paired", "noise floor"]


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows])


def _ids(ids: list[str], limit: int = 50) -> str:
    shown = ", ".join(f"`{i}`" for i in ids[:limit])
    return (shown + (f", … ({len(ids) - limit} more)" if len(ids) > limit else "")) or "none"


def to_markdown(r: CompareResult) -> str:
    base = r.runs[0]
    out = [f"# Eval comparison: {base.suite}", "", _headline(r), ""]
    if r.gate is not None:
        out += ["## Gates", "", _md_table(GATE_HEAD, gate_rows(r)), ""]
    if r.failed:
        out += ["### Failed gates", ""] + [f"- **{g.candidate}**: {g.message}" for g in r.failed] + [""]
    if r.underpowered:
        out += ["### Underpowered gates (need more items to decide)", ""]
        out += [f"- **{g.candidate}**: {g.message}" for g in r.underpowered] + [""]
    runs = [[i.name, i.role, i.model, i.adapter or "–", str(i.n_items)] for i in r.runs]
    out += ["## Runs", "", _md_table(["name", "role", "model", "adapter", "items"], runs), ""]
    out += ["## Metrics (value ± stderr)", "", _md_table(["metric"] + [i.name for i in r.runs], value_rows(r)), ""]
    for c in r.comparisons:
        out += [f"### {c.name} vs {base.name} ({c.role})", "", _md_table(DELTA_HEAD, delta_rows(r, c)), ""]
    out += ["## Flips (pass/fail changes against the baseline)", ""]
    for c in r.comparisons:
        f = c.flips
        out += [f"- **{c.name}** ({c.role}, {f.n_matched} items matched): newly failed {len(f.newly_failed)}: "
                f"{_ids(f.newly_failed)}; newly passed {len(f.newly_passed)}: {_ids(f.newly_passed)}"]
    if r.noise_flips is not None:
        out += ["", f"Noise floor: a rerun of the baseline flips up to {r.noise_flips} items; candidate flips "
                "at or under that are indistinguishable from run-to-run noise."]
    if r.warnings:
        out += ["", "## Warnings", ""] + [f"- {w}" for w in r.warnings]
    s = r.settings
    out += ["", f"_Paired bootstrap ({s.get('n_boot')} resamples, seed {s.get('seed')}), "
            f"{100 * (1 - float(s.get('alpha', 0.05))):g}% intervals; exact McNemar for pass/fail items, "
            "sign-flip test for continuous scores, whole-cluster resampling and sign flips when items share a "
            f"group_id. MDE: the smallest worsening each comparison detects at alpha {s.get('alpha')} with "
            f"{100 * float(s.get('power', 0.8)):g}% power; a relative gate whose MDE exceeds its margin is "
            "underpowered, never a pass._", ""]
    return "\n".join(out)


# ---- plots ------------------------------------------------------------------------------------


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _pyplot():
    try:
        import matplotlib
    except ImportError as e:
        raise DatakitError("report.html needs matplotlib; install it with `pip install 'datakit[eval]'`") from e
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plotted_metrics(r: CompareResult) -> list[str]:
    """The metrics worth a panel: with a gate, the gated ones and what the fine-tune should raise (the table
    below the plot still lists every metric); without one, all."""
    gated = {g.metric for c in r.comparisons for g in c.gates}
    if not gated:
        return list(r.metrics)
    wanted = gated | set(learning_metrics(r))
    return [m for m in r.metrics if m in wanted]


def bars_png(r: CompareResult) -> str:
    """One panel per plotted metric: a bar per run with its stderr as the error bar."""
    plt = _pyplot()
    shown = plotted_metrics(r)
    cols = max(1, min(4, len(shown)))
    rows = max(1, math.ceil(len(shown) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    names = [i.name for i in r.runs]
    colors = ["#777777"] + [("#bbbbbb" if c.role == "rerun" else f"C{k}") for k, c in enumerate(r.comparisons)]
    for j, m in enumerate(shown):
        i = r.metrics.index(m)
        ax = axes[j // cols][j % cols]
        first = r.comparisons[0].metrics[i]
        vals = [first.base_value] + [c.metrics[i].cand_value for c in r.comparisons]
        errs = [first.base_stderr] + [c.metrics[i].cand_stderr for c in r.comparisons]
        ax.bar(range(len(names)), [v if v is not None else 0 for v in vals],
               yerr=[e if e is not None else 0 for e in errs], color=colors, capsize=3)
        ax.set_title(m + ("  (lower is better)" if not first.higher_is_better else ""), fontsize=9)
        ax.set_xticks(range(len(names)), names, rotation=30, fontsize=8, ha="right")
    for j in range(len(shown), rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.tight_layout()
    png = _png(fig)
    plt.close(fig)
    return png


def _gain_metrics(c: RunComparison, prefixes: tuple[str, ...]) -> list[str]:
    """Higher-is-better metrics with these prefixes (NLL is left out: other units)."""
    return [d.metric for d in c.metrics if d.metric.split(".")[0] in prefixes and d.higher_is_better]


def _mean_gain(c: RunComparison, metrics: list[str]) -> float | None:
    xs = [d.delta for d in c.metrics if d.metric in metrics and d.delta is not None]
    return sum(xs) / len(xs) if xs else None


def learning_metrics(r: CompareResult) -> list[str]:
    """What the fine-tune should raise: the domain metrics when the suite has them (`knowledge.*` also scores
    the general questions, so averaging it in hides a real domain gain), else knowledge and completion."""
    if not r.comparisons:
        return []
    c = r.comparisons[0]
    return _gain_metrics(c, ("domain",)) or _gain_metrics(c, LEARN)


def scatter_png(r: CompareResult) -> str | None:
    """Forgetting vs learning: x = change on the learning metrics, y = change on general metrics."""
    learn = learning_metrics(r)
    keep = _gain_metrics(r.comparisons[0], KEEP) if r.comparisons else []
    points = [(c, _mean_gain(c, learn), _mean_gain(c, keep)) for c in r.comparisons]
    points = [(c, x or 0.0, y or 0.0) for c, x, y in points if x is not None or y is not None]
    if not points:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 4.0))
    ax.axhline(0, color="#999", lw=0.8)
    ax.axvline(0, color="#999", lw=0.8)
    for k, (c, x, y) in enumerate(points):
        ax.scatter([x], [y], s=60, color="#bbbbbb" if c.role == "rerun" else f"C{k}")
        ax.annotate(c.name, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel(f"learning: change on {', '.join(learn)} (higher is better)", fontsize=8)
    ax.set_ylabel(f"forgetting: change on {', '.join(keep)}", fontsize=8)
    ax.set_title("learning vs forgetting, per candidate", fontsize=10)
    fig.tight_layout()
    png = _png(fig)
    plt.close(fig)
    return png


# ---- html -------------------------------------------------------------------------------------

HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>Eval comparison: {{ suite }}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:.6em 0 1.4em}th,td{border:1px solid #ddd;padding:3px 8px;text-align:left}
th{background:#f4f4f4}.pass{color:#1a7f37;font-weight:600}.fail{color:#cf222e;font-weight:700}
.underpowered,.breach{color:#9a6700;font-weight:600}.verdict{font-size:1.3em}.better{color:#1a7f37}
.worse{color:#cf222e}code{background:#f4f4f4;padding:0 3px}img{max-width:100%}
</style></head><body>
<h1>Eval comparison: {{ suite }}</h1>
<p class="verdict {{ verdict or 'pass' }}">{{ headline }}</p>
{% if gates %}<h2>Gates</h2>
<table id="gates"><tr>{% for h in gate_head %}<th>{{ h }}</th>{% endfor %}</tr>
{% for row in gates %}<tr>{% for cell in row %}<td{% if loop.index == 3 %} class="{{ cell.split(' ')[0] }}"{% endif %}>{{ cell }}</td>{% endfor %}</tr>{% endfor %}
</table>{% endif %}
{% if failed %}<h3>Failed gates</h3><ul>{% for g in failed %}<li><b>{{ g.candidate }}</b>: {{ g.message }}</li>{% endfor %}</ul>{% endif %}
{% if underpowered %}<h3>Underpowered gates</h3><ul>{% for g in underpowered %}<li><b>{{ g.candidate }}</b>: {{ g.message }}</li>{% endfor %}</ul>{% endif %}
<h2>Runs</h2><table><tr><th>name</th><th>role</th><th>model</th><th>adapter</th><th>items</th></tr>
{% for i in runs %}<tr><td>{{ i.name }}</td><td>{{ i.role }}</td><td>{{ i.model }}</td><td>{{ i.adapter or '–' }}</td><td>{{ i.n_items }}</td></tr>{% endfor %}</table>
<h2>Metrics</h2><img alt="metric values per run" src="data:image/png;base64,{{ bars }}">
<table><tr><th>metric</th>{% for i in runs %}<th>{{ i.name }}</th>{% endfor %}</tr>
{% for row in values %}<tr>{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>{% endfor %}</table>
{% if scatter %}<h2>Learning vs forgetting</h2><img alt="learning vs forgetting" src="data:image/png;base64,{{ scatter }}">{% endif %}
{% for c in deltas %}<h3>{{ c.name }} vs {{ base }} ({{ c.role }})</h3>
<table><tr>{% for h in delta_head %}<th>{{ h }}</th>{% endfor %}</tr>
{% for row in c.rows %}<tr>{% for cell in row %}<td class="{{ cell if loop.index == 3 else '' }}">{{ cell }}</td>{% endfor %}</tr>{% endfor %}</table>
<p>Newly failed ({{ c.flips.newly_failed|length }}): {% for i in c.flips.newly_failed %}<code>{{ i }}</code> {% endfor %}<br>
Newly passed ({{ c.flips.newly_passed|length }}): {% for i in c.flips.newly_passed %}<code>{{ i }}</code> {% endfor %}</p>
{% endfor %}
{% if noise_flips is not none %}<p>Noise floor: a rerun of the baseline flips up to {{ noise_flips }} items.</p>{% endif %}
{% if warnings %}<h2>Warnings</h2><ul>{% for w in warnings %}<li>{{ w }}</li>{% endfor %}</ul>{% endif %}
</body></html>
"""


def to_html(r: CompareResult) -> str:
    try:
        import jinja2
    except ImportError as e:
        raise DatakitError("report.html needs jinja2; install it with `pip install 'datakit[eval]'`") from e
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    deltas = [{"name": c.name, "role": c.role, "rows": delta_rows(r, c), "flips": c.flips} for c in r.comparisons]
    return env.from_string(HTML).render(
        suite=r.runs[0].suite, verdict=r.verdict, headline=headline(r), gate_head=GATE_HEAD,
        gates=gate_rows(r), failed=r.failed, underpowered=r.underpowered, runs=r.runs, values=value_rows(r),
        bars=bars_png(r), scatter=scatter_png(r), deltas=deltas, base=r.runs[0].name, delta_head=DELTA_HEAD,
        noise_flips=r.noise_flips, warnings=r.warnings)
