"""The pure parts of `datakit augment`: prompts in the row's language, cleaning of what the model wrote, and the
quality gates a variant must pass (FIELD_NOTES 3: 30 seed pairs copied to 35,000 rows taught a model to loop).

A variant is a (question, answer) pair: the source's last user turn paraphrased and its last assistant turn
reworded. Every gate returns None to keep it or the reason it drops it; `check` runs them in GATES order and
gives the first reason, so each dropped candidate is counted once:

  truncated  the generator stopped at max_tokens (finish_reason "length") for the question or the answer
  empty      nothing left of the question or the answer after cleaning
  language   text.guess_lang of the variant question (answer) differs from the source question's (answer's)
  deny_name  the variant names an AI vendor or model (denylist.find_vendor_names, plus --deny-names aliases)
             that the source row does not name
  meaning    a number or key term of the source question (answer) is missing from the variant's (`key_terms`)
  copy       similarity to the source, or to a sibling variant already kept, is >= the threshold
  duplicate  the whole conversation equals one already in the output (checked by augment.py)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import regex

from datakit.text import guess_lang, normalize

GATES = ("truncated", "empty", "language", "deny_name", "meaning", "copy", "duplicate")
LANG_NAMES = {"en": "English", "ko": "Korean", "zh": "Chinese", "ja": "Japanese"}
# One hint per variant index, so siblings differ even on a server that ignores the sampling seed.
STYLES = ("", "Use a more casual tone.", "Make it more concise.", "Use a more formal tone.",
          "Start the sentence in a different way.")
SYSTEM = "You rewrite text for a training dataset. Reply with the rewritten text only: no preamble, no quotes, no notes."


class Pair(NamedTuple):
    question: str
    answer: str


# ---- prompts ------------------------------------------------------------------------------------


def _in_lang(lang: str) -> str:
    return f"in {LANG_NAMES[lang]}" if lang in LANG_NAMES else "in the same language as the original"


def question_prompt(question: str, lang: str, variant: int) -> list[dict[str, str]]:
    """Chat messages asking for a paraphrase of `question`, written in `lang`."""
    style = STYLES[variant % len(STYLES)]
    user = (f"Paraphrase this question {_in_lang(lang)}. Keep its meaning, every number (as digits) and every "
            f"name; change the wording. {style}\n\nQuestion: {question}")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def answer_prompt(question: str, answer: str, lang: str, variant: int) -> list[dict[str, str]]:
    """Chat messages asking for `answer` reworded in `lang`, every fact, number and name kept."""
    style = STYLES[variant % len(STYLES)]
    user = (f"Rewrite the answer below {_in_lang(lang)} in different words. Keep every fact, every number exactly "
            f"as written (digits stay digits) and every name; add nothing, and name no AI product or company the "
            f"answer does not name. {style}\n\nQuestion: {question}\nAnswer: {answer}")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


# ---- cleaning -----------------------------------------------------------------------------------

_THINK_RE = regex.compile(r"<think>.*?</think>", regex.S | regex.I)
_NOUN = r"(?:paraphrase|rewrite|rewritten|reworded|version|variant|question|answer)"
_PREAMBLE_RE = regex.compile(
    r"^(?:(?:sure|okay|ok|certainly)\b[,.!]?\s*)?(?:"
    rf"here(?:'s|’s| is| are)\b[^:\n]{{0,60}}?\b{_NOUN}s?\b[^:\n]{{0,40}}[:：]"  # Here is a paraphrase of it:
    rf"|(?:paraphrased?|rewritten|reworded|varied|new|alternative)?\s*{_NOUN}\s*\d*\s*[:：]"  # Paraphrase 2:
    r"|(?:질문|답변|답|问题|回答|答案|答|質問|答え)\s*[:：])\s*", regex.I)
_QUOTES = (('"', '"'), ("'", "'"), ("“", "”"), ("‘", "’"), ("「", "」"), ("『", "』"), ("«", "»"))


def clean_output(text: str | None) -> str:
    """What the model wrote, less reasoning blocks, a "Paraphrase:"-style preamble and wrapping quotes."""
    text = _THINK_RE.sub("", text or "")
    if "</think>" in text:  # the chat template opened the block, so only its end is in the text
        text = text.rsplit("</think>", 1)[1]
    text = text.split("<think>", 1)[0].strip()  # an unclosed block: it stopped while still reasoning
    while True:
        before = text
        text = _PREAMBLE_RE.sub("", text, count=1).strip()
        for o, c in _QUOTES:
            inner = text[len(o):-len(c)]
            if len(text) >= 2 and text.startswith(o) and text.endswith(c) and o not in inner and c not in inner:
                text = inner.strip()
        if text == before:
            return text


# ---- what a variant must keep -------------------------------------------------------------------

_NUMBER_RE = regex.compile(r"\d+(?:[.,]\d+)*")
_THOUSANDS_RE = regex.compile(r"\d{1,3}(?:,\d{3})+")
_WORD_RE = regex.compile(r"[\p{Latin}\p{N}][\p{Latin}\p{M}\p{N}]*")
_OPENING = " \t\"'“‘([「『«*-"  # may stand between a sentence end and its first word
_FULLWIDTH = {0xFF10 + i: ord("0") + i for i in range(10)} | {0xFF0C: ord(","), 0xFF0E: ord(".")}


def numbers(text: str) -> set[str]:
    """Every number written with digits (NFKC, so full-width digits count; "35,000" is "35000")."""
    found = set()
    for m in _NUMBER_RE.finditer(normalize(text).translate(_FULLWIDTH)):
        s = m.group()
        found.add(s.replace(",", "") if _THOUSANDS_RE.fullmatch(s) else s)
    return found


def key_terms(text: str) -> set[str]:
    """Latin-script words a variant must keep, case and all: names and terms the wording cannot change.

    In Korean, Chinese or Japanese text every Latin word of two or more characters (product names, acronyms:
    "Acme", "LoRA"). In other text a word is kept when it has a capital after its first letter or a digit
    ("iPhone", "GPT", "Qwen2"), or is capitalized mid-sentence ("made by Acme"). A capitalized first word of a
    sentence counts only when the text also capitalizes it mid-sentence, since "Refunds are..." says nothing.
    Case counts ("Acme Assistant" is a name, "an assistant" is not). Names in Hangul or Han script are not found
    (that needs a segmenter); numbers cover dates, prices and versions.
    """
    text = normalize(text)
    cjk = guess_lang(text) in ("ko", "zh", "ja")
    terms = set()
    for m in _WORD_RE.finditer(text):
        w = m.group()
        if len(w) < 2 or w.isdigit():
            continue
        if cjk or any(c.isupper() for c in w[1:]) or any(c.isdigit() for c in w):
            terms.add(w)
        elif w[0].isupper():
            before = text[max(0, m.start() - 16):m.start()].rstrip(_OPENING)
            if before and before[-1] not in ".!?。！？:：\n":
                terms.add(w)
    return terms


def missing_terms(source: str, variant: str) -> list[str]:
    """Numbers and key terms of `source` that `variant` lacks, sorted."""
    have_numbers = numbers(variant)
    have_words = set(_WORD_RE.findall(normalize(variant)))
    return sorted((numbers(source) - have_numbers) | (key_terms(source) - have_words))


# ---- the gates ----------------------------------------------------------------------------------


def similarity(a: str, b: str) -> float:
    """rapidfuzz's normalized Indel similarity (0-1) of the normalized, case-folded texts."""
    from rapidfuzz import fuzz

    return fuzz.ratio(normalize(a).casefold(), normalize(b).casefold()) / 100


def pair_similarity(a: Pair, b: Pair) -> float:
    """The closer of the two turns: a variant whose question or answer is a near copy is a copy."""
    return max(similarity(a.question, b.question), similarity(a.answer, b.answer))


def gate_truncated(finish_reasons: Iterable[str | None]) -> str | None:
    return "truncated" if any(r == "length" for r in finish_reasons) else None


def gate_empty(v: Pair) -> str | None:
    return "empty" if not v.question.strip() or not v.answer.strip() else None


def gate_language(v: Pair, source: Pair) -> str | None:
    same = guess_lang(v.question) == guess_lang(source.question) and guess_lang(v.answer) == guess_lang(source.answer)
    return None if same else "language"


def gate_deny_name(v: Pair, source_text: str, aliases: dict[str, list[str]] | None = None) -> str | None:
    """`source_text` is the whole source row (every turn): a name it already uses is the data's own business."""
    from datakit.evals.denylist import find_vendor_names

    named = {canon for _, canon in find_vendor_names(source_text, aliases=aliases)}
    new = {canon for _, canon in find_vendor_names(f"{v.question}\n{v.answer}", aliases=aliases)} - named
    return "deny_name" if new else None


def gate_meaning(v: Pair, source: Pair) -> str | None:
    lost = missing_terms(source.question, v.question) or missing_terms(source.answer, v.answer)
    return "meaning" if lost else None


def gate_copy(v: Pair, source: Pair, siblings: Sequence[Pair] = (), threshold: float = 0.9) -> str | None:
    return "copy" if any(pair_similarity(v, other) >= threshold for other in (source, *siblings)) else None


def check(v: Pair, source: Pair, *, source_text: str, siblings: Sequence[Pair] = (), threshold: float = 0.9,
          finish_reasons: Iterable[str | None] = (), aliases: dict[str, list[str]] | None = None) -> str | None:
    """The first gate (GATES order, duplicate aside) that drops the variant, or None to keep it."""
    return (gate_truncated(finish_reasons) or gate_empty(v) or gate_language(v, source)
            or gate_deny_name(v, source_text, aliases) or gate_meaning(v, source)
            or gate_copy(v, source, siblings, threshold))


def detail(reason: str, v: Pair, source: Pair) -> dict[str, Any]:
    """What to show next to a rejected variant: the lost terms for meaning, the similarity for copy."""
    if reason == "meaning":
        lost = missing_terms(source.question, v.question) + missing_terms(source.answer, v.answer)
        return {"missing": sorted(set(lost))}
    if reason == "copy":
        return {"similarity_to_source": round(pair_similarity(v, source), 4)}
    return {}
