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

import numpy as np
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


BOM = b"\xef\xbb\xbf"
BOM_INSIDE = ("a byte order mark (BOM) starts this line, not the file; remove it (files joined with `cat` carry one "
              "per original file)")
CSV_FIELD_LIMIT = 1 << 30  # the csv module's default (128 KiB) refuses ordinary long documents
MAX_JSON_DEPTH = 100  # deeper rows are rejected before any parser sees them (pyarrow's crashes near 20,000)
_BRACKETS = np.zeros(256, dtype=np.int8)
_BRACKETS[[ord("{"), ord("[")]] = 1
_BRACKETS[[ord("}"), ord("]")]] = -1


_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"{}[]")


def nesting_depth(data: bytes) -> int:
    """An upper bound of the JSON nesting depth (brackets inside strings count too): the brackets alone are
    kept (bytes.translate, C speed) and their running balance taken with numpy."""
    brackets = data.translate(None, _NOT_BRACKETS)
    if len(brackets) <= MAX_JSON_DEPTH:
        return len(brackets)
    return int(np.cumsum(_BRACKETS[np.frombuffer(brackets, dtype=np.uint8)], dtype=np.int32).max())


def parse_line(raw: bytes, line: int) -> Item:
    text = raw.decode("utf-8", errors="replace")
    bad = _decode_error(raw)
    if bad:
        return Item(None, text, line=line, error=bad)
    if raw.startswith(BOM):
        return Item(None, text, line=line, error=BOM_INSIDE)
    if nesting_depth(raw) > MAX_JSON_DEPTH:
        return Item(None, text[:2000], line=line, error=f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return Item(orjson.loads(raw), text, line=line)
    except orjson.JSONDecodeError as e:
        return Item(None, text, line=line, error=f"invalid JSON: {e}")


COMPRESSION = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd", ".bz2": "bz2"}


def _open_lines(path: Path, st: FileStats):
    """The file's bytes, decompressed when it is .gz/.zst/.bz2. The file's sha256 is of the bytes as stored."""
    codec = COMPRESSION.get(path.suffix.lower())
    if codec is None:
        return open(path, "rb"), True
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            st.hasher.update(block)
    st.bytes = path.stat().st_size
    try:
        return pa.CompressedInputStream(pa.OSFile(str(path)), codec), False
    except (pa.ArrowInvalid, OSError) as e:
        raise DatakitError(f"{path}: cannot open as {codec} ({e}); is the file really {path.suffix}?") from None


def jsonl_batches(path: Path, st: FileStats, *, columnar: bool) -> Iterator[RowBatch | ArrowBatch]:
    """Blocks of whole lines; a block that parses as a table is an ArrowBatch, else rows one by one."""
    line_no, tail = 0, b""
    f, plain = _open_lines(path, st)
    with f:
        while True:
            try:
                block = f.read(BLOCK_BYTES)
            except (pa.ArrowInvalid, OSError) as e:
                raise DatakitError(f"{path}: the compressed stream is broken after line {line_no} ({e}); "
                                   "the rows before it were read, re-download or re-compress the file") from None
            if plain:
                st.hasher.update(block)
                st.bytes += len(block)
            data = tail + block
            if line_no == 0 and not tail and data.startswith(BOM):
                data = data[len(BOM):]  # a BOM at the start of the file is an encoding mark, not content
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
    block = b"\n".join(raws)
    # pyarrow's reader keeps invalid UTF-8, turns `null` lines into rows (and crashes when one comes first) and
    # crashes on deep nesting: such blocks go line by line, where the bad lines are rejected with their reason
    if (columnar and all(r[:1] == b"{" for r in raws)  # pyarrow crashes on a first line `null`
            and BOM not in block and _decode_error(block) is None and nesting_depth(block) <= MAX_JSON_DEPTH):
        try:
            table = pa_json.read_json(pa.BufferReader(block))
            if table.num_rows == len(raws):
                return ArrowBatch(table, raws, lines, None)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass  # some line is broken or types differ: parse line by line
    items = [parse_line(r, n) for r, n in zip(raws, lines) if r.strip()]
    st.blank_lines += len(raws) - len(items)  # whitespace-only lines are not rows
    return RowBatch(items)


def json_batches(path: Path, st: FileStats) -> Iterator[RowBatch | ArrowBatch]:
    """A JSON array (one row per element) or, if the file is really JSONL, its lines."""
    f, plain = _open_lines(path, st)
    with f:
        data = f.read()
    data = bytes(data) if not isinstance(data, bytes) else data
    if plain:
        st.hasher.update(data)
        st.bytes = len(data)
    data = data.removeprefix(BOM)  # an encoding mark, not content (hashed above as the file has it)
    if not data.lstrip().startswith(b"["):
        st.hasher, st.bytes = hashlib.sha256(), 0  # the line reader reads (and hashes) the file again
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
    try:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=PARQUET_BATCH):
            n = batch.num_rows
            yield ArrowBatch(pa.Table.from_batches([batch]), None, None, list(range(start + 1, start + n + 1)))
            start += n
    except (pa.ArrowException, OSError) as e:  # a damaged or truncated file: nothing after this point is readable
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DatakitError(f"{path}: not a readable Parquet file after row {start} ({first}); re-export or "
                           "re-download it (the rows before it were not committed either: nothing is partial)") from None


_JSONISH = ("messages", "conversations", "chosen", "rejected", "prompt", "completion", "history", "tools", "meta")


def csv_batches(path: Path, st: FileStats) -> Iterator[RowBatch]:
    data = path.read_bytes()
    st.hasher.update(data)
    st.bytes = len(data)
    text = data.removeprefix(BOM).decode("utf-8", errors="surrogateescape")  # Excel writes a BOM first
    csv.field_size_limit(CSV_FIELD_LIMIT)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        yield from _csv_items(reader)
    except csv.Error as e:  # a malformation the csv module cannot step over: it stops reading there
        raise DatakitError(f"{path}:{reader.line_num}: not valid CSV ({e}); fix the file there (or export it as "
                           "JSONL, where a bad line is quarantined and the rest kept)") from None


def _csv_items(reader: csv.DictReader) -> Iterator[RowBatch]:
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
    data = data.removeprefix(BOM)  # an encoding mark, not text
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
        bad = _decode_error(raw) or (BOM_INSIDE if raw.startswith(BOM) else None)
        text = raw.decode("utf-8", errors="replace")
        items.append(Item(None if bad else {"text": text}, text, line=n, error=bad))
    yield RowBatch(items)


HF_SPLITS = {"train": "train", "validation": "valid", "valid": "valid", "dev": "valid", "test": "test"}


def _arrow_files(path: Path) -> list[tuple[Path, str | None]]:
    """(arrow file, split) of a datasets `save_to_disk` folder (Dataset or DatasetDict), or one .arrow file."""
    if path.is_file():
        return [(path, None)]
    if (path / "dataset_dict.json").is_file():
        splits = orjson.loads((path / "dataset_dict.json").read_bytes()).get("splits", [])
        return [(f, s) for s in splits for f, _ in _arrow_files(path / s)]
    state = path / "state.json"
    files = [path / d["filename"] for d in orjson.loads(state.read_bytes()).get("_data_files", [])]
    return [(f, None) for f in files]


def _is_json(t: pa.DataType) -> bool:
    return isinstance(t, pa.JsonType) or (pa.types.is_list(t) and isinstance(t.value_type, pa.JsonType))


def _arrow_reader(f: Path) -> Iterator[pa.RecordBatch]:
    """datasets writes the IPC stream format; other tools write the file format."""
    try:
        return iter(pa.ipc.open_stream(pa.memory_map(str(f))))
    except pa.ArrowInvalid:
        try:
            reader = pa.ipc.open_file(pa.memory_map(str(f)))
            return (reader.get_batch(i) for i in range(reader.num_record_batches))
        except pa.ArrowInvalid as e:
            raise DatakitError(f"{f}: not an Arrow IPC file ({e}); pass a datasets save_to_disk folder, an "
                               ".arrow file, or export it as JSONL/Parquet") from None


def arrow_batches(path: Path, st: FileStats) -> Iterator[RowBatch]:
    """Rows of Arrow IPC files (a `save_to_disk` folder's shards, in split order). JSON-typed columns (datasets'
    Json feature) are decoded; a DatasetDict's split names become the rows' `split` (validation -> valid)."""
    row = 0
    for f, split in _arrow_files(path):
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                st.hasher.update(block)
        st.bytes += f.stat().st_size
        for batch in _arrow_reader(f):
            decode = [n for n, t in zip(batch.schema.names, batch.schema.types) if _is_json(t)]
            items = []
            for obj in batch.to_pylist():
                row += 1
                for k in decode:
                    v = obj.get(k)
                    obj[k] = [orjson.loads(x) for x in v] if isinstance(v, list) else orjson.loads(v) if v else v
                if split is not None and "split" not in obj:
                    obj["split" if split in HF_SPLITS else "hf_split"] = HF_SPLITS.get(split, split)
                items.append(Item(obj, orjson.dumps(obj, default=str).decode(), row=row))
            yield RowBatch(items)


def open_batches(path: Path, fmt: str, st: FileStats) -> Iterator[RowBatch | ArrowBatch]:
    compressed = path.suffix.lower() in COMPRESSION
    suffix = Path(path.stem).suffix.lower() if compressed else path.suffix.lower()
    if path.is_dir():
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            return arrow_batches(path, st)
        raise DatakitError(f"{path}: a folder, but not a datasets save_to_disk folder (no dataset_dict.json or "
                           "state.json); pass the files inside it")
    if not path.is_file():
        raise DatakitError(f"{path}: no such file; check the path")
    if suffix == ".arrow":
        return arrow_batches(path, st)
    if compressed and suffix not in (".jsonl", ".ndjson", ".json"):
        raise DatakitError(f"{path}: compressed {suffix or 'data'} is not read; .jsonl/.json may be compressed "
                           f"({', '.join(COMPRESSION)}); decompress it first")
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
        f"{path}: unknown file type {suffix or '(none)'}; use .jsonl, .json (either may be .gz/.zst/.bz2), "
        ".parquet, .csv, .txt, .md, .arrow or a datasets save_to_disk folder, or pass --format lines / "
        "--format document for plain text"
    )
