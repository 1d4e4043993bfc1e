"""`datakit build ...`: builders that turn documents and specs into registry datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from datakit.cli_common import JsonOpt, app, emit_json, out, reg, working

build_app = typer.Typer(help="Build datasets from documents and specs.", no_args_is_help=True)
app.add_typer(build_app, name="build")


@build_app.command("cpt")
def build_cpt(
    docs: Annotated[list[Path], typer.Argument(help="Documents (md, txt, html, pdf) or folders of them.")],
    name: Annotated[str, typer.Option("--name", help="Output dataset name.")],
    unit: Annotated[str, typer.Option(help="paragraph or sentence (knowledge sentences).")] = "paragraph",
    min_chars: Annotated[int, typer.Option(help="Drop pieces shorter than this.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Clean documents (page furniture, NFC, whitespace), cut, filter and dedup them into cpt rows."""
    from datakit.build.cpt import run_build_cpt

    with working("building cpt text"):
        m, created, stats = run_build_cpt(reg(), docs, name=name, unit=unit, min_chars=min_chars)  # type: ignore[arg-type]
    if as_json:
        emit_json({"ref": m.ref, "created": created, "content_hash": m.content_hash, "stats": stats})
        return
    out.print(f"{'committed' if created else 'unchanged:'} [bold]{m.ref}[/] ({stats['rows_out']} {unit}s from "
              f"{stats['documents']} documents, {stats['pages']} pages; {stats['furniture_lines_removed']} header/footer "
              f"lines and {stats['removed']} pieces dropped {stats['dropped']})")
