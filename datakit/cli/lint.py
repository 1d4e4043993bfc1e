"""`datakit lint REF`: vendor names, broken chats, copies, identity share, script mixing, long rows."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from datakit.cli.common import JsonOpt, app, emit_json, out, reg, working

SHOWN = 20


@app.command("lint")
def lint_cmd(
    ref: Annotated[str, typer.Argument(help="Dataset version to check: name, name@v3 or name@tag.")],
    deny_names: Annotated[Optional[Path], typer.Option("--deny-names", help="Alias file: one name a line, or 'Name: alias, alias'.")] = None,
    allow: Annotated[Optional[list[str]], typer.Option("--allow", help="A name that may appear (your own model or maker); repeatable.")] = None,
    max_tokens: Annotated[Optional[int], typer.Option("--max-tokens", help="Warn on rows longer than this many tokens (approximate).")] = None,
    identity_share_min: Annotated[float, typer.Option("--identity-share-min", help="Least identity share of a mixture.")] = 0.3,
    as_json: JsonOpt = False,
) -> None:
    """Find what broke identity runs (FIELD_NOTES 3) before training; exit 1 on any error-level finding."""
    from datakit.ops.lint import lint

    with working(f"linting {ref}"):
        report = lint(reg(), ref, deny_file=deny_names, allow=allow or (), max_tokens=max_tokens,
                      identity_share_min=identity_share_min)
    if as_json:
        emit_json(report.model_dump())
    else:
        table = Table("level", "check", "row", "field", "matched", "message", show_lines=False)
        for f in report.findings[:SHOWN]:
            table.add_row(f.level, f.check, "" if f.row is None else str(f.row), f.field or "", f.matched or "",
                          f.message)
        if report.findings:
            out.print(table)
        if len(report.findings) > SHOWN:
            out.print(f"... and {len(report.findings) - SHOWN} more findings; see all with --json")
        counts = ", ".join(f"{k}: {v}" for k, v in report.counts.items()) or "no findings"
        out.print(f"{'ok' if report.ok else 'FAILED'}: {report.ref} ({report.kind}, {report.rows} rows) {counts}")
    if not report.ok:
        raise typer.Exit(1)
