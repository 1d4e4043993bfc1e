"""Exports of a registry version: plain rows (jsonl, parquet), training splits (mlx-lm, TRL), probes as lm-eval tasks."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import polars as pl

from datakit.errors import DatakitError
from datakit.registry.rows import frame_to_records
from datakit.registry.store import Registry
from datakit.schemas import Manifest

PLAIN_FORMATS = ("jsonl", "parquet")


def export_rows(reg: Registry, ref: str, fmt: str, out: Path) -> tuple[Manifest, int]:
    """Write the version's rows in order: jsonl as record dicts, parquet as the stored columns."""
    if fmt not in PLAIN_FORMATS:
        raise DatakitError(f"unknown plain-rows format {fmt!r}; use one of {', '.join(PLAIN_FORMATS)}")
    m = reg.resolve(ref)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")  # never leave a half-written export behind
    if fmt == "parquet":
        reg.scan(m).sink_parquet(tmp)
    else:
        reg.check(m)
        with open(tmp, "wb") as f:
            for part in m.data_files:
                for rec in frame_to_records(m.kind, pl.read_parquet(reg.data_path(m, part))):
                    f.write(orjson.dumps(rec) + b"\n")
    os.replace(tmp, out)
    return m, m.rows


TRAINING_FORMATS = ("mlx", "hf")
ENGINE_FORMATS = (*PLAIN_FORMATS, *TRAINING_FORMATS, "lm-eval")  # what export() writes itself


def export_formats() -> tuple[str, ...]:
    """Every `--format` of `datakit export`: the engine formats, then the review tools' queues."""
    from datakit.io.review_tools import TOOLS  # here, not at the top: it imports the review ops

    return (*ENGINE_FORMATS, *TOOLS)


def check_format(fmt: str) -> None:
    """Raise, naming every valid format, unless `fmt` is one."""
    if fmt not in ENGINE_FORMATS and fmt not in (formats := export_formats()):
        raise DatakitError(f"unknown export format {fmt!r}; use one of {', '.join(formats)}")


TRAINING_COLUMNS = {"cpt": ("text",), "preference": ("prompt", "chosen", "rejected"),
                    "kto": ("prompt", "completion", "label")}
CHAT_COLUMNS = ("messages", "tools")


def engine_messages(msgs: list[dict]) -> list[dict]:
    """Messages as chat templates take them: `content` always present ("" on a tool-call turn; ChatML-style
    templates concatenate it), tool-call arguments as objects (rendered as JSON once)."""
    return [m if m.get("content") is not None else {**m, "content": ""} for m in msgs]


def training_records(kind: str, df: pl.DataFrame) -> list[dict]:
    """Rows in the trainers' column conventions (TRL and mlx-lm): text | messages [+ tools] | prompt/chosen/rejected."""
    keep = TRAINING_COLUMNS.get(kind, CHAT_COLUMNS)
    out = []
    for r in frame_to_records(kind, df):
        row = {k: r[k] for k in keep if k in r}
        for k in ("messages", "prompt", "chosen", "rejected", "completion"):
            if k in row:
                row[k] = engine_messages(row[k])
        out.append(row)
    return out


def hf_dataset(kind: str, rows: list[dict]):  # returns a datasets.Dataset (imported lazily)
    """A datasets.Dataset with an explicit schema: every message (and `tools`) a JSON value, so no row's
    columns are taken from another's (Dataset.from_list infers them from the first row and fills the rest
    with nulls)."""
    import datasets
    from datasets import Features, Json, List, Value

    cols = TRAINING_COLUMNS.get(kind, CHAT_COLUMNS)
    scalar = {"text": Value("string"), "label": Value("bool"), "tools": Json()}
    features = Features({c: scalar.get(c, List(Json())) for c in cols})
    return datasets.Dataset.from_list([{c: r.get(c) for c in cols} for r in rows], features=features)


def export_training(reg: Registry, ref: str, fmt: str, out: Path) -> dict:
    """Write train/valid/test from the version's `split` column (all rows to train when unsplit).

    mlx: `train.jsonl`, `valid.jsonl`, `test.jsonl` as mlx-lm reads them; hf: a `datasets`
    DatasetDict saved with `save_to_disk`. Returns rows per split.
    """
    if fmt not in TRAINING_FORMATS:
        raise DatakitError(f"unknown training format {fmt!r}; use one of {', '.join(TRAINING_FORMATS)}")
    m = reg.resolve(ref)
    df = reg.load(m)
    split_col = df["split"].fill_null("train") if "split" in df.columns else pl.Series(["train"] * df.height)
    parts = {s: training_records(m.kind, df.filter(split_col == s)) for s in ("train", "valid", "test")}
    counts = {s: len(rows) for s, rows in parts.items()}
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "mlx":
        for s, rows in parts.items():
            path = out / f"{s}.jsonl"
            if rows:
                path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
            elif path.exists():
                path.unlink()
    else:
        import datasets

        dd = datasets.DatasetDict({s: hf_dataset(m.kind, rows) for s, rows in parts.items() if rows})
        datasets.disable_progress_bars()  # one bar per dataset split is noise in a training log
        dd.save_to_disk(str(out))
    return {"ref": m.ref, "kind": m.kind, "format": fmt, "rows": counts, "content_hash": m.content_hash}


def export(reg: Registry, ref: str, fmt: str, out: Path, *, tokenizer: Path | None = None,
           max_seq_len: int = 1024) -> dict:
    """Every export format behind one call. With a tokenizer, training rows are also preflighted against it
    (`info["preflight"]`); for lm-eval the tokenizer gives the tasks their stop sequence instead. The review
    formats (argilla, label-studio) write a queue: datakit.io.review_tools.export_for_review."""
    check_format(fmt)
    if fmt not in ENGINE_FORMATS:
        raise DatakitError(f"--format {fmt} writes a review queue: call datakit.io.review_tools.export_for_review")
    root = reg.storage.local
    if root is not None and out.absolute().resolve().is_relative_to(root.resolve()):
        raise DatakitError(f"--out {out} is inside the registry {root}: an export there could overwrite a version's "
                           "own files; write it outside the registry")
    if fmt in PLAIN_FORMATS:
        m, n = export_rows(reg, ref, fmt, out)
        info: dict = {"ref": m.ref, "format": fmt, "rows": n}
    elif fmt == "lm-eval":
        return export_lm_eval(reg, ref, out, tokenizer)
    else:
        info = export_training(reg, ref, fmt, out)
    if tokenizer is not None:
        info["preflight"] = preflight_version(reg, ref, tokenizer, max_seq_len=max_seq_len,
                                              backend="mlx" if fmt == "mlx" else "hf")
    return info


def export_lm_eval(reg: Registry, ref: str, out: Path, tokenizer: Path | None = None) -> dict:
    """A probes dataset as local lm-eval tasks the harness runs offline."""
    from datakit.evals.lmeval_tasks import write_local_task

    m = reg.resolve(ref)
    if m.kind != "probes":
        raise DatakitError(f"--format lm-eval writes eval probes; {m.ref} is {m.kind}")
    summary = write_local_task(list(frame_to_records("probes", reg.load(m))), out,
                               task_name=m.name.replace("-", "_"), tokenizer_dir=tokenizer)
    written = sum(summary["tasks"].values())
    return {"ref": m.ref, "format": "lm-eval", "rows": written, "rows_in": m.rows, "tasks": summary["tasks"],
            "folder": summary["folder"], "skipped": summary["skipped"],
            "run": f"lm_eval --model hf --model_args pretrained=MODEL --include_path {out} --tasks "
                   f"{','.join(summary['tasks'])} --apply_chat_template"}


def preflight_version(reg: Registry, ref: str, model_dir: Path, *, max_seq_len: int, backend: str) -> dict:
    """The training preflight (template, end-of-turn, lengths) of a version's rows against a model's tokenizer."""
    from datakit.train import preflight as pf

    m = reg.resolve(ref)
    report = pf.preflight(model_dir, m.kind, training_records(m.kind, reg.load(m)), max_seq_len=max_seq_len,
                          backend=backend)
    return {"ok": report.ok, "report": report.model_dump(mode="json"), "text": pf.format_report(report)}
