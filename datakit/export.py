"""Plain exports of a registry version (training formats come with the training hand-off)."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import polars as pl

from datakit.errors import DatakitError
from datakit.registry import Registry
from datakit.schemas import Manifest
from datakit.storage import frame_to_records

PLAIN_FORMATS = ("jsonl", "parquet")


def export_rows(reg: Registry, ref: str, fmt: str, out: Path) -> tuple[Manifest, int]:
    """Write the version's rows in order: jsonl as record dicts, parquet as the stored columns."""
    if fmt not in PLAIN_FORMATS:
        raise DatakitError(f"unknown export format {fmt!r}; use one of {', '.join(PLAIN_FORMATS)}")
    m = reg.resolve(ref)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")  # never leave a half-written export behind
    if fmt == "parquet":
        reg.scan(m).sink_parquet(tmp)
    else:
        with open(tmp, "wb") as f:
            for part in m.data_files:
                for rec in frame_to_records(m.kind, pl.read_parquet(reg.version_dir(m) / part)):
                    f.write(orjson.dumps(rec) + b"\n")
    os.replace(tmp, out)
    return m, m.rows
