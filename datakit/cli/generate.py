"""Generation commands: `datakit augment` and `datakit synth magpie|preference`, journaled and gated.

Each runs one library job (`datakit.ops.augment`, `datakit.build.magpie`, `datakit.build.preference`) and prints
the same one-line summary: rows kept, requests done and failed, rows filtered per reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from datakit.build.magpie_params import MagpieParams
from datakit.cli.common import JsonOpt, app, err, kv, out, print_commit, reg
from datakit.errors import DatakitError

if TYPE_CHECKING:
    from datakit.generate.job import GenOptions

synth_app = typer.Typer(help="Synthesize datasets with a generator model.", no_args_is_help=True)
app.add_typer(synth_app, name="synth")

GeneratorOpt = Annotated[str, typer.Option("--generator", help="openai:MODEL@BASE_URL (key from $OPENAI_API_KEY), "
                                                               "hf:PATH or mlx:PATH.")]
ConcurrencyOpt = Annotated[int, typer.Option(help="Requests in flight at once (openai generators).")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="Per-request timeout in seconds.")]
RetriesOpt = Annotated[int, typer.Option(help="Retries of a timeout, connection error, 429 or 5xx.")]
AllowFailedOpt = Annotated[bool, typer.Option("--allow-failed", help="Commit even if some requests still failed.")]


def gen_options(concurrency: int, timeout: float, retries: int, allow_failed: bool) -> GenOptions:
    from datakit.generate.job import GenOptions

    return GenOptions(concurrency=concurrency, timeout_s=timeout, retries=retries, allow_failed=allow_failed)


def report(m: Any, created: bool, stats: dict[str, Any], as_json: bool, what: str) -> None:
    """The one-line summary every generation command prints: rows kept, requests done/failed, filters."""
    def detail() -> str:
        filtered = ", ".join(f"{n} {reason}" for reason, n in stats["filtered"].items()) or "none"
        return (f"{stats['rows_out']} {what}; requests: {stats['done']} done ({stats['from_journal']} from the "
                f"journal), {stats['failed']} failed; filtered: {filtered}")

    print_commit(m, created, stats, as_json, detail)


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
    report(m, created, stats, as_json, "rows")
    if not stats["variants_kept"]:
        err.print(f"warning: no variant passed the gates (filtered: {kv(stats['filtered'])}); {m.ref} holds only "
                  "the source rows. "
                  f"See why in {r.data_path(m, 'rejected.parquet')}, then loosen --threshold or change the generator.")
    elif not as_json:
        out.print(f"{stats['variants_kept']} variants of {stats['sources']} rows kept "
                  f"(mean similarity to the source {stats['similarity_mean']})")


_F = MagpieParams.model_fields  # defaults and help live in one place: the params model


def _opt(field: str, help: str | None = None) -> Any:
    text = help or _F[field].description or ""
    return typer.Option("--" + field.replace("_", "-"), help=text[:1].upper() + text[1:] + ".")


@synth_app.command("magpie")
def magpie(
    generator: GeneratorOpt,
    n: Annotated[int, _opt("n", "instructions to ask for; the gates drop some, so rows out are fewer")],
    name: Annotated[str, typer.Option("--name", help="Output dataset name.")],
    template: Annotated[Optional[str], _opt("template", "chat template: a built-in family (llama3, chatml, gemma, "
                                                        "mistral, phi3) or a .jinja file")] = None,
    template_from: Annotated[Optional[str], _opt("template_from", "local tokenizer or model folder of the served "
                                                                  "model, for its chat template")] = None,
    pre_query: Annotated[Optional[str], _opt("pre_query", "the pre-query prefix verbatim (BOS and all); wins over "
                                                          "any template")] = None,
    system: Annotated[Optional[str], _opt("system")] = None,
    lang: Annotated[Optional[str], _opt("lang", "keep only instructions and answers guessed as this language "
                                                "(ko, ja, zh, en, other)")] = None,
    min_chars: Annotated[int, _opt("min_chars")] = _F["min_chars"].default,
    max_chars: Annotated[int, _opt("max_chars")] = _F["max_chars"].default,
    max_repetition: Annotated[float, _opt("max_repetition")] = _F["max_repetition"].default,
    max_tokens_instruction: Annotated[int, _opt("max_tokens_instruction", "token limit of an instruction "
                                                                           "(one that hits it is dropped)")] =
    _F["max_tokens_instruction"].default,
    max_tokens_answer: Annotated[int, _opt("max_tokens_answer", "token limit of an answer (one that hits it is "
                                                                 "dropped)")] = _F["max_tokens_answer"].default,
    temperature: Annotated[float, _opt("temperature")] = _F["temperature"].default,
    top_p: Annotated[float, _opt("top_p", "nucleus sampling of instructions")] = _F["top_p"].default,
    answer_temperature: Annotated[float, _opt("answer_temperature", "answer sampling (0: greedy)")] =
    _F["answer_temperature"].default,
    seed: Annotated[int, _opt("seed", "seed of the request seeds: same seed, same requests, journal hits")] = 0,
    reward: Annotated[Optional[str], _opt("reward", "reward model hf:PATH (a sequence-classification model with one "
                                                    "output); adds scores.reward to every row")] = None,
    min_reward: Annotated[Optional[float], _opt("min_reward", "drop rows whose reward is below this")] = None,
    concurrency: ConcurrencyOpt = 4,
    timeout: TimeoutOpt = 120.0,
    retries: RetriesOpt = 4,
    allow_failed: AllowFailedOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Magpie: the model writes instructions from its own chat template's user-turn prefix, then answers them."""
    from datakit.build.magpie import run_magpie

    m, created, stats = run_magpie(
        reg(), name=name, generator=generator, options=gen_options(concurrency, timeout, retries, allow_failed), n=n,
        template=template, template_from=template_from, pre_query=pre_query, system=system, lang=lang,
        min_chars=min_chars, max_chars=max_chars, max_repetition=max_repetition,
        max_tokens_instruction=max_tokens_instruction, max_tokens_answer=max_tokens_answer, temperature=temperature,
        top_p=top_p, answer_temperature=answer_temperature, seed=seed, reward=reward, min_reward=min_reward)
    report(m, created, stats, as_json, "instruction-answer rows")


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
    report(m, created, stats, as_json, "pairs")
    if not as_json and (lb := stats["length_bias"])["pairs"]:
        out.print(f"length bias: chosen is the longer answer in {lb['chosen_longer_share']:.0%} of {lb['pairs']} "
                  f"pairs (mean {lb['mean_chars_chosen']:g} vs {lb['mean_chars_rejected']:g} characters)")
