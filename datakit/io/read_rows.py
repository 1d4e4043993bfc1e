"""The rows ingest reads, as readers give them: parsed rows with their position (`RowBatch`), columnar blocks
(`ArrowBatch`), and what is learned about the file while it is read (`FileStats`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

PARQUET_BATCH = 65536  # rows per batch of a row-oriented reader


@dataclass
class Item:
    """One row as read: the parsed object (None if it did not parse), its raw text and position."""

    obj: Any
    raw: str
    line: int | None = None
    row: int | None = None
    error: str | None = None


@dataclass
class RowBatch:
    items: list[Item]


@dataclass
class ArrowBatch:
    table: pa.Table
    raws: list[bytes] | None  # raw lines (JSONL) for quarantine; None means dump the row
    lines: list[int] | None
    rows: list[int] | None


@dataclass
class FileStats:
    sha256: str = ""
    bytes: int = 0
    blank_lines: int = 0
    hasher: Any = field(default_factory=hashlib.sha256, repr=False)


def decode_error(raw: bytes, unit: str = "line") -> str | None:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"invalid UTF-8 at byte {e.start} of the {unit}"
    return None


BOM = b"\xef\xbb\xbf"
BOM_INSIDE = ("a byte order mark (BOM) starts this line, not the file; remove it (files joined with `cat` carry one "
              "per original file)")
