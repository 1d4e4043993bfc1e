"""After a stage: does the tuned model stop on its end-of-turn token? (FIELD_NOTES 3.4)

A model that never emits the end-of-turn token keeps generating past its answer and drifts
back to the base model's voice. This generates greedily from a few real prompts with the
adapter loaded, using the backend's own stop set, and counts the answers that ended on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel


class StopReport(BaseModel):
    prompts: int
    stopped: int
    max_new_tokens: int
    stop_token: str | None
    examples: list[dict[str, Any]]

    @property
    def rate(self) -> float:
        return self.stopped / self.prompts if self.prompts else 0.0


def end_of_turn(tokenizer: Any) -> str | None:
    """The text the chat template puts right after an assistant message's content."""
    marker = "\x00END\x00"
    text = tokenizer.apply_chat_template([{"role": "user", "content": "q"}, {"role": "assistant", "content": marker}],
                                         tokenize=False)
    tail = text.split(marker, 1)[1] if marker in text else ""
    return tail.strip() or None


def _prompts(rows: list[dict[str, Any]], n: int) -> list[list[dict[str, Any]]]:
    """The conversation up to (not including) the last assistant turn, for the first n chat rows."""
    out = []
    for r in rows:
        msgs = r.get("messages") or r.get("prompt")
        if not msgs:
            continue
        cut = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=len(msgs))
        if cut > 0:
            out.append([{"role": m["role"], "content": m.get("content") or ""} for m in msgs[:cut]])
        if len(out) == n:
            break
    return out


def check_hf(base: Path, adapter: Path | None, rows: list[dict[str, Any]], *, n: int = 4, max_new_tokens: int = 48) -> StopReport:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    model = (PeftModel.from_pretrained(model, adapter) if adapter is not None else model).eval()
    eos = model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos])
    examples = []
    for msgs in _prompts(rows, n):
        ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False)
        new = out[0, ids["input_ids"].shape[1]:].tolist()
        examples.append({"prompt": msgs[-1]["content"][:80], "answer": tok.decode(new, skip_special_tokens=True)[:160],
                         "stopped": bool(new) and new[-1] in eos_ids})
    return StopReport(prompts=len(examples), stopped=sum(e["stopped"] for e in examples), max_new_tokens=max_new_tokens,
                      stop_token=end_of_turn(tok), examples=examples)


def check_mlx(base: Path, adapter: Path | None, rows: list[dict[str, Any]], *, n: int = 4, max_new_tokens: int = 48) -> StopReport:
    from mlx_lm import load, stream_generate
    from mlx_lm.sample_utils import make_sampler

    model, tok = load(str(base), adapter_path=str(adapter) if adapter is not None else None)
    examples = []
    for msgs in _prompts(rows, n):
        prompt = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        text, finish = "", None
        for resp in stream_generate(model, tok, prompt, max_tokens=max_new_tokens, sampler=make_sampler(temp=0.0)):
            text += resp.text
            finish = resp.finish_reason
        examples.append({"prompt": msgs[-1]["content"][:80], "answer": text[:160], "stopped": finish == "stop"})
    return StopReport(prompts=len(examples), stopped=sum(e["stopped"] for e in examples), max_new_tokens=max_new_tokens,
                      stop_token=end_of_turn(tok), examples=examples)


def check(backend: str, base: Path, adapter: Path | None, rows: list[dict[str, Any]], **kw: Any) -> StopReport:
    return (check_mlx if backend == "mlx" else check_hf)(base, adapter, rows, **kw)
