"""File readers for ingest: each yields batches of rows with where they came from.

A batch is either `ArrowBatch` (a columnar table parsed in one go: JSONL blocks, Parquet row
groups) or `RowBatch` (parsed Python rows, or rows that failed to parse, each with its reason).
Line-oriented files report 1-based line numbers; JSON arrays and Parquet report row indexes.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from datakit.errors import DatakitError

BLOCK_BYTES = 16 << 20
PARQUET_BATCH = 65536


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


def _decode_error(raw: bytes, unit: str = "line") -> str | None:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"invalid UTF-8 at byte {e.start} of the {unit}"
    return None


def parse_line(raw: bytes, line: int) -> Item:
    text = raw.decode("utf-8", errors="replace")
    bad = _decode_error(raw)
    if bad:
        return Item(None, text, line=line, error=bad)
    try:
        return Item(orjson.loads(raw), text, line=line)
    except orjson.JSONDecodeError as e:
        return Item(None, text, line=line, error=f"invalid JSON: {e}")


def jsonl_batches(path: Path, st: FileStats, *, columnar: bool) -> Iterator[RowBatch | ArrowBatch]:
    """Blocks of whole lines; a block that parses as a table is an ArrowBatch, else rows one by one."""
    line_no, tail = 0, b""
    with open(path, "rb") as f:
        while True:
            block = f.read(BLOCK_BYTES)
            st.hasher.update(block)
            st.bytes += len(block)
            data = tail + block
            if block:  # keep the unfinished last line for the next block
                cut = data.rfind(b"\n") + 1
                lines, tail = data[:cut].split(b"\n")[:-1], data[cut:]
            else:
                lines, tail = ([data] if data else []), b""
            if b"\n\n" not in data and lines and lines[0].strip() and lines[-1].strip():
                raws, nums = lines, list(range(line_no + 1, line_no + len(lines) + 1))  # no blank lines
                line_no += len(lines)
            else:
                raws, nums = [], []
                for raw in lines:
                    line_no += 1
                    if raw.strip():
                        raws.append(raw)
                        nums.append(line_no)
                    else:
                        st.blank_lines += 1
            if raws:
                yield _jsonl_batch(raws, nums, columnar, st)
            if not block:
                break


def _jsonl_batch(raws: list[bytes], lines: list[int], columnar: bool, st: FileStats) -> RowBatch | ArrowBatch:
    if columnar:
        try:
            table = pa_json.read_json(pa.BufferReader(b"\n".join(raws)))
            if table.num_rows == len(raws):
                return ArrowBatch(table, raws, lines, None)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass  # some line is broken or types differ: parse line by line
    items = [parse_line(r, n) for r, n in zip(raws, lines) if r.strip()]
    st.blank_lines += len(raws) - len(items)  # whitespace-only lines are not rows
    return RowBatch(items)


def json_batches(path: Path, st: FileStats) -> Iterator[RowBatch | ArrowBatch]:
    """A JSON array (one row per element) or, if the file is really JSONL, its lines."""
    data = path.read_bytes()
    st.hasher.update(data)
    st.bytes = len(data)
    if not data.lstrip().startswith(b"["):
        st.hasher, st.bytes = hashlib.sha256(), 0
        yield from jsonl_batches(path, st, columnar=True)
        return
    try:
        rows = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise DatakitError(
            f"{path}: not valid JSON ({e}). A JSON array cannot be salvaged row by row: fix the file, "
            "or convert it to JSONL (one object per line) so bad lines go to quarantine"
        ) from None
    for start in range(0, len(rows), PARQUET_BATCH):
        chunk = rows[start : start + PARQUET_BATCH]
        yield RowBatch([Item(r, orjson.dumps(r).decode(), row=start + i + 1) for i, r in enumerate(chunk)])


def parquet_batches(path: Path, st: FileStats) -> Iterator[ArrowBatch]:
    st.sha256, st.bytes = "", path.stat().st_size
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            st.hasher.update(block)
    start = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=PARQUET_BATCH):
        n = batch.num_rows
        yield ArrowBatch(pa.Table.from_batches([batch]), None, None, list(range(start + 1, start + n + 1)))
        start += n


_JSONISH = ("messages", "conversations", "chosen", "rejected", "prompt", "completion", "history", "tools", "meta")


def csv_batches(path: Path, st: FileStats) -> Iterator[RowBatch]:
    data = path.read_bytes()
    st.hasher.update(data)
    st.bytes = len(data)
    text = data.decode("utf-8", errors="surrogateescape")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    items: list[Item] = []
    start = 2
    for rec in reader:
        raw = ",".join(v or "" for v in rec.values() if isinstance(v, str))
        item = Item(dict(rec), raw.encode("utf-8", "surrogateescape").decode("utf-8", "replace"), line=start)
        if any("\udc80" <= ch <= "\udcff" for ch in raw):
            item.obj, item.error = None, "invalid UTF-8"
        elif None in rec:
            item.obj, item.error = None, f"more fields than the {len(reader.fieldnames or [])} header columns"
        else:
            for k in _JSONISH:  # a cell holding JSON (a message list) is parsed; a plain string stays
                v = item.obj.get(k)
                if isinstance(v, str) and v.lstrip()[:1] in ("[", "{"):
                    try:
                        item.obj[k] = orjson.loads(v)
                    except orjson.JSONDecodeError:
                        pass
        items.append(item)
        start = reader.line_num + 1
        if len(items) >= PARQUET_BATCH:
            yield RowBatch(items)
            items = []
    if items:
        yield RowBatch(items)


def text_batches(path: Path, st: FileStats, *, per_line: bool) -> Iterator[RowBatch]:
    data = path.read_bytes()
    st.hasher.update(data)
    st.bytes = len(data)
    if not per_line:
        bad = _decode_error(data, "file")
        text = data.decode("utf-8", errors="replace")
        yield RowBatch([Item(None if bad else {"text": text}, text, row=1, error=bad)])
        return
    items = []
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for n, raw in enumerate(lines, start=1):
        if not raw.strip():
            st.blank_lines += 1
            continue
        raw = raw.rstrip(b"\r")
        bad = _decode_error(raw)
        text = raw.decode("utf-8", errors="replace")
        items.append(Item(None if bad else {"text": text}, text, line=n, error=bad))
    yield RowBatch(items)


def open_batches(path: Path, fmt: str, st: FileStats) -> Iterator[RowBatch | ArrowBatch]:
    suffix = path.suffix.lower()
    if not path.is_file():
        raise DatakitError(f"{path}: no such file; check the path (directories are not read, pass files)")
    if fmt in ("lines", "document") or suffix in (".txt", ".md", ".markdown"):
        return text_batches(path, st, per_line=fmt == "lines")
    if suffix in (".jsonl", ".ndjson"):
        return jsonl_batches(path, st, columnar=True)
    if suffix == ".json":
        return json_batches(path, st)
    if suffix == ".parquet":
        return parquet_batches(path, st)
    if suffix == ".csv":
        return csv_batches(path, st)
    raise DatakitError(
        f"{path}: unknown file type {suffix or '(none)'}; use .jsonl, .json, .parquet, .csv, .txt or .md, "
        "or pass --format lines / --format document for plain text"
    )
