"""`datakit ingest` and `datakit export`: data into the registry, and out of it in the formats engines read."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from datakit.cli.common import JsonOpt, app, byte_progress, emit_json, kv, out, reg


@app.command()
def ingest(
    files: Annotated[list[Path], typer.Argument(help="json, jsonl, parquet, csv, txt or md files.")],
    name: Annotated[str, typer.Option("--name", help="Dataset name, e.g. acme-sft.")],
    kind: Annotated[str, typer.Option("--kind", help="cpt, sft, identity, magpie, preference or probes.")],
    fmt: Annotated[str, typer.Option("--format", help="auto, alpaca, sharegpt, messages, prompt_completion, preference, sharegpt_preference, text, lines, document, probes.")] = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Read files into a new registry version; bad rows go to its quarantine with their reasons."""
    from datakit.io.ingest import ingest as run_ingest

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
    for reason, n in list(res.reasons.items())[:5]:
        out.print(f"  rejected {n}: {reason}")
    if res.rejected:
        out.print(f"  see them with: datakit registry quarantine {res.manifest.ref}")


@app.command()
def export(
    ref: Annotated[str, typer.Argument(help="Dataset ref: name, name@v2, name@TAG or name@HASH.")],
    fmt: Annotated[str, typer.Option("--format", help="jsonl or parquet (one file), mlx or hf (a folder of splits), lm-eval (probes as local tasks), argilla or label-studio (a review queue for that tool).")],
    out_path: Annotated[Path, typer.Option("--out", help="Output file (jsonl, parquet) or folder (mlx, hf, lm-eval, argilla, label-studio).")],
    tokenizer: Annotated[Optional[Path], typer.Option("--tokenizer", help="Model folder whose tokenizer preflights the "
                                                      "rows (default: no preflight).")] = None,
    max_seq_len: Annotated[int, typer.Option(help="Length in tokens the preflight counts truncation against (with "
                                                  "--tokenizer).")] = 1024,
    sample: Annotated[Optional[int], typer.Option("--sample", help="argilla/label-studio: a seeded sample of N rows (default all).")] = None,
    seed: Annotated[int, typer.Option(help="argilla/label-studio: seed of the --sample (same seed, same rows).")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Write a version's rows: plain (jsonl, parquet), as training splits for mlx-lm or TRL, or for review in
    Argilla or Label Studio (bring the answers back with `datakit review import FILE`)."""
    from datakit.io.export import export as run_export
    from datakit.io.review_tools import TOOLS, export_for_review

    if fmt in TOOLS:
        info = export_for_review(reg(), ref, fmt, out_path, sample=sample, seed=seed)
        if as_json:
            emit_json(info)
        else:
            out.print(f"wrote {info['rows']} rows of {info['ref']} for {fmt} (review queue {info['queue']}) to {out_path}: "
                      f"{', '.join(Path(f).name for f in info['files'])}")
        return
    info = run_export(reg(), ref, fmt, out_path, tokenizer=tokenizer, max_seq_len=max_seq_len)
    if as_json:
        emit_json(info)
    else:
        rows = info["rows"]  # a count, or rows per split for the training formats
        said = f"{sum(rows.values())} rows ({kv(rows)})" if isinstance(rows, dict) else f"{rows} rows"
        out.print(f"wrote {said} of {info['ref']} as {fmt} to {out_path}", markup=False)
        for kind, s in (info.get("skipped") or {}).items():
            out.print(f"  skipped {s['count']} {kind} probes: {s['reason']}", markup=False)
        if "run" in info:
            out.print(f"  run: {info['run']}", markup=False, highlight=False)
        if "preflight" in info:
            out.print(info["preflight"]["text"])
    if "preflight" in info and not info["preflight"]["ok"]:
        raise typer.Exit(1)
