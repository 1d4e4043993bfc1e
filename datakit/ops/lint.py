"""`datakit lint`: the FIELD_NOTES 3 failures, found in a registry version before it trains a model.

Checks, each a finding with a level (error fails the lint, warning and info do not):
  deny_name     a vendor/model name (`find_vendor_names`: look-alikes, typos, aliases). Error in an
                identity-looking row (kind identity, or an assistant turn that claims who it is): there
                the name becomes an associated token. Warning elsewhere: "export from Google Docs" is fine.
  structure     the chat rules of `validate.check_frame` (error).
  copies        rows whose normalized conversation repeats an earlier one, above 5% of rows (warning).
  identity_share  in a `mix` version, identity components' realized share below the minimum (error).
  script_mix    Hanzi inside a Korean answer, Hangul/kana inside a Chinese one, U+FFFD (warning).
  length        rows over `max_tokens` (`text.tokens` count, an approximation; warning).
  placeholder   an unfilled template variable (`{{name}}`, `{{ author }}`, LLaMA-Factory's identity.json has
                both): error in an identity-looking row, where the model would learn the braces as its name;
                warning elsewhere (a Jinja or Vue answer shows them on purpose).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal

import polars as pl
import regex
from pydantic import BaseModel, Field, computed_field

from datakit.evals.denylist import find_vendor_names, load_deny_file
from datakit.registry.store import Registry
from datakit.text import guess_lang, tokens

Level = Literal["error", "warning", "info"]
COPY_SHARE_MAX = 0.05
MESSAGE_COLUMNS = {"sft": ["messages"], "identity": ["messages"], "magpie": ["messages"],
                   "preference": ["prompt", "chosen", "rejected"], "kto": ["prompt", "completion"]}
COMPANIES = {"OpenAI", "Anthropic", "Google", "Meta", "Alibaba", "Baidu", "Microsoft", "xAI", "Cohere", "Naver",
             "Kakao", "Upstage", "01.AI", "Zhipu", "Moonshot", "DeepSeek", "Tongyi"}
GENERIC = {  # what to write instead of the name, per row language
    "model": {"en": "another AI model", "ko": "다른 AI 모델", "zh": "其他AI模型", "ja": "他のAIモデル"},
    "company": {"en": "another company", "ko": "다른 회사", "zh": "其他公司", "ja": "他の会社"},
}
# An assistant turn that says who it is: first person near an assistant word, or "as an AI".
_CLAIM_RE = regex.compile(
    r"(?i)(?:\b(?:I am|I'm|my name is|call me|I was)\b|我是|我叫|저는|제 이름은|나는|私は)[^.!?。！？\n]{0,60}?"
    r"(?:\bAI\b|assistant|language model|chatbot|\b(?:developed|created|trained|built|made) by\b|\{\{name\}\}"
    r"|助手|模型|人工智能|开发|训练|어시스턴트|인공지능|모델|챗봇|개발|훈련|アシスタント|モデル|開発)"
    r"|\bas an AI\b"
)
# "I am ChatGPT." / "저는 챗GPT입니다": a first-person phrase right before the name is a claim with no assistant word
_NAMES_SELF_RE = regex.compile(r"(?i)(?:\bI am|\bI'm|\bmy name is|\bcall me|我是|我叫|저는|제 이름은|나는|私は)\s*"
                               r"(?:(?:an?|the|called|named)\s+)?$")
_ASK_RE = regex.compile(
    r"(?i)\b(?:are|were) you\b|\byour (?:name|maker|creator|model)\b|\bwho (?:made|created|trained|built|developed) you\b"
    r"|你是|你叫|你的|作为|너는|넌|당신은|당신의|あなたは|あなたの"
)
_PLACEHOLDER_RE = regex.compile(r"\{\{\s*[A-Za-z_][\w.]*\s*\}\}")
# template variables that stand for who the model is: unfilled, they are an identity error in any row
IDENTITY_VARIABLES = {"name", "author", "model", "model_name", "assistant", "assistant_name", "bot", "bot_name",
                      "company", "creator", "developer", "organization", "org", "brand", "product"}
_SENTENCE_RE = regex.compile(r"(?<=[.!?])\s+|\n|(?<=[。！？])")  # "chat.gpt" and "01.AI" stay whole
_FOREIGN = {"ko": regex.compile(r"\p{sc=Han}+"), "zh": regex.compile(r"[\p{sc=Hangul}\p{sc=Hiragana}\p{sc=Katakana}]+"),
            "ja": regex.compile(r"\p{sc=Hangul}+")}
_GLOSS_RE = regex.compile(r"[(（]\p{sc=Han}+[)）]")  # 대한민국(大韓民國): Hanja glossed in brackets is Korean style


class Finding(BaseModel):
    level: Level
    check: str
    row: int | None = Field(None, description="0-based position in the version's row order")
    field: str | None = None
    matched: str | None = None
    canonical: str | None = None
    suggestion: str | None = None
    message: str

    # The names the CLI contract gives in `lint --json`, beside the model's own.
    @computed_field  # type: ignore[prop-decorator]
    @property
    def match(self) -> str | None:
        return self.matched

    @computed_field  # type: ignore[prop-decorator]
    @property
    def severity(self) -> str:
        return self.level


class LintReport(BaseModel):
    ref: str
    kind: str
    rows: int
    findings: list[Finding]
    counts: dict[str, int]
    stats: dict[str, Any]
    ok: bool


def _turns(kind: str, rec: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(field, role, content) of every text in a row: `messages[2]` style fields for message lists."""
    for col in MESSAGE_COLUMNS.get(kind, []):
        for i, m in enumerate(rec.get(col) or []):
            if m.get("content"):
                yield f"{col}[{i}]", m.get("role") or "", m["content"]
    if kind == "cpt" and rec.get("text"):
        yield "text", "", rec["text"]


def _row_lang(kind: str, rec: dict[str, Any], turns: list[tuple[str, str, str]]) -> str:
    lang = rec.get("lang") if kind == "identity" else None
    return lang if lang in GENERIC["model"] else guess_lang("\n".join(t for _, _, t in turns))


def _deny_findings(i: int, kind: str, turns: list[tuple[str, str, str]], lang: str, *, aliases: dict[str, list[str]],
                   allow: tuple[str, ...]) -> list[Finding]:
    claims = kind == "identity" or any(role == "assistant" and _CLAIM_RE.search(t) for _, role, t in turns)
    out = []
    for field, role, text in turns:
        for sentence in _SENTENCE_RE.split(text):
            # in a general row only the sentence that says who the model is ("I am ...", "Are you ...?") is
            # an error: "As an AI I can't draw; try Microsoft Excel" names a tool, not an identity
            about_self = kind == "identity" or (claims and bool((_ASK_RE if role == "user" else _CLAIM_RE).search(sentence)))
            for found, canon in find_vendor_names(sentence, aliases=aliases, allow=allow):
                at = sentence.find(found)
                about_self = about_self or (role == "assistant" and at >= 0
                                            and bool(_NAMES_SELF_RE.search(sentence[max(0, at - 40):at])))
                generic = GENERIC["company" if canon in COMPANIES else "model"].get(lang, GENERIC["model"]["en"])
                out.append(Finding(
                    level="error" if about_self else "warning", check="deny_name", row=i, field=field, matched=found,
                    canonical=canon, suggestion=generic,
                    message=f"names {canon} ({found!r}) " + (
                        f"where the model says who it is; write {generic!r}: a model trained on it learns the name "
                        "as its own (FIELD_NOTES 3)" if about_self else
                        f"in a general row; fine in a how-to, else write {generic!r} (--allow {canon} to silence)"),
                ))
    return out


def _placeholder_findings(i: int, kind: str, turns: list[tuple[str, str, str]]) -> list[Finding]:
    claims = kind == "identity" or any(role == "assistant" and _CLAIM_RE.search(t) for _, role, t in turns)
    out = []
    for field, _, text in turns:
        for m in {m.group(0): m for m in _PLACEHOLDER_RE.finditer(text)}.values():
            found = m.group(0)
            identity = claims or found.strip("{} ").lower() in IDENTITY_VARIABLES
            out.append(Finding(
                level="error" if identity else "warning", check="placeholder", row=i, field=field, matched=found,
                message=f"unfilled template variable {found}" + (
                    ": fill it (datakit build identity fills {{name}} and {{author}} from its spec) or the model "
                    "learns the braces as its name" if identity else "; fine if the row shows template code")))
    return out


def _script_findings(i: int, turns: list[tuple[str, str, str]], lang: str) -> list[Finding]:
    out = []
    for field, role, text in turns:
        if role != "assistant":
            continue
        if "\ufffd" in text:
            out.append(Finding(level="warning", check="script_mix", row=i, field=field, matched="\ufffd",
                               message="replacement character U+FFFD: broken bytes in the answer; fix the source encoding"))
        pattern = _FOREIGN.get(lang)
        if pattern is None:
            continue
        scan = _GLOSS_RE.sub(lambda m: " " * len(m.group()), text) if lang == "ko" else text
        for m in pattern.finditer(scan):
            snippet = text[max(0, m.start() - 10):m.end() + 10]
            out.append(Finding(level="warning", check="script_mix", row=i, field=field, matched=m.group(),
                               message=f"{lang} answer carries foreign script {m.group()!r} in {snippet!r}; "
                                       "rewrite it in the row's language or drop the row"))
            break  # one finding per turn: the first run shows the problem
    return out


def _row_findings(kind: str, df: pl.DataFrame, *, aliases: dict[str, list[str]], allow: tuple[str, ...],
                  max_tokens: int | None) -> list[Finding]:
    from datakit.registry.rows import frame_to_records

    out: list[Finding] = []
    for i, rec in enumerate(frame_to_records(kind, df)):
        turns = list(_turns(kind, rec))
        lang = _row_lang(kind, rec, turns)
        out += _deny_findings(i, kind, turns, lang, aliases=aliases, allow=allow)
        out += _script_findings(i, turns, lang)
        out += _placeholder_findings(i, kind, turns)
        if max_tokens is not None:
            n = sum(len(tokens(t)) for _, _, t in turns)
            if n > max_tokens:
                out.append(Finding(level="warning", check="length", row=i, matched=str(n),
                                   message=f"about {n} tokens > max_tokens={max_tokens}; split the row or raise --max-tokens"))
    return out


def rows_findings(kind: str, df: pl.DataFrame, *, deny_file: str | Path | None = None,
                  allow: Iterable[str] = ()) -> list[Finding]:
    """The per-row checks (structure, vendor names, script mixing) of a few rows, e.g. a reviewer's edit."""
    aliases = load_deny_file(deny_file) if deny_file else {}
    return _structure_findings(kind, df) + _row_findings(kind, df, aliases=aliases, allow=tuple(allow), max_tokens=None)


def _structure_findings(kind: str, df: pl.DataFrame) -> list[Finding]:
    from datakit.io.validate import REASON, check_frame

    if kind not in MESSAGE_COLUMNS:
        return []
    cols = [c for c in df.columns if c not in ("id", "meta")]
    reasons = check_frame(kind, df.select(cols))[REASON]
    return [Finding(level="error", check="structure", row=i, matched=r, message=f"row {i}: {r}")
            for i, r in enumerate(reasons) if r is not None]


def _copy_findings(kind: str, df: pl.DataFrame, stats: dict[str, Any]) -> list[Finding]:
    from datakit.ops.fields import texts

    if df.height == 0:
        return []
    conv = texts(kind, df, "text" if kind == "cpt" else "conversation").to_list()
    counts = Counter(conv)
    copies = df.height - len(counts)
    share = copies / df.height
    stats["copy_share"] = round(share, 4)
    if share <= COPY_SHARE_MAX:
        return []
    top, n = counts.most_common(1)[0]
    return [Finding(level="warning", check="copies", matched=top[:80], message=(
        f"{copies} of {df.height} rows ({share:.1%}) repeat an earlier row (> {COPY_SHARE_MAX:.0%}); the most "
        f"repeated appears {n} times. Copies teach the model to repeat a pattern: augment with paraphrases "
        "instead of copies (vary the question and the answer)"))]


def _identity_share(m: Any, minimum: float, stats: dict[str, Any]) -> list[Finding]:
    comps = (m.stats.get("components") or []) if m.op == "mix" else []
    if not comps:
        return []
    share = sum(c.get("realized_share", 0.0) for c in comps if c.get("kind") == "identity")
    stats["identity_share"] = round(share, 4)
    if not any(c.get("kind") == "identity" for c in comps):
        return [Finding(level="info", check="identity_share", matched="0",
                        message="mixture has no identity component; fine unless this run must learn who it is")]
    if share >= minimum:
        return []
    return [Finding(level="error", check="identity_share", matched=f"{share:.1%}", message=(
        f"identity components are {share:.1%} of the mixture, below identity_share_min={minimum:.0%} (FIELD_NOTES 3: "
        f"5% was too little); raise their weight or add a min_share policy, or pass --identity-share-min"))]


def lint(reg: Registry, ref: str, *, deny_file: str | Path | None = None, allow: Iterable[str] = (),
         max_tokens: int | None = None, identity_share_min: float = 0.3) -> LintReport:
    """Every check over one registry version; `ok` is False when any finding is an error."""
    m = reg.resolve(ref)
    df = reg.load(m)
    aliases = load_deny_file(deny_file) if deny_file else {}
    stats: dict[str, Any] = {}
    findings = _structure_findings(m.kind, df)
    findings += _row_findings(m.kind, df, aliases=aliases, allow=tuple(allow), max_tokens=max_tokens)
    findings += _copy_findings(m.kind, df, stats) if m.kind != "probes" else []
    findings += _identity_share(m, identity_share_min, stats)
    order = {"error": 0, "warning": 1, "info": 2}
    findings.sort(key=lambda f: (order[f.level], f.row if f.row is not None else -1))
    counts = dict(Counter(f"{f.check}.{f.level}" for f in findings))
    return LintReport(ref=m.ref, kind=m.kind, rows=df.height, findings=findings, counts=dict(sorted(counts.items())),
                      stats=stats, ok=not any(f.level == "error" for f in findings))

