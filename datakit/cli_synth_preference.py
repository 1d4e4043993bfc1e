"""`datakit synth preference`: DPO pairs from k sampled answers per prompt, best vs worst by a judge."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from datakit.cli_common import JsonOpt, out, reg
from datakit.cli_gen_common import (AllowFailedOpt, ConcurrencyOpt, GeneratorOpt, RetriesOpt, TimeoutOpt, gen_options,
                                    report)
from datakit.cli_synth import synth_app
from datakit.errors import DatakitError


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise DatakitError(f"--temperatures {text!r}: write comma-separated numbers, e.g. "
                           "--temperatures 0.2,0.6,1.0,1.2") from None


@synth_app.command("preference")
def synth_preference(
    prompts: Annotated[str, typer.Option("--prompts", help="Dataset ref to take prompts from: sft, identity or magpie "
                                                           "(the conversation before the last assistant turn) or "
                                                           "preference (its prompt).")],
    generator: GeneratorOpt,
    judge: Annotated[str, typer.Option("--judge", help="hf:PATH of a sequence-classification reward model, or an "
                                                       "LLM judge (openai:MODEL@BASE_URL, hf:PATH, mlx:PATH) scoring "
                                                       "each answer 1-10 with a rubric.")],
    name: Annotated[str, typer.Option("--name", help="Output dataset name.")],
    k: Annotated[Optional[int], typer.Option("--k", help="Answers per prompt (default: one per --temperatures, "
                                                         "else 4).")] = None,
    temperatures: Annotated[Optional[str], typer.Option("--temperatures", help="One sampling temperature per answer, "
                                                        "comma-separated (default: k spread from 0.2 to 1.2).")] = None,
    min_margin: Annotated[float, typer.Option("--min-margin", help="Drop a prompt whose best score beats its worst by "
                                                                   "less (LLM judge scores are 1-10; ties are always "
                                                                   "dropped).")] = 1.0,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Longest answer, in tokens.")] = 256,
    judge_max_tokens: Annotated[int, typer.Option("--judge-max-tokens", help="Longest LLM-judge reply, in tokens "
                                                                             "(its reasoning and score).")] = 512,
    seed: Annotated[int, typer.Option(help="Sampling seed of the first answer; answer i uses seed + i.")] = 0,
    concurrency: ConcurrencyOpt = 4,
    timeout: TimeoutOpt = 120.0,
    retries: RetriesOpt = 4,
    allow_failed: AllowFailedOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Answer each prompt k times at spread temperatures, score the answers with a judge, keep best vs worst."""
    from datakit.build.preference import run_preference

    temps = _floats(temperatures) if temperatures is not None else None
    m, created, stats = run_preference(reg(), prompts, name=name, generator=generator, judge=judge, k=k,
                                       temperatures=temps, options=gen_options(concurrency, timeout, retries,
                                                                               allow_failed),
                                       min_margin=min_margin, max_tokens=max_tokens,
                                       judge_max_tokens=judge_max_tokens, seed=seed)
    report(m.ref, created, m.content_hash, stats, as_json, "pairs")
    if not as_json and (lb := stats["length_bias"])["pairs"]:
        out.print(f"length bias: chosen is the longer answer in {lb['chosen_longer_share']:.0%} of {lb['pairs']} "
                  f"pairs (mean {lb['mean_chars_chosen']:g} vs {lb['mean_chars_rejected']:g} characters)")
