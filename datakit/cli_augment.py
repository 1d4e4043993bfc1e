"""`datakit augment REF --n N --generator SPEC --name NAME`: paraphrased questions and varied answers, gated."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from datakit.cli_common import JsonOpt, app, err, out, reg
from datakit.cli_gen_common import (AllowFailedOpt, ConcurrencyOpt, GeneratorOpt, RetriesOpt, TimeoutOpt, gen_options,
                                    report)


@app.command()
def augment(
    ref: Annotated[str, typer.Argument(help="An sft, identity or magpie dataset: name, name@v2, name@TAG or name@HASH.")],
    n: Annotated[int, typer.Option("--n", help="Variants per row, each a paraphrased question and a reworded answer.")],
    generator: GeneratorOpt,
    name: Annotated[str, typer.Option("--name", help="Output dataset name.")],
    threshold: Annotated[float, typer.Option(help="Similarity (0-1, rapidfuzz ratio of normalized text) to the source "
                                                  "or a sibling at which a variant counts as a copy.")] = 0.9,
    keep_source: Annotated[bool, typer.Option("--keep-source/--variants-only",
                                              help="Put the source rows in the output too, or only the variants.")] = True,
    seed: Annotated[int, typer.Option(help="Sampling seed of variant 0; variant i uses seed + i.")] = 0,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.8,
    max_tokens: Annotated[int, typer.Option(help="Most tokens per generated question or answer.")] = 512,
    deny_names: Annotated[Optional[Path], typer.Option("--deny-names", help="Alias file of more names no variant may "
                                                       "introduce: one a line, or 'Name: alias, alias'.")] = None,
    concurrency: ConcurrencyOpt = 4,
    timeout: TimeoutOpt = 120.0,
    retries: RetriesOpt = 4,
    allow_failed: AllowFailedOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Paraphrase each question and vary each answer N times; copies, lost facts, language switches, vendor names
    and duplicates are dropped and counted. Variants keep the source's group_id."""
    from datakit.ops.augment import run_augment

    r = reg()
    m, created, stats = run_augment(r, ref, name=name, n=n, generator=generator, threshold=threshold,
                                    keep_source=keep_source, seed=seed, temperature=temperature,
                                    max_tokens=max_tokens, deny_names=deny_names,
                                    options=gen_options(concurrency, timeout, retries, allow_failed))
    report(m.ref, created, m.content_hash, stats, as_json, "rows")
    if not stats["variants_kept"]:
        err.print(f"warning: no variant passed the gates ({stats['filtered']}); {m.ref} holds only the source rows. "
                  f"See why in {r.version_dir(m) / 'rejected.parquet'}, then loosen --threshold or change the generator.")
    elif not as_json:
        out.print(f"{stats['variants_kept']} variants of {stats['sources']} rows kept "
                  f"(mean similarity to the source {stats['similarity_mean']})")
