"""The `datakit` command: a thin layer over the library.

Exit codes: 0 ok; 1 a check found a problem; 2 usage or input error. Read commands take --json.
Heavy backends are never imported here, so `datakit --help` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from datakit.cli_common import JsonOpt, app, byte_progress, emit_json, err, out, reg
from datakit.errors import DatakitError


@app.command()
def ingest(
    files: Annotated[list[Path], typer.Argument(help="json, jsonl, parquet, csv, txt or md files.")],
    name: Annotated[str, typer.Option("--name", help="Dataset name, e.g. acme-sft.")],
    kind: Annotated[str, typer.Option("--kind", help="cpt, sft, identity, magpie, preference or probes.")],
    fmt: Annotated[str, typer.Option("--format", help="auto, alpaca, sharegpt, messages, prompt_completion, preference, sharegpt_preference, text, lines, document, probes.")] = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Read files into a new registry version; bad rows go to its quarantine with their reasons."""
    from datakit.ingest import ingest as run_ingest

    total = sum(f.stat().st_size for f in files if f.is_file())
    with byte_progress(total, f"ingest {name}") as advance:
        res = run_ingest(reg(), files, name=name, kind=kind, fmt=fmt, on_bytes=advance)
    if as_json:
        emit_json(res.model_dump(mode="json", exclude={"manifest"}) | {"ref": res.manifest.ref, "content_hash": res.manifest.content_hash})
        return
    for f in res.files:
        out.print(f"{f.file}: {f.format}, {f.rows_in} rows in, {f.kept} kept, {f.rejected} rejected")
    verb = "committed" if res.created else "unchanged, identical content already at"
    out.print(f"{verb} [bold]{res.manifest.ref}[/] ({res.manifest.kind}, {res.kept} rows, hash {res.manifest.content_hash[:12]})")
    if res.rejected:
        for reason, n in list(res.reasons.items())[:5]:
            out.print(f"  rejected {n}: {reason}")
        out.print(f"  see them with: datakit registry quarantine {res.manifest.ref}")


@app.command()
def export(
    ref: Annotated[str, typer.Argument(help="Dataset ref: name, name@v2, name@TAG or name@HASH.")],
    fmt: Annotated[str, typer.Option("--format", help="jsonl or parquet (one file), mlx or hf (a folder of splits), lm-eval (probes as local tasks).")],
    out_path: Annotated[Path, typer.Option("--out", help="Output file (jsonl, parquet) or folder (mlx, hf).")],
    tokenizer: Annotated[Optional[Path], typer.Option("--tokenizer", help="Model folder whose tokenizer preflights the rows.")] = None,
    max_seq_len: Annotated[int, typer.Option(help="Length the preflight counts truncation against.")] = 1024,
    as_json: JsonOpt = False,
) -> None:
    """Write a version's rows: plain (jsonl, parquet) or as training splits for mlx-lm or TRL."""
    from datakit.export import PLAIN_FORMATS, export_rows, export_training

    if fmt in PLAIN_FORMATS:
        m, n = export_rows(reg(), ref, fmt, out_path)
        info = {"ref": m.ref, "format": fmt, "rows": n}
    elif fmt == "lm-eval":  # a probes dataset as local lm-eval tasks the harness runs offline
        info = _export_lm_eval(ref, out_path, tokenizer)
        tokenizer = None
    else:
        info = export_training(reg(), ref, fmt, out_path)
    if tokenizer is not None:
        info["preflight"] = _export_preflight(ref, tokenizer, max_seq_len, "mlx" if fmt == "mlx" else "hf")
    if as_json:
        emit_json(info)
        return
    out.print(f"wrote {info['rows']} rows of {info['ref']} as {fmt} to {out_path}")
    if "preflight" in info:
        out.print(info["preflight"]["text"])
    if "preflight" in info and not info["preflight"]["ok"]:
        raise typer.Exit(1)


def _export_lm_eval(ref: str, out_path: Path, tokenizer: Optional[Path]) -> dict:
    from datakit.errors import DatakitError
    from datakit.evals.lmeval import write_local_task
    from datakit.storage import frame_to_records

    r = reg()
    m = r.resolve(ref)
    if m.kind != "probes":
        raise DatakitError(f"--format lm-eval writes eval probes; {m.ref} is {m.kind}")
    folder = write_local_task(list(frame_to_records("probes", r.load(m))), out_path,
                              task_name=m.name.replace("-", "_"), tokenizer_dir=tokenizer)
    return {"ref": m.ref, "format": "lm-eval", "rows": m.rows, "tasks": str(folder)}


def _export_preflight(ref: str, model_dir: Path, max_seq_len: int, backend: str) -> dict:
    from datakit.export import training_records
    from datakit.train import preflight as pf

    r = reg()
    m = r.resolve(ref)
    report = pf.preflight(model_dir, m.kind, training_records(m.kind, r.load(m)), max_seq_len=max_seq_len, backend=backend)
    return {"ok": report.ok, "report": report.model_dump(mode="json"), "text": pf.format_report(report)}


@app.command()
def demo(
    data: Annotated[Path, typer.Option(help="Folder with the external demo datasets.")] = Path("../shared/data/external"),
    quick: Annotated[bool, typer.Option("--quick", help="A shorter CPT stage (the full demo takes about 2 minutes on 2 cores).")] = False,
    backend: Annotated[str, typer.Option(help="Training and eval backend: hf, or mlx (fast on Apple silicon only).")] = "hf",
    base_model: Annotated[Optional[Path], typer.Option("--base-model", help="A real model folder instead of the tiny pre-trained one.")] = None,
    work: Annotated[Path, typer.Option(help="Folder for the demo's data files (and registry, unless --registry).")] = Path("build/demo"),
    base_cache: Annotated[Path, typer.Option(help="Where the tiny base model is pre-trained once and reused.")] = Path("build/demo/base"),
    runs: Annotated[Path, typer.Option(help="Folder for training runs, eval results and the report.")] = Path("runs/demo"),
    ingest_only: Annotated[bool, typer.Option("--ingest-only", help="Only ingest the external datasets and print the catalog.")] = False,
) -> None:
    """The whole loop on a fictional company: data, two mixtures, training, evals, a gate and a report."""
    from datakit.cli_common import _state
    from datakit.demo import DemoConfig, quick as quick_size, run_demo
    from datakit.demo.external import ingest_external

    if ingest_only:
        ingest_external(reg(), data, out)
        cli_registry.registry_ls(as_json=False)
        return
    cfg = DemoConfig(external=data, work=work, runs=runs, backend=backend, base_model=base_model, base_cache=base_cache,
                     registry=_state["registry"] or work / "registry")
    run_demo(quick_size(cfg) if quick else cfg, out)


# imported after the commands above so `datakit --help` lists ingest and export first
from datakit import cli_augment, cli_build, cli_eval, cli_lint, cli_ops, cli_registry, cli_synth, cli_train  # noqa: E402,F401  (they register their commands)


def main() -> None:
    try:
        app()
    except DatakitError as e:
        err.print(f"[red]error:[/] {e}")
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
