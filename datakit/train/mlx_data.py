"""Exported rows into (token ids, target mask) examples, and padded batches of them for mlx-lm's train().

mlx-lm's `mask_prompt` trains only on the last message, so earlier assistant turns of a multi-turn
chat get no loss. Here every assistant turn is a target, by the rule both backends share
(datakit/train/chat_mask.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from datakit.errors import DatakitError
from datakit.train.chat_mask import target_mask
from datakit.train.plan import TrainPlan

# An example is a tuple of fields: token-id lists (padded together in a batch) and floats (stacked).
# cpt/sft: (ids, mask); dpo: (chosen_ids, chosen_mask, rejected_ids, rejected_mask[, ref_c, ref_r]).
Example = tuple[Any, ...]


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DatakitError(f"{path}: line {n} is not JSON ({e}); re-export the dataset") from None
    return rows


def encode_text(tokenizer: Any, text: str) -> tuple[list[int], list[int]]:
    """CPT: loss on every token; EOS appended so the model learns where a document ends."""
    ids = list(tokenizer.encode(text))
    if not ids or ids[-1] != tokenizer.eos_token_id:
        ids.append(tokenizer.eos_token_id)
    return ids, [1] * len(ids)


def encode_chat(tokenizer: Any, messages: list[dict], tools: Any = None, *, first: int = 0) -> tuple[list[int], list[int]]:
    """SFT/DPO: ids of the rendered chat and its target mask (datakit/train/chat_mask.py)."""
    inner = getattr(tokenizer, "_tokenizer", None)  # mlx-lm's TokenizerWrapper holds the transformers tokenizer
    hf = inner if hasattr(inner, "apply_chat_template") else tokenizer
    ids = getattr(tokenizer, "eos_token_ids", None)  # mlx-lm's wrapper: a set; a transformers tokenizer: an int
    eos = set(ids) if isinstance(ids, (set, list, tuple)) else {ids if ids is not None else tokenizer.eos_token_id}
    return target_mask(hf, messages, tools, eos_ids=eos, first=first)


def encode_rows(stage: str, rows: list[dict], tokenizer: Any, max_len: int) -> tuple[list[Example], int]:
    """Examples for the stage, truncated to `max_len`; rows left with no target token are dropped
    (they would divide by zero) and counted."""
    out, dropped = [], 0
    for row in rows:
        if stage == "cpt":
            fields = encode_text(tokenizer, row["text"])
        elif stage == "sft":
            fields = encode_chat(tokenizer, row["messages"], row.get("tools"))
        else:
            prompt = row["prompt"]
            tools = row.get("tools")
            fields = (*encode_chat(tokenizer, prompt + row["chosen"], tools, first=len(prompt)),
                      *encode_chat(tokenizer, prompt + row["rejected"], tools, first=len(prompt)))
        fields = tuple(f[:max_len] for f in fields)
        masks = fields[1::2]
        if any(sum(m[1:]) == 0 for m in masks):
            dropped += 1
            continue
        out.append(fields)
    return out, dropped


def collate(examples: Sequence[Example], max_len: int) -> tuple:
    """Pad every token-id field of the batch to one length (a multiple of 32, as mlx-lm does, so
    compiled steps see few shapes); float fields become 1-d arrays."""
    import mlx.core as mx

    longest = max(len(f) for ex in examples for f in ex if isinstance(f, list))
    width = min(32 * -(-longest // 32), max_len)
    cols = []
    for k in range(len(examples[0])):
        if isinstance(examples[0][k], list):
            arr = np.zeros((len(examples), width), np.int32)
            for i, ex in enumerate(examples):
                arr[i, : len(ex[k])] = ex[k][:width]
            cols.append(mx.array(arr))
        else:
            cols.append(mx.array(np.array([ex[k] for ex in examples], np.float32)))
    return tuple(cols)


def target_tokens(example: Example) -> int:
    """Tokens a cpt/sft example trains on (its mask after the first position, which nothing predicts)."""
    return int(sum(example[1][1:]))


def eval_batches(dataset: Sequence[Example], batch_size: int, max_seq_length: int, loop: bool = False,
                 comm_group: Any = None) -> Iterator[tuple]:
    """Validation: every row once, in order, the last batch partial (mlx-lm's evaluate weights by tokens)."""
    for i in range(0, len(dataset), batch_size):
        yield collate(dataset[i:i + batch_size], max_seq_length)


def plan_batches(examples: Sequence[Example], plan: TrainPlan, *, skip: int = 0,
                 normalize: bool = True) -> Callable[..., Iterator[tuple]]:
    """mlx-lm's `iterate_batches` argument that feeds the plan's micro-batches in order, from micro-batch `skip`.

    With `normalize`, each batch carries its optimizer step's target-token count divided by grad_accum, so the
    loss is the mean over the step's target tokens (as Hugging Face normalizes accumulated micro-batches), not a
    mean of per-micro-batch means."""
    import mlx.core as mx

    def step_norm(k: int) -> float:
        step = k // plan.grad_accum
        tokens = sum(target_tokens(examples[r]) for b in plan.step_batches(step) for r in b)
        return max(tokens, 1) / plan.grad_accum

    def batches(dataset: Sequence[Example], batch_size: int, max_seq_length: int, loop: bool = False,
                comm_group: Any = None) -> Iterator[tuple]:  # mlx-lm's signature; the plan decides the rows
        if comm_group is not None and comm_group.size() > 1:
            raise DatakitError("the mlx backend trains in one process; run without mpirun/mlx.launch")
        for k in range(skip, len(plan.micro_batches)):
            batch = collate([examples[r] for r in plan.micro_batches[k]], max_seq_length)
            yield (*batch, mx.array(step_norm(k), mx.float32)) if normalize else batch

    return batches


def masked_loss(model: Any, tokens: Any, mask: Any, norm: Any = None) -> tuple[Any, Any]:
    """Cross-entropy over target tokens (mask 1) divided by `norm` (the plan's tokens per micro-batch of this
    optimizer step), else by the batch's own target tokens; and the target-token count."""
    import mlx.core as mx
    import mlx.nn as nn

    targets, weights = tokens[:, 1:], mask[:, 1:]
    logits = model(tokens[:, :-1])
    ce = nn.losses.cross_entropy(logits, targets) * weights
    ntoks = weights.sum()
    return ce.astype(mx.float32).sum() / (mx.maximum(ntoks, 1) if norm is None else norm), ntoks
