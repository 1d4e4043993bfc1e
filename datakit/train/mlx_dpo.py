"""DPO for mlx-lm, which has none: the sigmoid loss of Rafailov et al. (2023) as a `loss` for train().

The reference model is the policy as the stage starts (base model plus `adapter_in`). Its sequence
log-probabilities are computed once, before training, and carried in each example, so the
reference costs one forward pass per row instead of a second model in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from datakit.train.mlx_data import Example, collate


def sequence_logps(model: Any, tokens: Any, mask: Any) -> Any:
    """Sum of log p(target token) over the mask, one value per row."""
    import mlx.nn as nn

    logits = model(tokens[:, :-1])
    logp = -nn.losses.cross_entropy(logits, tokens[:, 1:])
    return (logp * mask[:, 1:]).sum(axis=-1)


def _pair_logps(model: Any, c: Any, cm: Any, r: Any, rm: Any) -> tuple[Any, Any]:
    import mlx.core as mx

    # One forward pass over chosen and rejected together; collate padded them to one width.
    both = sequence_logps(model, mx.concatenate([c, r]), mx.concatenate([cm, rm]))
    return both[: c.shape[0]], both[c.shape[0]:]


def with_reference(model: Any, examples: Sequence[Example], batch_size: int, max_len: int) -> list[Example]:
    """Each (c, cm, r, rm) example extended with the current model's chosen and rejected log-probs."""
    import mlx.core as mx

    model.eval()  # no LoRA dropout in the reference
    out = []
    for i in range(0, len(examples), batch_size):
        chunk = examples[i: i + batch_size]
        pc, pr = _pair_logps(model, *collate(chunk, max_len))
        mx.eval(pc, pr)
        out += [(*ex, float(a), float(b)) for ex, a, b in zip(chunk, pc.tolist(), pr.tolist())]
    model.train()
    return out


def dpo_loss(model: Any, c: Any, cm: Any, r: Any, rm: Any, ref_c: Any, ref_r: Any, *, beta: float) -> tuple[Any, Any]:
    """-log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))), mean over pairs; second value is the
    number of target tokens (train() reports it as throughput and evaluate() weights by it)."""
    import mlx.core as mx
    import mlx.nn as nn

    pc, pr = _pair_logps(model, c, cm, r, rm)
    margin = beta * ((pc - ref_c) - (pr - ref_r))
    loss = -nn.log_sigmoid(margin).mean()
    return loss.astype(mx.float32), cm[:, 1:].sum() + rm[:, 1:].sum()


def reward_margin(model: Any, examples: Sequence[Example], beta: float, batch_size: int, max_len: int) -> float:
    """Mean implicit reward margin beta * ((pi_c - ref_c) - (pi_r - ref_r)); 0 at the start of a stage."""
    model.eval()
    total = 0.0
    for i in range(0, len(examples), batch_size):
        c, cm, r, rm, ref_c, ref_r = collate(examples[i: i + batch_size], max_len)
        pc, pr = _pair_logps(model, c, cm, r, rm)
        total += (beta * ((pc - ref_c) - (pr - ref_r))).sum().item()
    model.train()
    return total / len(examples)
