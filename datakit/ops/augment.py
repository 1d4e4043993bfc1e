"""`datakit augment`: n variants of every chat row, each a paraphrased question and a reworded answer.

Copies teach repetition (FIELD_NOTES 3: 30 seed pairs copied to 35,000 rows made a model loop), so a variant is
kept only when it passes the gates in `augment_gates` (truncated, empty, language, deny_name, meaning, copy,
duplicate); every drop is counted by reason and kept in the version's rejected.parquet.

What is rewritten: the last user turn and the last assistant turn; system prompts and earlier turns stay as they
are. Variants keep the source row's group_id (a row without one gets its row id, on the kept source row too), so
a split never puts a paraphrase on the other side of its source; they also keep its split and kind columns
(identity intent and lang, magpie generation; magpie scores are dropped: they scored the source's text).

Each variant costs two requests (question, answer) with sampling seed `seed + i` for variant i; they go through
GenJob, so they are journaled, a rerun after a crash re-sends only what did not finish, and nothing is committed
while requests failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

from datakit.errors import DatakitError
from datakit.generate.client import Request, Result
from datakit.generate.job import GenJob, GenOptions
from datakit.generate.spec import GeneratorSpec, parse_spec
from datakit.ops.augment_gates import (
    GATES,
    Pair,
    answer_prompt,
    check,
    clean_output,
    detail,
    pair_similarity,
    question_prompt,
)
from datakit.registry.rows import frame_to_records
from datakit.registry.store import Registry
from datakit.schemas import Manifest
from datakit.text import guess_lang, normalize

KINDS = ("sft", "identity", "magpie")


@dataclass
class Source:
    """A row to augment: the record and where its question and answer sit in `messages`."""

    row: dict[str, Any]
    q_at: int
    a_at: int

    @property
    def pair(self) -> Pair:
        msgs = self.row["messages"]
        return Pair(msgs[self.q_at]["content"], msgs[self.a_at]["content"])

    @property
    def text(self) -> str:
        return "\n".join(m.get("content") or "" for m in self.row["messages"])


def find_turns(messages: list[dict[str, Any]]) -> tuple[int, int] | None:
    """Indices of the last assistant turn with text and the last user turn before it; None when either is missing."""
    a_at = next((i for i in range(len(messages) - 1, -1, -1)
                 if messages[i]["role"] == "assistant" and (messages[i].get("content") or "").strip()), None)
    if a_at is None:
        return None
    q_at = next((i for i in range(a_at - 1, -1, -1)
                 if messages[i]["role"] == "user" and (messages[i].get("content") or "").strip()), None)
    return None if q_at is None else (q_at, a_at)


def build_requests(sources: list[Source], *, n: int, seed: int, temperature: float, max_tokens: int) -> list[Request]:
    """Two requests per variant, in order: source 0 variant 0 question, its answer, source 0 variant 1 ..."""
    reqs = []
    for s in sources:
        q, a = s.pair
        q_lang, a_lang = guess_lang(q), guess_lang(a)
        for i in range(n):
            common = {"temperature": temperature, "seed": seed + i, "max_tokens": max_tokens}
            reqs.append(Request(messages=question_prompt(q, q_lang, i), **common))
            reqs.append(Request(messages=answer_prompt(q, a, a_lang, i), **common))
    return reqs


def variant_record(kind: str, s: Source, v: Pair, i: int, spec: GeneratorSpec) -> dict[str, Any]:
    """The source row with its question and answer replaced; lineage in meta."""
    msgs = [dict(m) for m in s.row["messages"]]
    msgs[s.q_at]["content"], msgs[s.a_at]["content"] = v.question, v.answer
    rec = {k: val for k, val in s.row.items() if k not in ("id", "meta")}
    rec["messages"] = msgs
    if kind == "magpie":
        rec.pop("scores", None)
    rec["meta"] = {"augmented_from": s.row["id"], "variant": i, "generator": str(spec)}
    return rec


def _conversation_key(rec: dict[str, Any]) -> tuple:
    return tuple((m["role"], normalize(m.get("content") or "")) for m in rec["messages"])


def _load_sources(reg: Registry, ref: str) -> tuple[Manifest, list[dict[str, Any]], list[Source]]:
    m = reg.resolve(ref)
    if m.kind not in KINDS:
        raise DatakitError(f"augment rewrites chat rows; {m.ref} is {m.kind}. Give an sft, identity or magpie "
                           "dataset (build chat rows from cpt text with: datakit build sft --from REF)")
    rows = list(frame_to_records(m.kind, reg.load(m)))
    for row in rows:  # splits keep a group together, so the source and its variants need one
        row["group_id"] = row.get("group_id") or row["id"]
    sources = [Source(row, *turns) for row in rows if (turns := find_turns(row["messages"]))]
    return m, rows, sources


def run_augment(reg: Registry, ref: str, *, name: str, n: int, generator: GeneratorSpec | str,
                options: GenOptions | None = None, threshold: float = 0.9, keep_source: bool = True, seed: int = 0,
                deny_names: str | Path | None = None, temperature: float = 0.8,
                max_tokens: int = 512) -> tuple[Manifest, bool, dict[str, Any]]:
    """Generate, gate and commit the variants of every row of `ref` (and the source rows, with `keep_source`)."""
    if n < 1:
        raise DatakitError(f"--n {n}: need at least 1 variant per row")
    if not 0 < threshold <= 1:
        raise DatakitError(f"--threshold {threshold}: a similarity between 0 (exclusive) and 1, e.g. 0.9")
    spec = parse_spec(generator) if isinstance(generator, str) else generator
    aliases = _aliases(deny_names)
    m, rows, sources = _load_sources(reg, ref)
    job = GenJob(reg, name=name, kind=m.kind, op="augment", options=options)
    with job:
        results = job.generate(spec, build_requests(sources, n=n, seed=seed, temperature=temperature,
                                                    max_tokens=max_tokens))
        variants, sims = _gate(job, m.kind, sources, results, rows, n=n, spec=spec, threshold=threshold,
                               aliases=aliases)
    out = []
    for row in rows:  # a source then its variants, so a group's rows sit together
        if keep_source:
            out.append(row)
        out += variants.get(row["id"], [])
    kept = sum(len(v) for v in variants.values())
    stats = {
        "sources": len(sources),
        "sources_skipped": len(rows) - len(sources),  # no user question or assistant answer to rewrite
        "source_rows_kept": len(rows) if keep_source else 0,
        "variants_kept": kept,
        "gates": {g: job.filtered.get(g, 0) for g in GATES},
        "similarity_mean": round(fmean(sims), 4) if sims else None,
    }
    params = {"input": m.ref, "n": n, "generator": str(spec), "threshold": threshold, "keep_source": keep_source,
              "seed": seed, "temperature": temperature, "max_tokens": max_tokens, "deny_aliases": aliases}
    # source rows pass through: they are not candidates
    return job.commit(out, inputs=[m], params=params, stats=stats, passthrough=len(rows) if keep_source else 0)


def _aliases(path: str | Path | None) -> dict[str, list[str]]:
    from datakit.evals.denylist import load_deny_file

    if path is None:
        return {}
    if not Path(path).is_file():
        raise DatakitError(f"--deny-names {path}: no such file; write one name a line, or 'Name: alias, alias'")
    return load_deny_file(path)


def _gate(job: GenJob, kind: str, sources: list[Source], results: list[Result], rows: list[dict[str, Any]], *,
          n: int, spec: GeneratorSpec, threshold: float,
          aliases: dict[str, list[str]]) -> tuple[dict[str, list[dict[str, Any]]], list[float]]:
    """Kept variant records by source id, and each kept variant's similarity to its source."""
    seen = {_conversation_key(r) for r in rows}  # a variant equal to any source row is a duplicate too
    kept: dict[str, list[dict[str, Any]]] = {}
    sims: list[float] = []
    for k, s in enumerate(sources):
        src, siblings = s.pair, []
        for i in range(n):
            rq, ra = results[2 * (k * n + i)], results[2 * (k * n + i) + 1]
            if not (rq.ok and ra.ok):
                continue  # counted as failed by the job; commit refuses unless --allow-failed
            v = Pair(clean_output(rq.text), clean_output(ra.text))
            rec = variant_record(kind, s, v, i, spec)
            reason = check(v, src, source_text=s.text, siblings=siblings, threshold=threshold,
                           finish_reasons=(rq.finish_reason, ra.finish_reason), aliases=aliases)
            if reason is None and _conversation_key(rec) in seen:
                reason = "duplicate"
            if reason is not None:
                job.reject(reason, {**rec, "meta": {**rec["meta"], **detail(reason, v, src)}}, source=s.row["id"])
                continue
            seen.add(_conversation_key(rec))
            siblings.append(v)
            sims.append(pair_similarity(v, src))
            kept.setdefault(s.row["id"], []).append(rec)
    return kept, sims
