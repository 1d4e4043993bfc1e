"""A label-free forgetting signal: how far the tuned model's next-token distribution moved from the
base model's on general text (mean KL(base || tuned) per token). Needs no answers, only text.

Base and tuned come from one loaded HF model with the adapter switched off and on, so tokenizer,
batching and dtype cannot differ between the two.
"""

from __future__ import annotations

from typing import Any

from datakit.evals import stats
from datakit.evals.results import Item


def kl_items(runner: Any, probes: list[dict[str, Any]]) -> list[Item]:
    """One `forgetting` item per perplexity probe: the mean per-token KL of tuned from base."""
    torch = runner.torch
    items = []
    for p in probes:
        if p.get("type") != "perplexity" or not p.get("text"):
            continue
        ids = runner.tok(p["text"], return_tensors="pt")
        with torch.no_grad():
            tuned = torch.log_softmax(runner.model(**ids).logits[0].float(), dim=-1).numpy()
            with runner.with_adapter(False):
                base = torch.log_softmax(runner.model(**ids).logits[0].float(), dim=-1).numpy()
        kl = stats.mean_kl(base, tuned)
        items.append(Item(id=f"kl-{p['id']}", type="forgetting", group=p.get("group"), prompt=p["text"][:200],
                          score=kl, tokens=int(ids["input_ids"].shape[1]), detail="mean KL(base || tuned), nats/token"))
    return items
