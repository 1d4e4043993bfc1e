"""`datakit runs ls` and `datakit runs show RUN`: the training runs, and one run's lineage from its eval reports
back to the source files its data was ingested from."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from datakit.cli.common import JsonOpt, app, emit_json, err, out, registry_root

if TYPE_CHECKING:
    from datakit.registry.ancestry import Ancestry
    from datakit.train.run_index import RunRecord

runs_app = typer.Typer(help="Training runs: what each trained on, from which base, and the reports that judged it.",
                       no_args_is_help=True)
app.add_typer(runs_app, name="runs")

RunsDirOpt = Annotated[Path, typer.Option("--runs", help="Folder the runs are under (`datakit train` writes "
                                                         "runs/<recipe>/<run-id>/; the demo runs/demo).")]


def _loss(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def _verdicts(r: RunRecord) -> str:
    return ", ".join(f"{rep.verdict or 'compared'} ({Path(rep.path).parent.name})" for rep in r.reports) or "-"


@runs_app.command("ls")
def runs_ls(runs: RunsDirOpt = Path("runs"), as_json: JsonOpt = False) -> None:
    """Every run under --runs, oldest first: recipe, backend, base model, data versions, progress, verdicts."""
    from datakit.train.run_index import find_runs

    found = find_runs(runs)
    if as_json:
        emit_json([r.model_dump(mode="json", exclude={"lineage"}) for r in found])
        return
    if not found:
        out.print(f"no training runs under {runs} (lineage.json is written by `datakit train`)", markup=False)
        return
    for r in found:  # one line per run: greppable, and readable at any terminal width
        last = r.stages[-1] if r.stages else None
        loss = last.val_loss if last and last.val_loss is not None else last.train_loss if last else None
        out.print(f"{r.id}  {r.backend}  {r.status}  loss {_loss(loss)}  base "
                  f"{Path(str(r.base_model.get('path', '?'))).name} ({r.base_digest})  data "
                  f"{', '.join(s.ref for s in r.stages)}  eval {_verdicts(r)}", markup=False)


def _open_registry(r: RunRecord) -> Any:
    """The registry the run read its data from: --registry when given, else the one its lineage.json names."""
    from datakit.registry.store import Registry

    return Registry(registry_root() or r.registry)


def _tree(a: Ancestry, ref: str, indent: str, seen: set[str]) -> list[str]:
    """The versions upstream of `ref`, one per line, each parent indented under the version it fed."""
    lines = []
    for p in a.parents.get(ref, []):
        pm = a.versions.get(p)
        if pm is None:
            lines.append(f"{indent}<- {p} (not in this registry)")
            continue
        lines.append(f"{indent}<- {pm.ref} ({pm.kind}, {pm.rows:,} rows, op {pm.op}, {pm.content_hash[:12]})"
                     + (" (shown above)" if pm.ref in seen else ""))
        if pm.ref not in seen:
            seen.add(pm.ref)
            lines += _files(a, pm.ref, indent + "   ") + _tree(a, pm.ref, indent + "   ", seen)
    return lines


def _files(a: Ancestry, ref: str, indent: str) -> list[str]:
    return [f"{indent}<- file {f['file']} (sha256 {str(f.get('sha256', '?'))[:16]})" for f in a.files(ref)]


@runs_app.command("show")
def runs_show(run: Annotated[str, typer.Argument(help="A run: <recipe>/<run-id>, <run-id>, <recipe> (its latest "
                                                      "run) or the run's folder.", show_default=False)],
              runs: RunsDirOpt = Path("runs"), as_json: JsonOpt = False) -> None:
    """One run's lineage: the eval reports that judged it, its base model (fingerprint), each stage's data version
    and, through the registry, every version upstream of it back to the source files (with sha256)."""
    from datakit.errors import DatakitError
    from datakit.registry.ancestry import ancestry
    from datakit.train.run_index import resolve_run

    r = resolve_run(runs, run)
    reg, upstream, problems = None, {}, []
    try:
        reg = _open_registry(r)
        for s in r.stages:
            m = reg.resolve(s.ref)
            if m.content_hash != s.content_hash:  # the ref now names other data: the run's hash is the truth
                problems.append(f"{s.ref} in {reg.root} has content hash {m.content_hash[:12]}, the run trained on "
                                f"{s.content_hash[:12]}")
            upstream[s.ref] = ancestry(reg, m)
    except DatakitError as e:
        problems.append(f"registry {registry_root() or r.registry}: {e}")
    if as_json:
        emit_json({**r.model_dump(mode="json"), "problems": problems,
                   "upstream": {ref: {"parents": a.parents, "files": {k: a.files(k) for k in a.parents}}
                                for ref, a in upstream.items()}})
        return
    out.print(f"[bold]{r.id}[/]  {r.backend}, seed {r.seed}, created {r.created or '?'}  ({r.status})")
    out.print(f"folder {r.dir}", markup=False)
    for rep in r.reports:
        out.print(f"judged by {rep.path} as {rep.as_name!r}: {rep.verdict or 'compared (not gated)'}"
                  + (f" (comparison {rep.report_verdict})" if rep.report_verdict else ""), markup=False)
    if not r.reports:
        out.print("no eval report names this run yet (`datakit compare BASE CANDIDATE --out DIR`)")
    bm = r.base_model
    files = bm.get("fingerprint") or {}
    out.print(f"base model {bm.get('path', '?')} (fingerprint {r.base_digest}: {len(files)} config, weight and "
              "tokenizer files hashed)", markup=False)
    for s in r.stages:
        out.print(f"stage {s.index + 1} {s.stage}: {'done' if s.done else 'not finished'}, {s.steps or 0} steps, "
                  f"train loss {_loss(s.train_loss)}, val loss {_loss(s.val_loss)}", markup=False)
        out.print(f"   <- {s.ref} ({s.content_hash[:12]})", markup=False)
        if s.ref in upstream:
            a = upstream[s.ref]
            out.print("\n".join(_files(a, a.focus.ref, "      ") + _tree(a, a.focus.ref, "      ", set())),
                      markup=False)
    for p in problems:
        err.print(f"warning: {p}", markup=False)
