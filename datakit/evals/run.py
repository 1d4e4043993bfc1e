"""`datakit eval`: one suite on one model (plus adapter), every probe scored, results.json written.

    results = evaluate(reg, Path("recipes/evals/example-suite.yaml"), backend="hf", model="models/base",
                       adapter=None, out_dir=Path("evals/base"))
Generation probes (knowledge, completion, identity, bleed, refusal) are answered through the chat
template in batches (greedy, or `generation.samples` sampled answers each, scored as a pass rate);
knowledge and completion probes with a reference answer also get an `answer` item, the teacher-forced NLL
per token of that answer; choice probes pick the choice with the highest summed log-likelihood after
the prompt; perplexity probes report NLL per token of their `text`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from datakit.errors import DatakitError
from datakit.evals.lmeval import run_suite_tasks
from datakit.evals.results import EvalResults, Item, aggregate
from datakit.evals.runners import Runner, make_runner
from datakit.evals.scorers import (
    probe_prompt,
    reference_answer,
    score,
    score_answer,
    score_choice,
    score_perplexity,
    score_samples,
)
from datakit.evals.suite import GenerationSpec, SuiteSpec, load_probes, load_suite

GENERATION_TYPES = ("knowledge", "completion", "identity", "bleed", "refusal")


def conversation(probe: dict[str, Any]) -> list[dict[str, Any]]:
    """The chat a probe asks: its messages (minus a trailing assistant turn), else its prompt as a user turn."""
    msgs = [{"role": m["role"], "content": m.get("content") or ""} for m in probe.get("messages") or []]
    while msgs and msgs[-1]["role"] == "assistant":
        msgs.pop()
    return msgs or [{"role": "user", "content": probe["prompt"]}]


def choice_pairs(probe: dict[str, Any]) -> list[tuple[str, str]]:
    """(context, continuation) per choice; a space joins them unless the prompt ends in whitespace."""
    ctx = probe_prompt(probe)
    sep = "" if not ctx or ctx[-1].isspace() else " "
    return [(ctx, sep + c) for c in probe["choices"]]


def score_all(runner: Runner, spec: SuiteSpec, probes: list[dict[str, Any]]) -> list[Item]:
    """Every probe scored, in probe order, then the answer-likelihood items."""
    g = spec.generation
    gen = [p for p in probes if p["type"] in GENERATION_TYPES]
    # sample k uses seed + k for every model, so base and candidate draw with the same seeds
    rounds = [runner.generate([conversation(p) for p in gen], max_new_tokens=g.max_new_tokens,
                              temperature=g.temperature, seed=g.seed + k, batch_size=g.batch_size)
              for k in range(g.samples)] if gen else []
    items: dict[int, Item] = {}
    for i, p in enumerate(gen):
        outs = [r[i] for r in rounds]
        items[id(p)] = score(p, outs[0], spec) if g.samples == 1 else score_samples(p, outs, spec)
    choice = [p for p in probes if p["type"] == "choice"]
    if choice:
        pairs = [pair for p in choice for pair in choice_pairs(p)]
        lls, at = runner.loglik(pairs), 0
        for p in choice:
            n = len(p["choices"])
            items[id(p)] = score_choice(p, lls[at:at + n])
            at += n
    ppl = [p for p in probes if p["type"] == "perplexity"]
    for p, (nll, tokens) in zip(ppl, runner.nll([p["text"] for p in ppl]) if ppl else []):
        items[id(p)] = score_perplexity(p, nll, tokens)
    if missing := [p.get("id") for p in probes if id(p) not in items]:
        raise DatakitError(f"probes {missing[:5]} have a type no scorer handles; use one of the known probe types")
    return [items[id(p)] for p in probes] + answer_items(runner, spec, gen)


def answer_items(runner: Runner, spec: SuiteSpec, probes: list[dict[str, Any]]) -> list[Item]:
    """The teacher-forced NLL of each reference answer (hf and mlx; an openai server gives no such scores)."""
    refs = [(p, a) for p in probes if (a := reference_answer(p))]
    if not spec.scoring.answer_nll or runner.backend == "openai" or not refs:
        return []
    scores = runner.answer_nll([conversation(p) for p, _ in refs], [a for _, a in refs])
    return [score_answer(p, nll, n) for (p, _), (nll, n) in zip(refs, scores)]


def _generation(spec: SuiteSpec, overrides: dict[str, Any] | None) -> SuiteSpec:
    """The suite with CLI overrides of its generation settings (e.g. --samples, --temperature), re-validated."""
    if overrides := {k: v for k, v in (overrides or {}).items() if v is not None}:
        spec = spec.model_copy(update={"generation": GenerationSpec(**(spec.generation.model_dump() | overrides))})
    if spec.generation.samples > 1 and spec.generation.temperature == 0:
        raise DatakitError(f"{spec.generation.samples} samples at temperature 0 are one answer repeated; set a "
                           "temperature (e.g. --temperature 0.7) or --samples 1")
    return spec


def evaluate(reg: Any, suite_path: Path, *, backend: str, model: str | Path, adapter: str | Path | None = None,
             out_dir: Path, runner: Runner | None = None, generation: dict[str, Any] | None = None) -> EvalResults:
    """Run the suite and write `out_dir/results.json`. Pass `runner` to reuse a loaded model, `generation` to
    override the suite's generation settings."""
    spec = _generation(load_suite(Path(suite_path)), generation)
    probes, source = load_probes(reg, spec, Path(suite_path).parent)
    runner = runner or make_runner(backend, model, adapter)
    items = score_all(runner, spec, probes)
    local = Path(str(model))
    results = EvalResults(
        suite=spec.name, backend=backend, model=str(model), adapter=str(adapter) if adapter else None,
        model_fingerprint=_fingerprint(local, adapter) if backend != "openai" and local.is_dir() else {},
        probes=source, created=datetime.now(timezone.utc).isoformat(timespec="seconds"), items=items,
        metrics=aggregate(items),
        lm_eval=run_suite_tasks(spec.lm_eval_tasks, backend=backend, model=model, adapter=adapter, out_dir=out_dir),
        settings={"generation": spec.generation.model_dump(), "scoring": spec.scoring.model_dump(),
                  "seed": spec.generation.seed, "suite_file": str(suite_path)},
    )
    results.write(out_dir)
    return results


def evaluate_with_base(reg: Any, suite_path: Path, *, model: str | Path, adapter: str | Path, out_dir: Path,
                       base_dir: Path, generation: dict[str, Any] | None = None) -> EvalResults:
    """Base and tuned from one loaded HF model (adapter off, then on), so tokenizer, batching and dtype cannot
    differ; the tuned results also get the label-free KL forgetting items (`forgetting.kl`)."""
    from datakit.evals.forgetting import kl_items
    from datakit.evals.runners import HFRunner

    runner = HFRunner(str(model), str(adapter))
    with runner.with_adapter(False):
        evaluate(reg, suite_path, backend="hf", model=model, adapter=None, out_dir=base_dir, runner=runner,
                 generation=generation)
    res = evaluate(reg, suite_path, backend="hf", model=model, adapter=str(adapter), out_dir=out_dir, runner=runner,
                   generation=generation)
    probes, _ = load_probes(reg, load_suite(Path(suite_path)), Path(suite_path).resolve().parent)
    res.items += kl_items(runner, probes)
    res.metrics = aggregate(res.items)
    res.write(out_dir)
    return res


def _fingerprint(path: Path, adapter: str | Path | None) -> dict[str, str]:
    """The base model's fingerprint (configs and weights), plus the adapter's weight files' sha256 (two adapters
    never look alike)."""
    from datakit.registry.store import sha256_file
    from datakit.train.model_check import model_fingerprint

    out = model_fingerprint(path)
    if adapter is not None and Path(adapter).is_dir():
        out.update({f"adapter/{p.name}": sha256_file(p) for p in sorted(Path(adapter).glob("*.safetensors"))})
    return out
