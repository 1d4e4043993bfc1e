"""The `datakit` command: a thin layer over the library.

Exit codes: 0 ok; 1 a check found a problem; 2 usage or input error. Read commands take --json.
Heavy backends are never imported here, so `datakit --help` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from datakit import cli_ops, cli_registry  # noqa: F401  (they register their commands)
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
    fmt: Annotated[str, typer.Option("--format", help="jsonl or parquet.")],
    out_path: Annotated[Path, typer.Option("--out", help="Output file.")],
) -> None:
    """Write a version's rows, in order, in its kind's record format."""
    from datakit.export import export_rows

    m, n = export_rows(reg(), ref, fmt, out_path)
    out.print(f"wrote {n} rows of {m.ref} to {out_path}")


@app.command()
def demo(
    data: Annotated[Path, typer.Option(help="Folder with the external demo datasets.")] = Path("../shared/data/external"),
) -> None:
    """Ingest the real external datasets into the registry and print the catalog."""
    from datakit.demo import run_demo

    run_demo(reg(), data, out)
    cli_registry.registry_ls(as_json=False)


def main() -> None:
    try:
        app()
    except DatakitError as e:
        err.print(f"[red]error:[/] {e}")
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
