"""`datakit synth magpie --generator SPEC --n N --name NAME`: instructions the model writes itself, then answers."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from datakit.build.magpie import MagpieParams, run_magpie
from datakit.cli_common import JsonOpt, reg
from datakit.cli_gen_common import (
    AllowFailedOpt, ConcurrencyOpt, GeneratorOpt, RetriesOpt, TimeoutOpt, gen_options, report,
)
from datakit.cli_synth import synth_app

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
    m, created, stats = run_magpie(
        reg(), name=name, generator=generator, options=gen_options(concurrency, timeout, retries, allow_failed), n=n,
        template=template, template_from=template_from, pre_query=pre_query, system=system, lang=lang,
        min_chars=min_chars, max_chars=max_chars, max_repetition=max_repetition,
        max_tokens_instruction=max_tokens_instruction, max_tokens_answer=max_tokens_answer, temperature=temperature,
        top_p=top_p, answer_temperature=answer_temperature, seed=seed, reward=reward, min_reward=min_reward)
    report(m.ref, created, m.content_hash, stats, as_json, "instruction-answer rows")
