"""`datakit synth preference`: k answers per prompt at spread temperatures, scored by a judge, best vs worst.

FIELD_NOTES 4: several answers per prompt at different temperatures, scored by a reward model, chosen = best,
rejected = worst. Every distinct prompt ends in exactly one place, so prompts = pairs + dropped:
  a pair            chosen = the highest score, rejected = the lowest, the gap at least `min_margin`
  request_failed    a generation or judge request failed (commit refuses unless allow_failed)
  too_few_answers   fewer than 2 distinct non-empty answers (empty and repeated answers are counted, not judged)
  judge_unparseable fewer than 2 answers got a score the judge's text could be parsed into
  tie               every scored answer got the same score (a pair would teach nothing, or chosen == rejected)
  below_margin      best - worst < min_margin
The share of pairs whose chosen answer is the longer one is in the stats: judges like long answers, and a
DPO set where chosen is nearly always longer teaches length (see TRL's length-bias notes).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from datakit.errors import DatakitError
from datakit.generate.client import Request, Result
from datakit.generate.job import GenJob, GenOptions
from datakit.generate.judge import JUDGE_SCALE, judge_kind, judge_request, parse_score, score_reward_model
from datakit.generate.spec import GeneratorSpec, parse_spec
from datakit.ops.runner import load
from datakit.registry.rows import dumps, frame_to_records
from datakit.registry.store import Registry
from datakit.schemas import Manifest

PROMPT_KINDS = ("sft", "identity", "magpie", "preference")


@dataclass
class Prompt:
    messages: list[dict[str, Any]]
    group_id: str
    source_id: str
    answers: list[dict[str, Any]] = field(default_factory=list)  # distinct, non-empty: text, temperature, score
    failed: bool = False


def default_temperatures(k: int) -> list[float]:
    """k temperatures spread from 0.2 to 1.2 (to one decimal): a careful answer, a wild one, and between."""
    return [round(0.2 + i / (k - 1), 1) for i in range(k)]


def resolve_temperatures(k: int | None, temperatures: list[float] | None) -> list[float]:
    if temperatures is not None:
        if k is not None and k != len(temperatures):
            raise DatakitError(f"--k {k} but {len(temperatures)} --temperatures {temperatures}; give one temperature "
                               "per answer, or only one of the two")
        if len(temperatures) < 2 or any(t < 0 for t in temperatures):
            raise DatakitError(f"--temperatures {temperatures}: need at least 2, none negative, e.g. 0.2,0.6,1.0,1.2")
        return list(temperatures)
    k = 4 if k is None else k
    if k < 2:
        raise DatakitError(f"--k {k}: a pair needs at least 2 answers per prompt; use --k 4")
    return default_temperatures(k)


def load_prompts(m: Manifest, df: pl.DataFrame) -> tuple[list[Prompt], Counter[str]]:
    """Distinct prompts: a chat row's conversation before its last assistant turn (system kept), or a
    preference row's prompt. Repeated prompts would only give repeated pairs, so each is answered once."""
    if m.kind not in PROMPT_KINDS:
        raise DatakitError(f"--prompts {m.ref} is a {m.kind} dataset; synth preference reads prompts from "
                           f"{', '.join(PROMPT_KINDS)} datasets")
    prompts: dict[str, Prompt] = {}
    skipped: Counter[str] = Counter()
    for rec in frame_to_records(m.kind, df):
        if m.kind == "preference":
            msgs = rec["prompt"]
        else:
            msgs = rec["messages"]
            msgs = msgs[:max((i for i, x in enumerate(msgs) if x["role"] == "assistant"), default=len(msgs))]
        if not msgs or msgs[-1]["role"] not in ("user", "tool"):
            skipped["no_prompt"] += 1  # nothing for an assistant to answer
            continue
        key = dumps(msgs)
        if key in prompts:
            skipped["duplicate_prompt"] += 1
            continue
        prompts[key] = Prompt(messages=msgs, group_id=rec.get("group_id") or rec["id"], source_id=rec["id"])
    if not prompts:
        raise DatakitError(f"--prompts {m.ref}: none of its {df.height} rows has a prompt ending in a user turn")
    return list(prompts.values()), skipped


def _collect_answers(prompts: list[Prompt], results: list[Result], temps: list[float], counts: Counter[str]) -> None:
    k = len(temps)
    for j, p in enumerate(prompts):
        seen: set[str] = set()
        for t, res in zip(temps, results[j * k:(j + 1) * k]):
            if not res.ok:
                p.failed = True
                counts["failed"] += 1
                continue
            counts["generated"] += 1
            text = (res.text or "").strip()
            norm = " ".join(text.split())
            if not norm:
                counts["empty"] += 1
            elif norm in seen:
                counts["duplicate"] += 1
            else:
                seen.add(norm)
                p.answers.append({"text": text, "temperature": t, "score": None})


def _score(job: GenJob, spec: GeneratorSpec, kind: str, prompts: list[Prompt], counts: Counter[str], *,
           max_tokens: int) -> None:
    """Fill answer scores: a reward model's reward, or the LLM judge's parsed score (None when unparseable)."""
    todo = [(p, a) for p in prompts if not p.failed and len(p.answers) >= 2 for a in p.answers]
    counts["judged"] += len(todo)
    if not todo:
        return
    if kind == "reward_model":
        scores = score_reward_model(spec.model, [(p.messages, a["text"]) for p, a in todo])
        for (_, a), s in zip(todo, scores):
            a["score"] = s
        return
    results = job.generate(spec, [judge_request(p.messages, a["text"], max_tokens=max_tokens) for p, a in todo])
    for (p, a), res in zip(todo, results):
        if not res.ok:
            p.failed = True
            counts["judge_failed"] += 1
        elif (s := parse_score(res.text, JUDGE_SCALE)) is None:
            counts["unparseable"] += 1
        else:
            a["score"] = s


def pick_pair(p: Prompt, min_margin: float) -> tuple[str | None, dict[str, Any] | None, dict[str, Any] | None]:
    """(drop reason, chosen, rejected): the first highest- and first lowest-scored answers, or why there is none."""
    if p.failed:
        return "request_failed", None, None
    if len(p.answers) < 2:
        return "too_few_answers", None, None
    scored = [a for a in p.answers if a["score"] is not None]
    if len(scored) < 2:
        return "judge_unparseable", None, None
    best, worst = max(scored, key=lambda a: a["score"]), min(scored, key=lambda a: a["score"])
    if best["score"] == worst["score"]:
        return "tie", None, None
    if round(best["score"] - worst["score"], 6) < min_margin:  # 5.3 - 4.3 is 0.99999..., not below a margin of 1
        return "below_margin", None, None
    return None, best, worst


def length_bias(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """How often chosen is the longer answer, and the mean lengths in characters."""
    n = len(rows)
    chosen = [len(r["chosen"][-1]["content"]) for r in rows]
    rejected = [len(r["rejected"][-1]["content"]) for r in rows]
    if not n:
        return {"pairs": 0, "chosen_longer_share": None, "mean_chars_chosen": None, "mean_chars_rejected": None}
    return {"pairs": n, "chosen_longer_share": round(sum(c > r for c, r in zip(chosen, rejected)) / n, 4),
            "mean_chars_chosen": round(sum(chosen) / n, 1), "mean_chars_rejected": round(sum(rejected) / n, 1)}


def run_preference(reg: Registry, prompts_ref: str, *, name: str, generator: str, judge: str, k: int | None = None,
                   temperatures: list[float] | None = None, options: GenOptions | None = None,
                   min_margin: float = 1.0, max_tokens: int = 256, judge_max_tokens: int = 512,
                   seed: int = 0) -> tuple[Manifest, bool, dict[str, Any]]:
    """Answer every distinct prompt k times, judge the answers, commit best-vs-worst pairs as `name`."""
    gen_spec, judge_spec = parse_spec(generator), parse_spec(judge)
    temps = resolve_temperatures(k, temperatures)
    if min_margin < 0:
        raise DatakitError(f"--min-margin {min_margin}: a margin is a score gap, 0 or more (ties are always dropped)")
    kind = judge_kind(judge_spec)
    [(m, df)] = load(reg, [prompts_ref])
    prompts, skipped = load_prompts(m, df)

    with GenJob(reg, name=name, kind="preference", op="synth-preference", options=options) as job:
        counts: Counter[str] = Counter(dict.fromkeys(
            ["generated", "failed", "empty", "duplicate", "judged", "judge_failed", "unparseable"], 0))
        # Seeds differ per answer too, so two answers at one temperature are still two samples.
        results = job.generate(gen_spec, [Request(messages=p.messages, max_tokens=max_tokens, temperature=t, seed=seed + i)
                                          for p in prompts for i, t in enumerate(temps)])
        _collect_answers(prompts, results, temps, counts)
        _score(job, judge_spec, kind, prompts, counts, max_tokens=judge_max_tokens)

        rows = []
        for p in prompts:
            reason, best, worst = pick_pair(p, min_margin)
            if reason is not None:
                job.reject(reason, {"prompt": p.messages, "answers": p.answers}, source=p.source_id)
                continue
            rows.append({
                "prompt": p.messages,
                "chosen": [{"role": "assistant", "content": best["text"]}],
                "rejected": [{"role": "assistant", "content": worst["text"]}],
                "score_chosen": best["score"], "score_rejected": worst["score"], "group_id": p.group_id,
                "meta": {"source_id": p.source_id, "generator": str(gen_spec), "judge": str(judge_spec),
                         "temperature_chosen": best["temperature"], "temperature_rejected": worst["temperature"],
                         "scores": [{"temperature": a["temperature"], "score": a["score"]} for a in p.answers]},
            })
        stats = {"prompts": len(prompts), "source_rows": df.height, "skipped_rows": dict(sorted(skipped.items())),
                 "answers": dict(sorted(counts.items())), "judge_kind": kind, "length_bias": length_bias(rows)}
        params = {"prompts": m.ref, "generator": str(gen_spec), "judge": str(judge_spec), "judge_kind": kind,
                  "temperatures": temps, "min_margin": min_margin, "max_tokens": max_tokens,
                  "judge_max_tokens": judge_max_tokens, "seed": seed}
        return job.commit(rows, inputs=[m], params=params, stats=stats)
