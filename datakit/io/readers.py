"""File readers for ingest: each yields batches of rows with where they came from.

A batch is either `ArrowBatch` (a columnar table parsed in one go: JSONL blocks, Parquet row
groups) or `RowBatch` (parsed Python rows, or rows that failed to parse, each with its reason).
Line-oriented files report 1-based line numbers; JSON arrays and Parquet report row indexes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from datakit.errors import DatakitError
from datakit.io.delimited import csv_batches, text_batches
from datakit.io.json_array import ArrayError, array_elements
from datakit.io.read_rows import BOM, BOM_INSIDE, PARQUET_BATCH, ArrowBatch, FileStats, Item, RowBatch, decode_error

BLOCK_BYTES = 16 << 20
STREAM_ARRAY_BYTES = 64 << 20  # JSON arrays larger than this (decompressed, estimated) are split as they are read
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
    bad = decode_error(raw)
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
            and BOM not in block and decode_error(block) is None and nesting_depth(block) <= MAX_JSON_DEPTH):
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
    """A JSON array (one row per element) or, if the file is really JSONL, its lines. Arrays over
    STREAM_ARRAY_BYTES are split into elements a block at a time (`json_array`), smaller ones parsed whole."""
    f, plain = _open_lines(path, st)
    with f:
        head = _read_hashed(f, plain, st, path)
        if not head.removeprefix(BOM).lstrip().startswith(b"["):
            st.hasher, st.bytes = hashlib.sha256(), 0  # the line reader reads (and hashes) the file again
            yield from jsonl_batches(path, st, columnar=True)
            return
        if path.stat().st_size * (1 if plain else 8) > STREAM_ARRAY_BYTES:
            yield from _array_stream(path, head.removeprefix(BOM), lambda: _read_hashed(f, plain, st, path))
            return
        data = head + b"".join(iter(lambda: _read_hashed(f, plain, st, path), b""))
    data = data.removeprefix(BOM)  # an encoding mark, not content (hashed above as the file has it)
    try:
        rows = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise DatakitError(f"{path}: not valid JSON ({e}). {_NO_SALVAGE}") from None
    for start in range(0, len(rows), PARQUET_BATCH):
        chunk = rows[start : start + PARQUET_BATCH]
        yield RowBatch([Item(r, orjson.dumps(r).decode(), row=start + i + 1) for i, r in enumerate(chunk)])


_NO_SALVAGE = ("A JSON array cannot be salvaged row by row: fix the file, or convert it to JSONL (one object per "
               "line) so bad lines go to quarantine")


def _read_hashed(f: Any, plain: bool, st: FileStats, path: Path) -> bytes:
    """The next block of a file (b"" at its end); a plain file's bytes are hashed as they are read."""
    try:
        block = bytes(f.read(BLOCK_BYTES))
    except (pa.ArrowInvalid, OSError) as e:
        raise DatakitError(f"{path}: the compressed stream is broken ({e}); re-download or re-compress the file") from None
    if plain:
        st.hasher.update(block)
        st.bytes += len(block)
    return block


def _array_stream(path: Path, head: bytes, read: Callable[[], bytes]) -> Iterator[RowBatch]:
    blocks = iter([head])
    items: list[Item] = []
    try:
        for n, raw in enumerate(array_elements(lambda: next(blocks, None) or read()), start=1):
            try:
                r = orjson.loads(raw)
            except orjson.JSONDecodeError as e:
                raise ArrayError(f"element {n}: {e}") from None
            items.append(Item(r, orjson.dumps(r).decode(), row=n))
            if len(items) >= PARQUET_BATCH:
                yield RowBatch(items)
                items = []
    except ArrayError as e:
        raise DatakitError(f"{path}: not valid JSON ({e}). {_NO_SALVAGE}") from None
    if items:
        yield RowBatch(items)


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
