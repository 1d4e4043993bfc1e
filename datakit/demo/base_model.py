"""The demo's base model: a byte-level BPE tokenizer with ChatML and a small Llama pre-trained from scratch
on general facts (datakit.demo.general) and web text, so it has something to forget. Cached by content.

Pre-training is a plain torch loop over packed token blocks (loss on every token): a few CPU minutes.
On a machine with a real model the recipes take `base_model: <path>` instead and this step is skipped.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from datakit.demo.general import BACKGROUND, chats, facts
from datakit.tiny import CHATML_TEMPLATE, build_llama

GENERIC_IDENTITY = [
    ("Who are you?", "I am a helpful assistant."),
    ("What are you?", "I am a helpful assistant that answers questions."),
    ("너는 누구니?", "저는 도움을 주는 어시스턴트입니다."),
    ("Hello!", "Hello! How can I help you today?"),
    ("안녕하세요!", "안녕하세요! 무엇을 도와드릴까요?"),
]


class BaseSpec(BaseModel):
    """The base model's shape and pre-training budget (part of the cache key)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    layers: int = 4
    hidden: int = 128
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 352
    vocab_size: int = 1024
    block: int = 128
    batch: int = 16
    steps: int = 600
    lr: float = 6e-3
    seed: int = 0
    web_docs: int = 10  # c4 documents mixed in so general text has a perplexity worth tracking


def render(conv: list[dict]) -> str:
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in conv)


def corpus(web: list[str]) -> list[str]:
    """Pre-training documents: every general fact in every phrasing as a ChatML chat, generic identity, web text."""
    docs = [render(c["messages"]) for c in chats(facts())]
    docs += [render([{"role": "user", "content": q}, {"role": "assistant", "content": a}]) for q, a in GENERIC_IDENTITY]
    docs += [f.answer for f in facts()]
    return docs + BACKGROUND + web


def cache_key(spec: BaseSpec, docs: list[str]) -> str:
    h = hashlib.sha256(json.dumps([spec.model_dump(), CHATML_TEMPLATE, docs], ensure_ascii=False).encode())
    return h.hexdigest()[:16]


def pretrain(out_dir: Path, web: list[str], spec: BaseSpec = BaseSpec(),
             progress: Callable[[int, int, float], None] | None = None) -> Path:
    """Build (or reuse) the pre-trained base model in `out_dir`; returns the model folder."""
    docs = corpus(web[: spec.web_docs])
    key = cache_key(spec, docs)
    stamp = out_dir / "pretrain.json"
    if stamp.exists() and json.loads(stamp.read_text()).get("cache_key") == key:
        return out_dir
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    build_llama(out_dir, layers=spec.layers, hidden=spec.hidden, heads=spec.heads, kv_heads=spec.kv_heads,
                intermediate=spec.intermediate, texts=docs, vocab_size=spec.vocab_size, head_scale=1.0, seed=spec.seed)
    tok = AutoTokenizer.from_pretrained(out_dir)
    model = LlamaForCausalLM.from_pretrained(out_dir)
    rng = random.Random(spec.seed)
    torch.manual_seed(spec.seed)
    ids_per_doc = [tok(d)["input_ids"] + [tok.pad_token_id] for d in docs]
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=0.01, betas=(0.9, 0.95))
    warmup = max(1, spec.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / spec.steps))))
    model.train()
    stream: list[int] = []
    start, loss_ema = time.time(), None
    for step in range(spec.steps):
        batch = []
        while len(batch) < spec.batch:
            while len(stream) < spec.block:
                stream += ids_per_doc[rng.randrange(len(ids_per_doc))]
            batch.append(stream[: spec.block])
            stream = stream[spec.block:]
        x = torch.tensor(batch)
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        loss_ema = loss.item() if loss_ema is None else 0.9 * loss_ema + 0.1 * loss.item()
        if progress is not None:
            progress(step + 1, spec.steps, loss_ema)
    model.save_pretrained(out_dir, safe_serialization=True)
    stamp.write_text(json.dumps({"cache_key": key, "spec": spec.model_dump(), "final_loss": loss_ema,
                                 "seconds": round(time.time() - start, 1), "documents": len(docs)}, indent=2))
    return out_dir
