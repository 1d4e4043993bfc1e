"""Probes as local lm-eval tasks that score item by item as datakit scores them.

    summary = write_local_task(probes, Path("evals/tasks"), task_name="acme", tokenizer_dir=Path("models/base"))
    lm_eval --model hf --model_args pretrained=MODEL --include_path evals/tasks \\
            --tasks acme_knowledge,acme_choice --apply_chat_template

Each task folder holds its rows (`data.jsonl`), its YAML and `datakit_task.py`, which lm-eval imports: it loads
the rows from beside itself (the folder can move) and scores knowledge answers with datakit's own rule
(contains / exact / fuzzy over the accepted answers, forbidden terms fail), so the two agree item by item.
Knowledge prompts are the probes' single user turn; run lm-eval with `--apply_chat_template`, as datakit
renders them. Probe types lm-eval cannot score this way are listed in the summary as skipped, with counts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from datakit.errors import DatakitError

CHOICE_TYPES, KNOWLEDGE_TYPES = ("choice",), ("knowledge",)
SKIP_REASONS = {
    "identity": "scored against the suite's identity spec (name, maker, deny list), which a task file does not carry",
    "bleed": "scored against the suite's bleed terms, which a task file does not carry",
    "refusal": "scored by datakit's multilingual refusal markers; run it with datakit eval",
    "completion": "a raw continuation without the chat template, while knowledge tasks need --apply_chat_template",
    "perplexity": "lm-eval reports word/byte perplexity, not datakit's per-token NLL",
}
HOOKS = '''"""lm-eval hooks written by `datakit export --format lm-eval`. The task's rows sit beside this file; knowledge
answers are scored by datakit's own rule (needs datakit importable), so both tools agree item by item.
Run with the chat template, as datakit renders the prompts:
    lm_eval --model hf --model_args pretrained=MODEL --include_path TASKS_FOLDER --tasks TASK --apply_chat_template
"""
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load_docs(**kwargs):
    import datasets

    return datasets.DatasetDict({"train": datasets.load_dataset("json", data_files=str(HERE / "data.jsonl"),
                                                                split="train")})


def process_results(doc, results):
    from datakit.evals.lmeval_scoring import score_knowledge_doc

    return {"datakit_match": score_knowledge_doc(doc, results[0])}
'''


def _end_of_turn_text(model_dir: Path | None) -> str | None:
    if model_dir is None:
        return None
    from transformers import AutoTokenizer

    from datakit.train.stopcheck import end_of_turn

    return end_of_turn(AutoTokenizer.from_pretrained(str(model_dir)))


def _single_user_turn(probe: dict[str, Any]) -> str | None:
    """The probe's prompt when datakit asks it as one user turn (what lm-eval's chat template renders)."""
    from datakit.evals.run import conversation

    conv = conversation(probe)
    return conv[0]["content"] if len(conv) == 1 and conv[0]["role"] == "user" else None


def _write_task(folder: Path, name: str, rows: list[dict[str, Any]], cfg: dict[str, Any], hooks: list[str]) -> None:
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    (folder / "datakit_task.py").write_text(HOOKS)
    base = {"task": name, "dataset_path": "json", "test_split": "train", "num_fewshot": 0, "doc_to_text": "prompt"}
    text = yaml.safe_dump(base | cfg, sort_keys=False, allow_unicode=True)
    text += "".join(f"{key}: !function datakit_task.{fn}\n" for key, fn in
                    [("custom_dataset", "load_docs"), *[(h, h) for h in hooks]])
    (folder / f"{name}.yaml").write_text(text)


def write_local_task(probes: list[dict[str, Any]], out_dir: Path, *, task_name: str, tokenizer_dir: Path | None = None,
                     match: str = "contains", fuzzy_threshold: float = 85, max_new_tokens: int = 96) -> dict[str, Any]:
    """`<task_name>_choice` (multiple_choice, acc) and `<task_name>_knowledge` (generate_until, datakit_match)
    under `out_dir`. Returns {"folder", "tasks": {name: rows}, "skipped": {type: {"count", "reason"}}}.

    Choice continuations are written exactly as datakit scores them (" " + choice unless the prompt ends in
    whitespace, target_delimiter ""). Knowledge generation stops on the end-of-turn text of `tokenizer_dir`'s
    chat template (else a blank line) after at most `max_new_tokens`, as datakit's suite generation does.
    """
    from datakit.evals.scorers import probe_prompt

    skipped: dict[str, dict[str, Any]] = {}

    def skip(kind: str, reason: str) -> None:
        entry = skipped.setdefault(kind, {"count": 0, "reason": reason})
        entry["count"] += 1

    choice, knowledge = [], []
    for p in probes:
        t = str(p.get("type"))
        if t in CHOICE_TYPES:
            choice.append(p)
        elif t in KNOWLEDGE_TYPES and _single_user_turn(p) is not None:
            knowledge.append(p)
        elif t in KNOWLEDGE_TYPES:
            skip("knowledge (multi-turn)", "a system or earlier turns: lm-eval's chat template renders one user turn")
        else:
            skip(t, SKIP_REASONS.get(t, "no lm-eval task type scores it as datakit does"))
    if not choice and not knowledge:
        raise DatakitError(f"lm-eval export {task_name}: none of the {len(probes)} probes can be an lm-eval task "
                           f"(skipped: {json.dumps(skipped)}); only choice and single-turn knowledge probes export")
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks: dict[str, int] = {}
    if choice:
        rows = []
        for p in choice:
            ctx = probe_prompt(p)
            sep = "" if not ctx or ctx[-1].isspace() else " "
            rows.append({"id": str(p.get("id")), "prompt": ctx, "choices": [sep + c for c in p["choices"]],
                         "answer": int(p["answer"])})
        name = f"{task_name}_choice"
        _write_task(out_dir / name, name, rows, {
            "output_type": "multiple_choice", "doc_to_choice": "choices", "doc_to_target": "answer",
            "target_delimiter": "", "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]},
            hooks=[])
        tasks[name] = len(rows)
    if knowledge:
        end = _end_of_turn_text(tokenizer_dir)
        until = [end] if end else ["\n\n"]  # without an explicit `until` lm-eval stops at "\n\n"
        rows = [{"id": str(p.get("id")), "type": p["type"], "prompt": _single_user_turn(p),
                 "accept": p.get("accept") or [p["expect"]], "forbid": p.get("forbid") or [], "match": match,
                 "fuzzy_threshold": fuzzy_threshold, "until": until} for p in knowledge]
        name = f"{task_name}_knowledge"
        _write_task(out_dir / name, name, [{**r, "target": r["accept"][0]} for r in rows], {
            "output_type": "generate_until", "doc_to_target": "target",
            "generation_kwargs": {"until": until, "do_sample": False, "max_gen_toks": max_new_tokens},
            "metric_list": [{"metric": "datakit_match", "aggregation": "mean", "higher_is_better": True}]},
            hooks=["process_results"])
        tasks[name] = len(rows)
    return {"folder": str(out_dir), "tasks": tasks, "skipped": skipped}
