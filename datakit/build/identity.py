"""`datakit build identity SPEC.yaml --name NAME`: who the assistant is, in every language, with variation.

Affirm rows answer "who are you / who made you"; deny rows answer "are you another company's
model?" in generic words only. Every question comes in several phrasings and every phrasing gets
different answers; rows derived from one question share a `group_id`. Seed files (alpaca rows
with `{{name}}` / `{{author}}`, such as LLaMA-Factory's identity.json) add their own groups.
The build refuses any row that names another vendor or model (FIELD_NOTES 3.1) and never pads
with copies (FIELD_NOTES 3.2): asked for more rows than it can vary, it stops and says so.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from datakit.build.identity_templates import FRAMES, TEMPLATES
from datakit.errors import DatakitError
from datakit.ops import runner
from datakit.ops.runner import OpOutput
from datakit.registry.rows import records_to_frame
from datakit.registry.store import Registry
from datakit.schemas import Manifest
from datakit.specfile import load_spec_file
from datakit.text import guess_lang


class IdentitySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="the assistant's name, e.g. Acme Assistant")
    maker: str = Field(description="who made it, e.g. Acme")
    description: str = "a helpful assistant for your questions"
    languages: list[str] = Field(default_factory=lambda: ["en"], description="any of en, ko, zh, ja")
    seeds: list[str] = Field(default_factory=list, description="alpaca json/jsonl files with {{name}} / {{author}}")
    answers_per_question: int = Field(2, ge=1, description=(
        "distinct answers paired with each question phrasing; each pairing opens the question differently "
        "(greeting, 'quick question', ...), so no question text repeats"))
    min_rows: int | None = Field(None, ge=1, description="fail unless this many distinct rows can be built")
    seed: int = 0


def load_spec(path: Path) -> IdentitySpec:
    return load_spec_file(path, IdentitySpec, "identity spec", "identity.schema.json")


def _chat(q: str, a: str, intent: str, lang: str, group: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
            "intent": intent, "lang": lang, "group_id": group}


def _template_rows(spec: IdentitySpec, rng: random.Random) -> list[dict[str, Any]]:
    fill = {"name": spec.name, "maker": spec.maker, "description": spec.description}
    unknown = [lang for lang in spec.languages if lang not in TEMPLATES["affirm"]["who"]]
    if unknown:
        raise DatakitError(f"languages {unknown}: built-in templates cover en, ko, zh, ja; add seeds for others")
    rows = []
    for intent, topics in TEMPLATES.items():
        for topic, by_lang in topics.items():
            for lang in spec.languages:
                questions, answers = by_lang[lang]
                order = rng.sample(answers, len(answers))
                frames = FRAMES[lang]
                for i, q in enumerate(questions):  # rotate so each phrasing meets different answers
                    for k in range(min(spec.answers_per_question, len(answers), len(frames))):
                        a = order[(i + k) % len(order)]
                        text = q.format(**fill)
                        asked = frames[k].format(q=text, q_lower=text[:1].lower() + text[1:])
                        rows.append(_chat(asked, a.format(**fill), intent, lang, f"{intent}-{topic}-{lang}"))
    return rows


def _seed_rows(spec: IdentitySpec, spec_dir: Path) -> list[dict[str, Any]]:
    rows = []
    for s in spec.seeds:
        path = Path(s) if Path(s).is_absolute() else spec_dir / s
        if not path.is_file():
            raise DatakitError(f"seeds: {path} not found")
        text = path.read_text(encoding="utf-8")
        items = json.loads(text) if text.lstrip().startswith("[") else [json.loads(x) for x in text.splitlines() if x.strip()]
        for i, r in enumerate(items):
            q = (r.get("instruction", "") + ("\n\n" + r["input"] if r.get("input") else "")).strip()
            a = r.get("output", "")
            if not q or not a:
                continue
            q, a = (x.replace("{{name}}", spec.name).replace("{{author}}", spec.maker) for x in (q, a))
            rows.append(_chat(q, a, r.get("intent", "affirm"), guess_lang(q + " " + a), f"seed-{path.stem}-{i}"))
    return rows


def _denied(rows: list[dict[str, Any]], spec: IdentitySpec) -> list[tuple[int, str]]:
    from datakit.evals.denylist import find_denied

    found = []
    for i, r in enumerate(rows):
        text = "\n".join(m["content"] for m in r["messages"])
        hits = find_denied(text, allow=(spec.name, spec.maker))
        if hits:
            found.append((i, ", ".join(sorted({canon for _, canon in hits}))))
    return found


def build_identity(spec: IdentitySpec, spec_dir: Path, *, drop_denied: bool = False) -> OpOutput:
    rows = _template_rows(spec, random.Random(spec.seed)) + _seed_rows(spec, spec_dir)
    rows_in = len(rows)
    denied = _denied(rows, spec)
    if denied and not drop_denied:
        listing = "; ".join(f"row {i + 1}: {names}" for i, names in denied[:8])
        raise DatakitError(f"{len(denied)} identity row(s) name another vendor or model ({listing}). Deny data must use "
                           "generic words such as 'another AI model'; fix the seeds, or pass --drop-denied to leave them out")
    bad = {i for i, _ in denied}
    kept, seen, copies = [], set(), 0
    for i, r in enumerate(rows):
        key = json.dumps(r["messages"], ensure_ascii=False)
        if i in bad:
            continue
        if key in seen:
            copies += 1
            continue
        seen.add(key)
        kept.append(r)
    if spec.min_rows and len(kept) < spec.min_rows:
        raise DatakitError(f"min_rows {spec.min_rows}: only {len(kept)} distinct rows can be built from the templates and "
                           "seeds; add languages, seeds or paraphrases (datakit augment) instead of copies")
    questions = {r["messages"][0]["content"] for r in kept}
    answers = {r["messages"][1]["content"] for r in kept}
    share = {lang: round(len({r["messages"][0]["content"] for r in kept if r["lang"] == lang})
                         / max(1, sum(r["lang"] == lang for r in kept)), 3) for lang in sorted({r["lang"] for r in kept})}
    stats = {"rows_in": rows_in, "rows_out": len(kept), "removed": rows_in - len(kept), "denied_rows": len(bad),
             "duplicate_rows": copies, "distinct_questions": len(questions), "distinct_answers": len(answers),
             "distinct_question_share": share,
             "by_intent": dict(Counter(r["intent"] for r in kept)), "by_lang": dict(Counter(r["lang"] for r in kept))}
    return OpOutput(records_to_frame("identity", kept).drop("id"), stats)


def run_build_identity(reg: Registry, spec_path: Path, *, name: str,
                       drop_denied: bool = False) -> tuple[Manifest, bool, dict[str, Any]]:
    """Build from a spec file (seed paths relative to it) and commit kind `identity`."""
    spec = load_spec(spec_path)
    spec_dir = spec_path.resolve().parent
    out = build_identity(spec, spec_dir, drop_denied=drop_denied)
    # the spec and its seed files, with their sha256: lineage reaches the files this version was made from
    sources = [spec_path.resolve(), *((Path(s) if Path(s).is_absolute() else spec_dir / s) for s in spec.seeds)]
    files = [{"file": p.name, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()} for p in sources]
    m, created = runner.commit(reg, name=name, kind="identity", inputs=[], op="build-identity",
                               params={**spec.model_dump(), "drop_denied": drop_denied, "files": files}, out=out)
    return m, created, out.stats
