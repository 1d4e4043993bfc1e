"""`datakit build ...`: builders that turn documents and specs into registry datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from datakit.cli.common import JsonOpt, app, kv, print_commit, reg, working

build_app = typer.Typer(help="Build datasets from documents and specs.", no_args_is_help=True)
app.add_typer(build_app, name="build")


@build_app.command("cpt")
def build_cpt(
    docs: Annotated[list[Path], typer.Argument(help="Documents (md, txt, html, pdf) or folders of them.")],
    name: Annotated[str, typer.Option("--name", help="Output dataset name.")],
    unit: Annotated[str, typer.Option(help="Piece of text per row: paragraph, or sentence (knowledge sentences for "
                                           "`build sft`).")] = "paragraph",
    min_chars: Annotated[int, typer.Option(help="Drop pieces shorter than this many characters.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Clean documents (page furniture, NFC, whitespace), cut, filter and dedup them into cpt rows."""
    from datakit.build.cpt import run_build_cpt

    with working("building cpt text"):
        m, created, stats = run_build_cpt(reg(), docs, name=name, unit=unit, min_chars=min_chars)  # type: ignore[arg-type]
    print_commit(m, created, stats, as_json, lambda: (
        f"{stats['rows_out']} {unit}s from {stats['documents']} documents, {stats['pages']} pages; "
        f"{stats['furniture_lines_removed']} header/footer lines and {stats['removed']} pieces dropped "
        f"({kv(stats['dropped'])})"))


@build_app.command("identity")
def build_identity(
    spec: Annotated[Path, typer.Argument(help="Identity spec YAML: name, maker, description, languages, seeds.")],
    name: Annotated[str, typer.Option("--name", help="Output dataset name.")],
    drop_denied: Annotated[bool, typer.Option("--drop-denied", help="Leave out seed rows that name another vendor.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Affirm and deny identity rows in every language, varied, never naming another vendor or padded with copies."""
    from datakit.build.identity import run_build_identity

    m, created, st = run_build_identity(reg(), spec, name=name, drop_denied=drop_denied)
    print_commit(m, created, st, as_json, lambda: (
        f"{st['rows_out']} rows: {st['distinct_questions']} distinct questions, {st['distinct_answers']} distinct "
        f"answers; intents {kv(st['by_intent'])}; languages {kv(st['by_lang'])}; {st['denied_rows']} denied, "
        f"{st['duplicate_rows']} copies dropped"))


@build_app.command("sft")
def build_sft(
    source: Annotated[str, typer.Option("--from", help="A cpt dataset ref (knowledge sentences).")],
    name: Annotated[str, typer.Option("--name", help="Output dataset name.")],
    system: Annotated[str | None, typer.Option("--system", help="A system prompt put first in every conversation.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the question templates picked per sentence.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Grounded Q&A chats from each knowledge sentence (offline multilingual templates)."""
    from datakit.build.sft import run_build_sft

    m, created, st = run_build_sft(reg(), source, name=name, system=system, seed=seed)
    print_commit(m, created, st, as_json, lambda: (
        f"{st['rows_out']} chats from {st['sentences_used']} of {st['sentences']} sentences; languages "
        f"{kv(st['langs'])}; skipped: {kv(st['skipped'])}"))
