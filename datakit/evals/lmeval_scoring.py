"""The scoring hook exported lm-eval tasks call (datakit_task.py): datakit's knowledge rule on one document."""

from __future__ import annotations

from typing import Any


def score_knowledge_doc(doc: dict[str, Any], output: str) -> float:
    """1.0 when `output` passes the probe the document was written from, by the rule `datakit eval` uses."""
    from datakit.evals.scorers import score
    from datakit.evals.suite import ScoringSpec, SuiteSpec

    for marker in doc.get("until") or []:  # the answer before the end-of-turn text, as datakit's runners cut it
        output = output.split(marker, 1)[0]
    probe = {"id": doc.get("id"), "type": doc.get("type", "knowledge"), "accept": list(doc["accept"]),
             "forbid": list(doc.get("forbid") or []), "prompt": doc.get("prompt")}
    suite = SuiteSpec(name="lm-eval", probes="-", scoring=ScoringSpec(match=doc.get("match", "contains"),
                                                                      fuzzy_threshold=doc.get("fuzzy_threshold", 85)))
    return float(score(probe, output.strip(), suite).score)
