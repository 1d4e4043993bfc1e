"""The results.json contract between `datakit eval` (writes it) and `datakit compare` (reads two or more).

Every probe's item is kept (prompt, output, score, pass/fail) so comparisons are paired on the
same items; metrics are `<type>.<metric>` and `<group>.<metric>` with a standard error.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

# Metric name per probe type: pass/fail types report a rate, perplexity a mean NLL per token.
TYPE_METRIC = {
    "knowledge": "accuracy", "completion": "accuracy", "choice": "accuracy", "identity": "pass_rate",
    "refusal": "pass_rate", "bleed": "rate", "perplexity": "nll", "forgetting": "kl",
    "answer": "nll",  # teacher-forced NLL per token of a probe's reference answer (see evals/run.py)
}


class Item(BaseModel):
    id: str
    type: str
    group: str | None = None
    prompt: str
    output: str | None = None
    score: float = Field(description="1/0 for pass/fail types (bleed: 1 = domain terms leaked), NLL per token for perplexity")
    passed: bool | None = Field(None, description="None for perplexity")
    tokens: int | None = Field(None, description="token count behind a perplexity score")
    detail: str | None = None
    cluster: str | None = Field(None, description="the probe's group_id: paraphrases of one fact share it and are "
                                                  "resampled together")
    samples: int | None = Field(None, description="sampled answers behind a pass rate (score = share passed)")


class Metric(BaseModel):
    value: float
    stderr: float
    n: int


class EvalResults(BaseModel):
    suite: str
    backend: str
    model: str
    adapter: str | None = None
    model_fingerprint: dict[str, str] = Field(default_factory=dict)
    probes: str = Field(description="probe source: registry ref with content hash, or a file with its sha256")
    created: str
    items: list[Item]
    metrics: dict[str, Metric]
    lm_eval: dict[str, Any] = Field(default_factory=dict)
    settings: dict[str, Any] = Field(default_factory=dict)

    def write(self, out_dir: Path) -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        p = out_dir / "results.json"
        p.write_text(self.model_dump_json(indent=2))
        return p

    @classmethod
    def read(cls, path: Path) -> EvalResults:
        return cls.model_validate_json((path / "results.json" if path.is_dir() else path).read_text())


def metric_name(item: Item) -> str:
    return TYPE_METRIC.get(item.type, "score")


def metric_names(it: Item) -> list[str]:
    """Every metric an item counts toward: `<type>.<metric>`, `<group>.<metric>`, and for perplexity
    also `perplexity.<group>` (the name DESIGN's gate example uses); answer-likelihood items count toward
    `answer.nll` and `<group>.answer_nll`."""
    m = metric_name(it)
    names = [f"{it.type}.{m}"]
    if it.group and it.type == "answer":
        names.append(f"{it.group}.answer_nll")
    elif it.group and it.type != "forgetting":
        names.append(f"{it.group}.{m if it.type != 'perplexity' else 'nll'}")
        if it.type == "perplexity":
            names.append(f"perplexity.{it.group}")
    return names


def aggregate(items: list[Item]) -> dict[str, Metric]:
    """Mean and standard error per `<type>.<metric>` and, for items with a group, `<group>.<metric>`.

    Perplexity pools tokens: its value is total NLL over total tokens (its stderr is of the per-item means).
    """
    buckets: dict[str, list[Item]] = defaultdict(list)
    for it in items:
        for name in metric_names(it):
            buckets[name].append(it)
    out = {}
    for name, its in sorted(buckets.items()):
        xs = [i.score for i in its]
        n = len(xs)
        mean = sum(xs) / n
        if its[0].type == "perplexity" and all(i.tokens for i in its):
            mean = sum(i.score * i.tokens for i in its) / sum(i.tokens for i in its)  # type: ignore[operator]
        var = sum((x - sum(xs) / n) ** 2 for x in xs) / (n - 1) if n > 1 else 0.0
        out[name] = Metric(value=mean, stderr=math.sqrt(var / n) if n > 1 else 0.0, n=n)
    return out
