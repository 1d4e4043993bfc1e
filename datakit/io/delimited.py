"""CSV and plain-text files read as a stream (never whole): rows with their line numbers, bad bytes and stray
byte order marks rejected with their reason, the file hashed as it is read."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from datakit.errors import DatakitError
from datakit.io.read_rows import BOM, BOM_INSIDE, PARQUET_BATCH, FileStats, Item, RowBatch, decode_error

BLOCK_BYTES = 16 << 20
CSV_FIELD_LIMIT = 1 << 30  # the csv module's default (128 KiB) refuses ordinary long documents

_JSONISH = ("messages", "conversations", "chosen", "rejected", "prompt", "completion", "history", "tools", "meta")


class _Hashed(io.RawIOBase):
    """A file read through: every byte goes into the file's sha256 and size as it is read."""

    def __init__(self, f: io.BufferedReader, st: FileStats) -> None:
        self.f, self.st = f, st

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self.f.readinto(b) or 0
        self.st.hasher.update(memoryview(b)[:n])
        self.st.bytes += n
        return n


def _hashed(path: Path, st: FileStats) -> io.BufferedReader:
    return io.BufferedReader(_Hashed(open(path, "rb"), st), buffer_size=1 << 20)


def csv_batches(path: Path, st: FileStats) -> Iterator[RowBatch]:
    csv.field_size_limit(CSV_FIELD_LIMIT)
    reader = csv.DictReader(_csv_lines(path, st))
    try:
        yield from _csv_items(reader)
    except csv.Error as e:  # a malformation the csv module cannot step over: it stops reading there
        raise DatakitError(f"{path}:{reader.line_num}: not valid CSV ({e}); fix the file there (or export it as "
                           "JSONL, where a bad line is quarantined and the rest kept)") from None


def _csv_lines(path: Path, st: FileStats) -> Iterator[str]:
    """The file's lines, read in blocks cut after a newline (never inside a UTF-8 sequence) and split as the csv
    module wants (newline=""); bad bytes kept as surrogates for the reject reason; Excel's leading BOM dropped.
    (As fast as splitting the whole file, which a TextIOWrapper is not.)"""
    tail = b""
    with open(path, "rb") as f:
        while True:
            block = f.read(BLOCK_BYTES)
            st.hasher.update(block)
            st.bytes += len(block)
            data = tail + block
            if st.bytes == len(block):
                data = data.removeprefix(BOM)
            cut = data.rfind(b"\n") + 1 if block else len(data)
            data, tail = data[:cut], data[cut:]
            if data:
                yield from io.StringIO(data.decode("utf-8", errors="surrogateescape"), newline="")
            if not block:
                return


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
    if not per_line:  # one row per file: the file is the row
        data = path.read_bytes()
        st.hasher.update(data)
        st.bytes = len(data)
        data = data.removeprefix(BOM)  # an encoding mark, not text
        bad = decode_error(data, "file")
        text = data.decode("utf-8", errors="replace")
        yield RowBatch([Item(None if bad else {"text": text}, text, row=1, error=bad)])
        return
    items = []
    with _hashed(path, st) as f:  # streamed, a line at a time
        for n, raw in enumerate(f, start=1):
            raw = raw.removesuffix(b"\n")
            if n == 1:
                raw = raw.removeprefix(BOM)  # an encoding mark, not text
            if not raw.strip():
                st.blank_lines += 1
                continue
            raw = raw.rstrip(b"\r")
            bad = decode_error(raw) or (BOM_INSIDE if raw.startswith(BOM) else None)
            text = raw.decode("utf-8", errors="replace")
            items.append(Item(None if bad else {"text": text}, text, line=n, error=bad))
            if len(items) >= PARQUET_BATCH:
                yield RowBatch(items)
                items = []
    if items:
        yield RowBatch(items)
