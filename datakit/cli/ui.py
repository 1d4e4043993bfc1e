"""`datakit ui` (browse the registry, lineage, reports) and `datakit review` (expert review into a new version)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from datakit.cli.common import JsonOpt, app, committed, emit_json, err, kv, out, reg
from datakit.errors import DatakitError

PortOpt = Annotated[int, typer.Option("--port", help="Port of the web UI.")]
HostOpt = Annotated[str, typer.Option("--host", help="Interface to bind; anything but 127.0.0.1 requires the printed token.")]
RunsOpt = Annotated[Path, typer.Option("--runs", help="Folder of training runs (lineage.json) and their eval reports.")]


def _announce(url: str) -> None:
    err.print(f"datakit ui at [bold]{url}[/] (Ctrl+C to stop)")


@app.command()
def ui(port: PortOpt = 8765, host: HostOpt = "127.0.0.1", runs: RunsOpt = Path("runs")) -> None:
    """A local web app: datasets and versions, rows, quarantine, dedup clusters, stats plots, lineage graph,
    eval reports of the runs that trained on a version, and review queues."""
    from datakit.ui.serve import serve

    serve(reg(), host=host, port=port, runs_dir=runs, on_start=_announce)


@app.command()
def review(
    ref: Annotated[str, typer.Argument(help="A version to review (REF); a queue name with --commit/--status; or `import`.")],
    file: Annotated[Optional[Path], typer.Argument(help="With `import`: an Argilla or Label Studio JSON export.")] = None,
    sample: Annotated[Optional[int], typer.Option("--sample", help="Review a seeded sample of N rows (or "
                                                                   "--all).")] = None,
    all_rows: Annotated[bool, typer.Option("--all", help="Review every row.")] = False,
    reviewer: Annotated[str, typer.Option("--reviewer", help="Your name; decisions are saved under it (default: "
                                                             "asked for in the browser).")] = "",
    seed: Annotated[int, typer.Option(help="Seed of the --sample (same seed, same rows).")] = 0,
    queue: Annotated[Optional[str], typer.Option("--queue", help="Queue name (default NAME-vN[-sampleN]).")] = None,
    commit: Annotated[bool, typer.Option("--commit", help="Commit the accepted and edited rows of queue REF.")] = False,
    name: Annotated[Optional[str], typer.Option("--name", help="Name of the reviewed version (with --commit).")] = None,
    allow_undecided: Annotated[bool, typer.Option("--allow-undecided", help="Commit leaving undecided rows out.")] = False,
    status: Annotated[bool, typer.Option("--status", help="Progress and agreement of queue REF.")] = False,
    deny_names: Annotated[Optional[Path], typer.Option("--deny-names", help="Extra names edits may not contain (lint's file).")] = None,
    port: PortOpt = 8765,
    host: HostOpt = "127.0.0.1",
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Create the queue and exit (reviewers open it with `datakit ui`).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Review generated rows: accept, reject with a reason, or edit (checked against the schema and the vendor-name
    lint); decisions are saved as they are made. `--commit --name NAME` writes the reviewed version."""
    from datakit.ops import review as rv
    from datakit.ops import review_queue as rq

    registry = reg()
    if file is not None and ref != "import":
        raise DatakitError(f"unexpected argument {file}: only `datakit review import FILE` takes a file")
    if ref == "import":
        if file is None:
            raise DatakitError("datakit review import FILE: give the JSON file Argilla or Label Studio exported")
        from datakit.io.review_tools import import_reviews

        res = import_reviews(registry, file, deny_file=deny_names)
        if as_json:
            emit_json(res.model_dump())
        else:
            out.print(f"{res.tool}: {res.saved} of {res.answers} answers saved to review queue {res.queue} "
                      f"({res.skipped} items not answered yet); commit with `datakit review {res.queue} --commit --name NAME`")
            for line in res.refused:
                out.print(f"  refused {line}", markup=False)
        if res.refused:
            raise typer.Exit(1)
        return
    if commit:
        if not name:
            raise DatakitError("--commit needs --name NAME for the reviewed version")
        res = rv.commit_review(registry, ref, name, allow_undecided=allow_undecided)
        if as_json:
            emit_json(res)
            return
        s = res["stats"]
        out.print(f"{res['input']} -> {committed(res['created'])} [bold]{res['ref']}[/] ({s['rows_out']} rows: "
                  f"{s['accepted']} accepted, {s['edited']} edited; {s['rejected']} rejected, {s['undecided']} undecided)")
        return
    if status:
        res = rv.summary(registry, ref)
        if as_json:
            emit_json(res)
            return
        p = res["progress"]
        out.print(f"{res['queue']} ({res['ref']}): {p['decided']} of {p['rows']} rows decided: {p['accept']} accepted, "
                  f"{p['edit']} edited, {p['reject']} rejected; by reviewer: {kv(p['by_reviewer'])}")
        for a in res["agreement"]:
            out.print(f"  {a['reviewers'][0]} vs {a['reviewers'][1]}: {a['agreed']} of {a['rows_both']} rows agree "
                      f"({a['percent']}%), Cohen's kappa {a['cohen_kappa']}")
        return
    if (sample is None) == (not all_rows):
        raise DatakitError("give --sample N (a seeded sample) or --all (every row)")
    q = rq.open_queue(registry, ref, sample=sample, seed=seed, queue=queue)
    if reviewer:
        rq.check_reviewer(reviewer)
    if as_json or no_serve:
        emit_json(q.model_dump() | {"rows": len(q.rows)}) if as_json else out.print(f"review queue {q.queue}: {len(q.rows)} rows of {q.ref}")
        return
    from datakit.ui.serve import serve

    path = f"/review/{q.queue}" + (f"?reviewer={reviewer}" if reviewer else "")
    serve(registry, host=host, port=port, deny_file=deny_names, on_start=_announce, path=path)
