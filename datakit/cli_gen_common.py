"""Options and output shared by the generation commands (augment, synth magpie, synth preference)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from datakit.cli_common import emit_json, out
from datakit.generate.job import GenOptions

GeneratorOpt = Annotated[str, typer.Option("--generator", help="openai:MODEL@BASE_URL (key from $OPENAI_API_KEY), "
                                                               "hf:PATH or mlx:PATH.")]
ConcurrencyOpt = Annotated[int, typer.Option(help="Requests in flight at once (openai generators).")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="Per-request timeout in seconds.")]
RetriesOpt = Annotated[int, typer.Option(help="Retries of a timeout, connection error, 429 or 5xx.")]
AllowFailedOpt = Annotated[bool, typer.Option("--allow-failed", help="Commit even if some requests still failed.")]


def gen_options(concurrency: int, timeout: float, retries: int, allow_failed: bool) -> GenOptions:
    return GenOptions(concurrency=concurrency, timeout_s=timeout, retries=retries, allow_failed=allow_failed)


def report(ref: str, created: bool, content_hash: str, stats: dict[str, Any], as_json: bool, what: str) -> None:
    """The one-line summary every generation command prints: rows kept, requests done/failed, filters."""
    if as_json:
        emit_json({"ref": ref, "created": created, "content_hash": content_hash, "stats": stats})
        return
    filtered = ", ".join(f"{n} {reason}" for reason, n in stats["filtered"].items()) or "none"
    out.print(f"{'committed' if created else 'unchanged:'} [bold]{ref}[/] ({stats['rows_out']} {what}; requests: "
              f"{stats['done']} done ({stats['from_journal']} from the journal), {stats['failed']} failed; "
              f"filtered: {filtered})")
