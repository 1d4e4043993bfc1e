"""The HF backend's data: the exported DatasetDict as TRL's trainers take it.

What TRL does not do for us is done here, before the trainer sees the data: SFT labels are masked to the
assistant turns (our ChatML template has no {% generation %} markers), rows longer than max_seq_len are counted
(TRL truncates silently), and rows that would train nothing are dropped and counted by the rule the mlx backend
uses, so both backends plan over the same rows.
"""

from __future__ import annotations

import json
from typing import Any

from datakit.errors import DatakitError
from datakit.train.chat_mask import target_mask
from datakit.train.job import StageJob

COLUMNS = {"cpt": ["text"], "sft": ["messages"], "dpo": ["prompt", "chosen", "rejected"],
           "kto": ["prompt", "completion", "label"]}


def load_splits(job: StageJob) -> tuple[Any, Any | None]:
    """train and valid (None when the export has no valid rows) from the DatasetDict on disk."""
    import datasets

    try:
        dd = datasets.load_from_disk(str(job.data_dir))
    except FileNotFoundError:
        raise DatakitError(f"{job.data_dir}: no datasets DatasetDict here; export with `--format hf`") from None
    if "train" not in dd:
        raise DatakitError(f"{job.data_dir}: no 'train' split (found {sorted(dd)}); the export wrote no train rows")
    missing = [c for c in COLUMNS[job.stage.stage] if c not in dd["train"].column_names]
    if missing:
        raise DatakitError(f"{job.data_dir}: stage {job.stage.stage} needs columns {COLUMNS[job.stage.stage]}, "
                           f"missing {missing} (have {dd['train'].column_names}); export a {job.stage.stage} dataset")
    return dd["train"], dd.get("valid")


def assistant_labels(tok: Any, messages: list[dict], tools: Any = None) -> dict[str, list[int]]:
    """input_ids of the rendered chat (with its tools) and labels that keep only the target turns, each through
    its end-of-turn token: the mask rule both backends share (datakit/train/chat_mask.py)."""
    if isinstance(tools, str):  # an export may carry tools as JSON text, as TRL accepts them
        tools = json.loads(tools)
    eos = {tok.eos_token_id} if tok.eos_token_id is not None else set()
    ids, mask = target_mask(tok, messages, tools, eos_ids=eos)
    return {"input_ids": ids, "labels": [t if m else -100 for t, m in zip(ids, mask)]}


def _lengths(stage: str, tok: Any, row: dict) -> int:
    if stage == "cpt":
        return len(tok(row["text"])["input_ids"]) + 1  # TRL appends the eos token
    if stage == "sft":
        return len(row["input_ids"])
    answers = ("completion",) if stage == "kto" else ("chosen", "rejected")
    return max(len(tok.apply_chat_template(row["prompt"] + row[k], tokenize=True, return_dict=True)["input_ids"])
               for k in answers)


def prepare(job: StageJob, tok: Any, ds: Any) -> tuple[Any, list[int], int]:
    """The split as the engine takes it, each row's length in tokens, and how many rows are longer than
    max_seq_len (TRL cuts them). SFT rows left with no assistant token within max_seq_len are dropped here,
    counted, by the rule the mlx backend uses, so both backends plan over the same rows (TRL would drop them
    itself, silently, after the plan was made)."""
    stage, limit = job.stage.stage, job.stage.train.max_seq_len
    if stage == "sft":
        ds = ds.map(lambda r: assistant_labels(tok, r["messages"], r.get("tools")), remove_columns=ds.column_names)
    else:
        ds = ds.select_columns(COLUMNS[stage])
    if stage in ("dpo", "kto"):
        ds = _drop_full_prompts(job, tok, ds)
    lengths = [_lengths(stage, tok, r) for r in ds]
    long_rows = sum(n > limit for n in lengths)
    if stage == "sft":
        keep = [i for i, r in enumerate(ds) if any(x != -100 for x in r["labels"][1:limit])]
        if len(keep) < len(ds):
            job.metrics.write(warning="rows_without_targets", rows=len(ds) - len(keep), max_seq_len=limit, stage=stage)
            ds, lengths = ds.select(keep), [lengths[i] for i in keep]
    return ds, lengths, long_rows


def _drop_full_prompts(job: StageJob, tok: Any, ds: Any) -> Any:
    """TRL's DPO and KTO trainers silently drop rows whose prompt alone fills max_length: drop them here, counted."""
    limit = job.stage.train.max_seq_len
    keep = [i for i, r in enumerate(ds) if len(tok.apply_chat_template(
        r["prompt"], add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]) < limit]
    dropped = len(ds) - len(keep)
    if dropped:
        job.metrics.write(warning="prompts_fill_max_seq_len", rows=dropped, max_seq_len=limit, stage=job.stage.stage)
    if not keep:
        raise DatakitError(f"{job.stage.stage}: all {dropped} prompts in a split are at least max_seq_len={limit} tokens long, so "
                           "no answer token would be trained; raise train.max_seq_len or shorten the prompts")
    return ds.select(keep) if dropped else ds
