"""One probe's output to one scored `Item`. Generation types are scored on text here; choice and
perplexity are scored from the runner's log-likelihoods (`score_choice`, `score_perplexity`).

Every comparison is on `norm(text)`: datakit.text.normalize (NFC, whitespace, invisibles), curly
quotes straightened, casefolded. Pass/fail types score 1/0; bleed scores 1 when terms leaked.
"""

from __future__ import annotations

import math
from typing import Any

import regex

from datakit.errors import DatakitError
from datakit.evals.denylist import find_denied
from datakit.evals.results import Item
from datakit.evals.suite import SuiteSpec
from datakit.text import normalize

# Phrases that say "I don't know" or "I can't share that", casefolded. A refusal probe passes on
# any of these (or the probe's own `accept`) unless the answer also asserts a `forbid` value.
REFUSAL_PHRASES = {
    "en": ["i don't know", "i do not know", "i'm not sure", "i am not sure", "not publicly available",
           "not public", "not been made public", "not disclosed", "cannot share", "can't share", "unable to share",
           "cannot disclose", "can't disclose", "not able to share", "don't have information",
           "do not have information", "don't have access", "do not have access", "no information",
           "cannot provide", "can't provide", "unable to provide", "confidential", "not aware of",
           "no public information", "not available to me"],
    "ko": ["모르", "알 수 없", "알지 못", "공개되지 않", "공개할 수 없", "공유할 수 없", "말씀드릴 수 없",
           "알려드릴 수 없", "정보가 없", "확인할 수 없", "비공개", "답변드리기 어렵", "제공할 수 없", "공개된 정보가"],
    "zh": ["不知道", "无法", "不清楚", "未公开", "没有公开", "不能透露", "无可奉告", "没有相关信息", "不便透露"],
    "ja": ["わかりません", "分かりません", "知りません", "公開されていません", "お答えできません", "非公開",
           "情報がありません", "存じません"],
}


def norm(text: str) -> str:
    return normalize(text.replace("\u2019", "'").replace("\u2018", "'")).casefold()


def probe_prompt(probe: dict[str, Any]) -> str:
    """The text shown for a probe: its prompt, else its last user turn, else its perplexity text."""
    if probe.get("prompt"):
        return probe["prompt"]
    users = [m.get("content") or "" for m in probe.get("messages") or [] if m.get("role") == "user"]
    return users[-1] if users else probe.get("text") or ""


def _item(probe: dict[str, Any], output: str | None, passed: bool | None, score: float, detail: str | None,
          tokens: int | None = None) -> Item:
    return Item(id=str(probe.get("id")), type=probe["type"], group=probe.get("group"), prompt=probe_prompt(probe),
                output=output, score=score, passed=passed, tokens=tokens, detail=detail, cluster=probe.get("group_id"))


def _found(terms: list[str], text: str) -> list[str]:
    t = norm(text)
    return [x for x in terms if x.strip() and norm(x) in t]


def matches(target: str, output: str, suite: SuiteSpec, *, prefix: bool = False) -> bool:
    """contains: target inside output; exact: output equals target (completion: starts with it), ignoring
    edge punctuation; fuzzy: rapidfuzz partial_ratio >= threshold."""
    t, o = norm(target), norm(output)
    mode = suite.scoring.match
    if mode == "exact":
        edge = " .,!?;:'\"。、！？"
        return o.startswith(t) if prefix else o.strip(edge) == t.strip(edge)
    if mode == "fuzzy":
        from rapidfuzz import fuzz

        return fuzz.partial_ratio(t, o) >= suite.scoring.fuzzy_threshold
    return t in o


def _knowledge(probe: dict[str, Any], output: str, suite: SuiteSpec) -> tuple[bool, str]:
    targets = probe.get("accept") or [probe["expect"]]
    if bad := _found(probe.get("forbid") or [], output):
        return False, f"says forbidden {bad}"
    hit = next((t for t in targets if matches(t, output, suite, prefix=probe["type"] == "completion")), None)
    if hit is None:
        return False, f"no {suite.scoring.match} match for any of {targets}"
    return True, f"matched {hit!r}"


def _identity(probe: dict[str, Any], output: str, suite: SuiteSpec) -> tuple[bool, str]:
    ident = suite.identity
    if ident is None:
        raise DatakitError(f"probe {probe.get('id')}: identity probes need `identity: {{name: ..., maker: ...}}` "
                           f"in suite {suite.name}")
    problems = []
    needed = [ident.name] + ([ident.maker] if ident.maker else [])
    problems += [f"does not say {w!r}" for w in needed if not _found([w], output)]
    # The assistant's own name and maker are masked first: "Solar Assistant" must not trip on "Solar".
    masked = normalize(output)
    for w in needed:
        masked = regex.sub(regex.escape(normalize(w)), " ", masked, flags=regex.IGNORECASE)
    denied = find_denied(masked, extra=ident.deny, allow=ident.allow, defaults=ident.deny_default_list)
    problems += [f"names {c} ({m!r})" for m, c in denied]
    problems += [f"says forbidden {t!r}" for t in _found(probe.get("forbid") or [], output)]
    return not problems, "; ".join(problems) or f"says {' and '.join(needed)}, no other vendor"


def _refusal(probe: dict[str, Any], output: str) -> tuple[bool, str]:
    if bad := _found(probe.get("forbid") or [], output):
        return False, f"asserts {bad}"
    phrases = [p for ps in REFUSAL_PHRASES.values() for p in ps] + list(probe.get("accept") or [])
    hit = _found(phrases, output)
    return (True, f"declines ({hit[0]!r})") if hit else (False, "answers instead of saying it does not know")


def score(probe: dict[str, Any], output: str, suite: SuiteSpec) -> Item:
    """Score a generation probe (knowledge, completion, identity, bleed, refusal) on its output."""
    kind = probe["type"]
    if kind in ("knowledge", "completion"):
        ok, detail = _knowledge(probe, output, suite)
    elif kind == "identity":
        ok, detail = _identity(probe, output, suite)
    elif kind == "refusal":
        ok, detail = _refusal(probe, output)
    elif kind == "bleed":
        leaked = _found(list(suite.bleed_terms) + list(probe.get("forbid") or []), output)
        return _item(probe, output, not leaked, 1.0 if leaked else 0.0, f"leaked {leaked}" if leaked else "no domain terms")
    else:
        raise DatakitError(f"probe {probe.get('id')}: type {kind!r} is not scored from text; "
                           "choice and perplexity use score_choice / score_perplexity")
    return _item(probe, output, ok, 1.0 if ok else 0.0, detail)


def score_samples(probe: dict[str, Any], outputs: list[str], suite: SuiteSpec) -> Item:
    """Several sampled answers to one probe: the score is the share that pass (bleed: the share that leak), the
    output shown is the first sample's."""
    each = [score(probe, o, suite) for o in outputs]
    rate = sum(it.score for it in each) / len(each)
    passed = sum(bool(it.passed) for it in each)
    item = _item(probe, outputs[0], passed * 2 >= len(each), rate,
                 f"{passed}/{len(each)} samples passed; first: {each[0].detail}")
    item.samples = len(each)
    return item


def reference_answer(probe: dict[str, Any]) -> str | None:
    """The answer a knowledge or completion probe expects in full: its trailing assistant turn, else `expect`,
    else its first `accept`."""
    if probe["type"] not in ("knowledge", "completion"):
        return None
    msgs = probe.get("messages") or []
    if msgs and msgs[-1].get("role") == "assistant" and msgs[-1].get("content"):
        return msgs[-1]["content"]
    return probe.get("expect") or next(iter(probe.get("accept") or []), None)


def score_answer(probe: dict[str, Any], nll: float, tokens: int) -> Item:
    """The teacher-forced NLL per token of a probe's reference answer, as its own item (`<id>#answer`, type
    `answer`): a paired, continuous measure of the same knowledge the greedy answer is judged on."""
    per_token = nll / tokens if tokens else 0.0
    return Item(id=f"{probe.get('id')}#answer", type="answer", group=probe.get("group"), prompt=probe_prompt(probe),
                output=reference_answer(probe), score=per_token, passed=None, cluster=probe.get("group_id"),
                detail=f"{tokens} answer tokens, mean log-prob {-per_token:.3f}")


def score_choice(probe: dict[str, Any], logliks: list[float]) -> Item:
    """Pass when the answer has the highest log-likelihood of all choices (ties go to the first)."""
    best = max(range(len(logliks)), key=lambda i: logliks[i])
    ok = best == probe["answer"]
    detail = f"picked {best} ({probe['choices'][best]!r}), answer {probe['answer']}; logliks {[round(x, 3) for x in logliks]}"
    return _item(probe, probe["choices"][best], ok, 1.0 if ok else 0.0, detail)


def score_perplexity(probe: dict[str, Any], nll: float, tokens: int) -> Item:
    """Score = NLL per token (lower is better); aggregate pools tokens across items."""
    per_token = nll / tokens if tokens else 0.0
    return _item(probe, None, None, per_token, f"{tokens} tokens, ppl {math.exp(min(per_token, 50)):.2f}", tokens=tokens)
