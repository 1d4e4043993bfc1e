"""Judges for preference pairs: an LLM judge (rubric prompt, robust score parsing) or a reward model.

    judge_kind("hf:models/rm")                  # "reward_model" when config.json names a *ForSequenceClassification
    req = judge_request(prompt, answer)         # a Request, so it goes through GenJob.generate (journaled, retried)
    parse_score(result.text, JUDGE_SCALE)       # 7.0, or None when the judge gave no usable score
    score_reward_model("models/rm", [(prompt, answer), ...])
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from datakit.errors import DatakitError
from datakit.generate.client import Request
from datakit.generate.spec import GeneratorSpec, parse_spec

JUDGE_SCALE = 10
RUBRIC = """Rate the assistant's answer to the conversation below on a scale of 1 to 10.
Judge three things:
- Helpfulness: does it do what the user asked, completely and directly?
- Correctness: is everything it states true, and is its reasoning sound?
- Harmlessness: does it avoid unsafe, deceptive or offensive content?
1 means useless or harmful; 10 means excellent on all three. Length is not a merit in itself.

[Conversation]
{conversation}
[End of conversation]

[Answer]
{answer}
[End of answer]

Explain your rating in two or three sentences, then end with a last line `Score: N`, N an integer from 1 to 10."""

_NUM = r"(-?\d+(?:\.\d+)?)"
_OVER = r"(?:\s*(?:/|out\s+of)\s*(\d+(?:\.\d+)?))?"
# "Score: 7", "Rating: 4 out of 5", "score = 8/10", "a score of 6", "Rating: [[8]]", JSON "score": 8
_LABELED = re.compile(r"\b(?:score|rating|grade)s?[\"']?(?:\s*(?::|=|\bis\b|\bof\b))*\s*\[*\s*[\"']?"
                      + _NUM + r"[\"']?\s*\]*" + _OVER, re.IGNORECASE)
_BARE = re.compile(_NUM + _OVER + r"\.?", re.IGNORECASE)
# Reasoning models think before they answer; a score inside the thinking is not the verdict.
_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.IGNORECASE | re.DOTALL)


def parse_score(text: str | None, scale: int = JUDGE_SCALE) -> float | None:
    """The judge's score in [1, scale], or None when there is none.

    The last labeled score wins ("Score: 3 ... Score: 8" is 8); without one, a last line that is only a number
    ("8", "**8**", "7.5", "8/10"). Markdown emphasis and <think> blocks are ignored. A score out of range, or
    stated on another scale ("4 out of 5" when asked for 1-10), is None: mapping one scale onto another is a guess.
    """
    if not text:
        return None
    clean = re.sub(r"[*`]", "", _THINK.sub("", text))
    hits = list(_LABELED.finditer(clean))
    if hits:
        value, over = hits[-1].group(1), hits[-1].group(2)
    else:
        lines = [ln.strip().strip("[]#").strip() for ln in clean.splitlines() if ln.strip()]
        bare = _BARE.fullmatch(lines[-1]) if lines else None
        if bare is None:
            return None
        value, over = bare.group(1), bare.group(2)
    score = float(value)
    if over is not None and float(over) != scale:
        return None
    return score if 1 <= score <= scale else None


def render_conversation(messages: Sequence[dict[str, Any]]) -> str:
    """A conversation as plain `Role: text` blocks, for a judge prompt or a reward model without a template."""
    return "\n\n".join(f"{m['role'].capitalize()}: {m.get('content') or ''}" for m in messages)


def judge_request(prompt: Sequence[dict[str, Any]], answer: str, *, max_tokens: int = 512) -> Request:
    """The rubric as one user turn (some chat templates have no system role), judged greedily."""
    text = RUBRIC.format(conversation=render_conversation(prompt), answer=answer)
    return Request(messages=[{"role": "user", "content": text}], max_tokens=max_tokens, temperature=0.0, seed=0)


def judge_kind(spec: GeneratorSpec | str) -> Literal["reward_model", "llm"]:
    """`hf:PATH` whose config.json architectures end with ForSequenceClassification is a reward model;
    every other spec (another hf: model, mlx:, openai:) is an LLM judge."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    if spec.backend != "hf":
        return "llm"
    config = Path(spec.model) / "config.json"
    if not config.is_file():
        if Path(spec.model).exists():
            raise DatakitError(f"judge hf:{spec.model}: no config.json in that folder; point --judge at a "
                               "Hugging Face model folder (a reward model or a chat model)")
        try:  # a hub id: only its config (from the cache when HF_HUB_OFFLINE=1)
            from huggingface_hub import hf_hub_download

            config = Path(hf_hub_download(spec.model, "config.json"))
        except Exception as exc:  # noqa: BLE001 - any lookup failure gets the same fix
            raise DatakitError(f"judge hf:{spec.model}: not a local folder and its config.json could not be fetched "
                               f"({type(exc).__name__}); download the model and pass hf:/path/to/it") from None
    archs = json.loads(config.read_text()).get("architectures") or []
    return "reward_model" if any(a.endswith("ForSequenceClassification") for a in archs) else "llm"


def score_reward_model(model_dir: str | Path, pairs: Sequence[tuple[Sequence[dict[str, Any]], str]], *,
                       batch_size: int = 8) -> list[float]:
    """One scalar reward per (prompt messages, answer), in order: the tokenizer's chat template renders the
    conversation when it has one, else prompt and answer go in as a text pair (as DeBERTa reward models take them).
    Rounded to 4 decimals: the score is a ranking signal, and stored rows should not carry float noise."""
    try:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
    except ImportError:
        raise DatakitError("a reward-model judge needs torch and transformers: pip install 'datakit[hf]'") from None
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
    if model.config.num_labels != 1:
        raise DatakitError(f"judge hf:{model_dir} has num_labels={model.config.num_labels}; a reward model scores "
                           "with one logit (num_labels=1). Use a reward model, or a chat model as an LLM judge")
    if tok.pad_token_id is None:
        if tok.eos_token_id is None:
            raise DatakitError(f"judge hf:{model_dir}: its tokenizer has neither a pad nor an eos token to pad with")
        tok.pad_token = tok.eos_token
    if model.config.pad_token_id is None:  # sequence classifiers find each row's last real token by the pad id
        model.config.pad_token_id = tok.pad_token_id
    tok.padding_side = "right"  # no position ids are passed: left padding would shift absolute-position models
    tok.truncation_side = "left"  # keep the answer, which the reward is about
    max_len = min(getattr(model.config, "max_position_embeddings", None) or tok.model_max_length, 8192)
    scores: list[float] = []
    for i in range(0, len(pairs), batch_size):
        batch = pairs[i:i + batch_size]
        if tok.chat_template:
            texts = [tok.apply_chat_template([*p, {"role": "assistant", "content": a}], tokenize=False)
                     for p, a in batch]
            enc = tok(texts, padding=True, truncation=True, max_length=max_len, add_special_tokens=False,
                      return_tensors="pt")
        else:
            enc = tok([render_conversation(p) for p, _ in batch], [a for _, a in batch], padding=True,
                      truncation=True, max_length=max_len, return_tensors="pt")
        with torch.no_grad():
            logits = model(**enc).logits
        scores += [round(float(x), 4) for x in logits[:, 0].float()]
    return scores
