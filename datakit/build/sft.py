"""`datakit build sft --from REF --name NAME`: chat Q&A grounded in each knowledge sentence of a cpt set.

CPT teaches the facts; SFT on questions about the same facts makes them answerable in chat
(FIELD_NOTES 1). Offline, questions come from deterministic multilingual templates around the
sentence's key term, plus a cloze question on one of its numbers (on the key term when it has none);
the answer restates the source sentence, so it is grounded by construction, and a check drops any row
whose answer lost a number or the key term. Every row derived from one sentence shares a `group_id` naming that source row.
(`datakit augment` then paraphrases them with a generator.)
"""

from __future__ import annotations

import random
import re
from collections import Counter
from typing import Any

import polars as pl

from datakit.errors import DatakitError
from datakit.ops import runner
from datakit.ops.runner import OpOutput
from datakit.registry.rows import frame_to_records, records_to_frame
from datakit.registry.store import Registry
from datakit.schemas import Manifest
from datakit.text import guess_lang

QUESTIONS = {
    "en": ["Tell me about {key}.", "What should I know about {key}?", "What is true of {key}?"],
    "ko": ["{key}에 대해 알려 주세요.", "{key}에 관해 알아야 할 점은 무엇인가요?", "{key}은(는) 어떤가요?"],
    "zh": ["请介绍一下{key}。", "关于{key}，我需要知道什么？", "{key}是怎样的？"],
    "ja": ["{key}について教えてください。", "{key}について知っておくべきことは何ですか？", "{key}はどのようなものですか？"],
}
CLOZE = {"en": "Fill in the blank: {cloze}", "ko": "빈칸을 채우세요: {cloze}", "zh": "填空：{cloze}", "ja": "空欄を埋めてください：{cloze}"}
# Answer lead-ins vary the answers; they name no file (a file name is not knowledge to train on).
LEADS = {"en": ["", "According to our documentation, "], "ko": ["", "자료에 따르면, "], "zh": ["", "根据资料，"],
         "ja": ["", "資料によると、"]}
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
# the topic of a sentence: an English capitalised phrase, or CJK text before the topic/subject particle
KEY = {
    "en": re.compile(r"\b((?:[A-Z][\w-]*\s)*[A-Z][\w-]*(?:\s(?:[A-Z][\w-]*|\d[\w.]*))*)"),
    "ko": re.compile(r"^(.{2,20}?)(?:은|는|이|가|의)\s"),
    "zh": re.compile(r"^(.{2,12}?)(?:是|有|在|的|位于|成立)"),
    "ja": re.compile(r"^(.{2,15}?)(?:は|が|の)"),
}
SKIP_KEYS = {"The", "A", "An", "It", "This", "These", "Each", "Our", "We", "I", "In", "On", "For"}


def key_term(sentence: str, lang: str) -> str | None:
    """The sentence's topic: what a question about this fact would name."""
    pattern = KEY.get(lang)
    if pattern is None:
        return None
    for m in pattern.finditer(sentence):
        key = m.group(1).strip()
        if lang == "en":
            key = re.sub(r"^(?:The|A|An)\s+", "", key)
            if key in SKIP_KEYS or len(key) < 3:
                continue
        return key
    return None


def grounded(answer: str, source: str, key: str | None) -> bool:
    """Every number of the source and its key term survive in the answer."""
    return all(n in answer for n in NUMBER.findall(source)) and (key is None or key in answer)


def _rows_for(src: dict[str, Any], rng: random.Random) -> list[tuple[str, str]]:
    text, lang = src["text"], guess_lang(src["text"])
    lang = lang if lang in QUESTIONS else "en"
    key = key_term(text, lang)
    pairs = []
    if key:
        for q in QUESTIONS[lang]:
            lead = rng.choice(LEADS[lang])
            body = text[0].lower() + text[1:] if lead and lang == "en" and text.split(" ", 1)[0] in SKIP_KEYS else text
            pairs.append((q.format(key=key), f"{lead}{body}"))
    # A cloze names its one sentence, where "Tell me about Acme." fits many: on a number, else on the key term,
    # so a fact without a number still has a question only it answers (dedup on questions keeps one answer each).
    nums = NUMBER.findall(text)
    target = nums[rng.randrange(len(nums))] if nums else key
    if target:
        cloze = text.replace(target, "___", 1)
        sep = {"en": ". ", "ko": ": "}.get(lang, "：")
        pairs.append((CLOZE[lang].format(cloze=cloze), f"{target}{sep}{text}"))
    return [(q, a) for q, a in pairs if grounded(a, text, key)]


def build_sft(src: tuple[Manifest, pl.DataFrame], *, system: str | None = None, seed: int = 0) -> OpOutput:
    """One to four grounded Q&A rows per knowledge sentence; sentences with no key term or number are skipped."""
    m, df = src
    rng = random.Random(seed)
    rows, skipped = [], Counter()
    for rec in frame_to_records("cpt", df):
        pairs = _rows_for(rec, rng)
        if not pairs:
            skipped["no key term or number to ask about"] += 1
            continue
        for q, a in pairs:
            head = [{"role": "system", "content": system}] if system else []
            rows.append({"messages": [*head, {"role": "user", "content": q}, {"role": "assistant", "content": a}],
                         "group_id": f"fact-{rec['id']}", "meta": {"source_id": rec["id"], "source_ref": m.ref}})
    frame = records_to_frame("sft", rows).drop("id")
    stats = {"sentences": df.height, "sentences_used": df.height - sum(skipped.values()), "rows_out": len(rows),
             "skipped": dict(skipped), "distinct_questions": len({r["messages"][-2]["content"] for r in rows}),
             "langs": dict(Counter(guess_lang(r["messages"][-1]["content"]) for r in rows))}
    return OpOutput(frame, stats)


def run_build_sft(reg: Registry, source: str, *, name: str, system: str | None = None,
                  seed: int = 0) -> tuple[Manifest, bool, dict[str, Any]]:
    """Build from a cpt version of knowledge sentences and commit kind `sft`, its lineage naming the source."""
    [(m, df)] = runner.load(reg, [source])
    if m.kind != "cpt":
        raise DatakitError(f"--from {m.ref} is {m.kind}; build sft reads cpt knowledge sentences "
                           "(datakit build cpt ... --unit sentence)")
    out = build_sft((m, df), system=system, seed=seed)
    man, created = runner.commit(reg, name=name, kind="sft", inputs=[m], op="build-sft",
                                 params={"from": m.ref, "system": system, "seed": seed}, out=out)
    return man, created, out.stats
