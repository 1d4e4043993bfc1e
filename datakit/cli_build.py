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


@build_app.command("identity")
def build_identity(
    spec: Annotated[Path, typer.Argument(help="Identity spec YAML: name, maker, description, languages, seeds.")],
    name: Annotated[str, typer.Option("--name", help="Output dataset name.")],
    drop_denied: Annotated[bool, typer.Option("--drop-denied", help="Leave out seed rows that name another vendor.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Affirm and deny identity rows in every language, varied, never naming another vendor or padded with copies."""
    from datakit.build.identity import build_identity as build, load_spec
    from datakit.ops import runner

    s = load_spec(spec)
    o = build(s, spec.resolve().parent, drop_denied=drop_denied)
    m, created = runner.commit(reg(), name=name, kind="identity", inputs=[], op="build-identity",
                               params={**s.model_dump(), "drop_denied": drop_denied}, out=o)
    if as_json:
        emit_json({"ref": m.ref, "created": created, "content_hash": m.content_hash, "stats": o.stats})
        return
    st = o.stats
    out.print(f"{'committed' if created else 'unchanged:'} [bold]{m.ref}[/] ({st['rows_out']} rows: "
              f"{st['distinct_questions']} distinct questions, {st['distinct_answers']} distinct answers, "
              f"{st['by_intent']}, {st['by_lang']}; {st['denied_rows']} denied, {st['duplicate_rows']} copies dropped)")


@build_app.command("sft")
def build_sft(
    source: Annotated[str, typer.Option("--from", help="A cpt dataset ref (knowledge sentences).")],
    name: Annotated[str, typer.Option("--name", help="Output dataset name.")],
    system: Annotated[str | None, typer.Option("--system", help="A system prompt put first in every conversation.")] = None,
    seed: int = 0,
    as_json: JsonOpt = False,
) -> None:
    """Grounded Q&A chats from each knowledge sentence (offline multilingual templates)."""
    from datakit.build.sft import build_sft as build
    from datakit.errors import DatakitError
    from datakit.ops import runner

    r = reg()
    [(m, df)] = runner.load(r, [source])
    if m.kind != "cpt":
        raise DatakitError(f"--from {m.ref} is {m.kind}; build sft reads cpt knowledge sentences (datakit build cpt ... --unit sentence)")
    o = build((m, df), system=system, seed=seed)
    man, created = runner.commit(r, name=name, kind="sft", inputs=[m], op="build-sft",
                                 params={"from": m.ref, "system": system, "seed": seed}, out=o)
    if as_json:
        emit_json({"ref": man.ref, "created": created, "content_hash": man.content_hash, "stats": o.stats})
        return
    st = o.stats
    out.print(f"{'committed' if created else 'unchanged:'} [bold]{man.ref}[/] ({st['rows_out']} chats from "
              f"{st['sentences_used']} of {st['sentences']} sentences, {st['langs']}; skipped {st['skipped']})")
