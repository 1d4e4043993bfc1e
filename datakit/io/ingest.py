"""`datakit ingest`: files in, one registry version out, every bad row quarantined with its reason.

Blocks that parse as a table in a canonical shape (`messages` chat rows, `text` rows) are
checked column-wise; everything else goes row by row through a format converter and the
pydantic record model. Both paths end in the same frame rules (`validate.check_frame`), so a
row is kept or rejected for the same reason whichever path it took. Rows in = kept + rejected.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pyarrow as pa
from pydantic import BaseModel, ValidationError

from datakit.errors import DatakitError
from datakit.io.formats import FORMAT_KINDS, FORMATS, RowError, convert_row, detect_format, unsupported_reason
from datakit.io.readers import ArrowBatch, FileStats, Item, RowBatch, open_batches, parse_line
from datakit.io.validate import REASON, check_frame
from datakit.registry.rows import records_to_frame
from datakit.registry.store import Registry
from datakit.schemas import FRAME_SCHEMAS, JSON_COLUMNS, QUARANTINE_SCHEMA, RECORD_MODELS, Manifest

COLUMNAR_FORMATS = {"messages": "messages", "text": "text"}
_STRING_TYPES = (pa.string(), pa.large_string(), pa.null())
_MESSAGE_FIELDS = {"role", "content", "name", "tool_call_id"}


class FileReport(BaseModel):
    file: str
    format: str
    rows_in: int
    kept: int
    rejected: int
    sha256: str
    bytes: int
    blank_lines: int


class IngestResult(BaseModel):
    manifest: Manifest
    created: bool
    rows_in: int
    kept: int
    rejected: int
    reasons: dict[str, int]
    files: list[FileReport]


def _pydantic_reason(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = " ".join(f"#{p + 1}" if isinstance(p, int) else str(p) for p in err["loc"])
    return f"{loc}: {err['msg']}" if loc else err["msg"]


def _reason_key(reason: str) -> str:
    """Counting key: positions and quoted values dropped so like problems add up."""
    return re.sub(r"'[^']*'", "'…'", re.sub(r"(?<![A-Za-z-])\d+", "N", reason))[:100]


class _FileIngest:
    """State for one file: its format, the quarantine rows, the counts."""

    def __init__(self, path: Path, fmt: str, kind: str, seen_ids: set[str]) -> None:
        self.path, self.fmt, self.kind, self.seen_ids = path, fmt, kind, seen_ids
        self.quarantine: list[dict[str, Any]] = []
        self.rows_in = 0
        self.kept = 0

    def reject(self, raw: str, line: int | None, row: int | None, reason: str) -> None:
        self.quarantine.append({"file": str(self.path), "line": line, "row": row, "reason": reason, "raw": raw})

    def origin(self, line: int | None, row: int | None) -> dict[str, Any]:
        return {"file": self.path.name, "line": line} if line is not None else {"file": self.path.name, "row": row}

    def resolve_format(self, first: dict[str, Any]) -> None:
        if self.fmt != "auto":
            return
        found = detect_format(first, self.kind)
        if found is None:
            raise DatakitError(f"{self.path}: cannot tell the row format from its keys ({', '.join(sorted(first))}). "
                               + unsupported_reason(first))
        self.fmt = found

    def check_kind(self) -> None:
        kinds = FORMAT_KINDS[self.fmt]
        if self.kind not in kinds and kinds == ("kto",):
            raise DatakitError(f"{self.path}: rows in format {self.fmt} are unpaired preference (a completion and a "
                               f"desirable/undesirable label); as {self.kind} rows the undesirable completions would "
                               "be trained on or paired wrongly: use --kind kto (train it with a kto stage)")
        if self.kind not in kinds:
            raise DatakitError(
                f"{self.path}: rows in format {self.fmt} make {'/'.join(kinds)} records, not {self.kind}; "
                f"use --kind {kinds[0]}" + ("" if self.fmt != "auto" else " or pass --format")
            )

    # ---- the two paths --------------------------------------------------------------------
    def arrow_batch(self, b: ArrowBatch, *, columnar: bool) -> pl.DataFrame:
        if self.fmt == "auto" and b.table.num_rows:
            # a table row carries every column of the block; the raw line has only its own keys
            first = orjson.loads(b.raws[0]) if b.raws else b.table.slice(0, 1).to_pylist()[0]
            first = {k: v for k, v in first.items() if v is not None} if isinstance(first, dict) else {}
            if detect_format(first, self.kind) is None:  # e.g. a first row `{}`: rows decide one by one
                return self._row_by_row(b)
            self.resolve_format(first)
            self.check_kind()
        df = _columnar_frame(b.table, self.kind, self.fmt) if columnar else None
        if df is None:  # not canonical: row by row (JSONL re-parsed, so absent keys stay absent)
            return self._row_by_row(b)
        self.rows_in += df.height
        name = orjson.dumps(self.path.name).decode()
        pos_key, pos = ("line", b.lines) if b.lines else ("row", b.rows)
        head = f'{{"origin":{{"file":{name},"{pos_key}":'
        df = df.with_columns(pl.concat_str(pl.lit(head), pl.Series(pos).cast(pl.String), pl.lit("}}")).alias("meta"))

        def where(i: int) -> tuple[str, int | None, int | None]:
            raw = b.raws[i].decode("utf-8", "replace") if b.raws else orjson.dumps(b.table.slice(i, 1).to_pylist()[0], default=str).decode()
            return raw, b.lines[i] if b.lines else None, b.rows[i] if b.rows else None

        return self._keep_valid(df, where)

    def _row_by_row(self, b: ArrowBatch) -> pl.DataFrame:
        if b.raws is not None:
            return self.row_batch(RowBatch([parse_line(r, n) for r, n in zip(b.raws, b.lines or [])]))
        rows = b.table.to_pylist()
        items = [Item(o, orjson.dumps(o, default=str).decode(), row=n) for o, n in zip(rows, b.rows or [])]
        return self.row_batch(RowBatch(items))

    def row_batch(self, batch: RowBatch) -> pl.DataFrame:
        model = RECORD_MODELS[self.kind]
        records, kept_items = [], []
        for it in batch.items:
            self.rows_in += 1
            if it.error is not None:
                self.reject(it.raw, it.line, it.row, it.error)
                continue
            if self.fmt == "auto":
                if not isinstance(it.obj, dict):
                    self.reject(it.raw, it.line, it.row, f"expected a JSON object, got {type(it.obj).__name__}")
                    continue
                if detect_format(it.obj, self.kind) is None:  # this row, not the whole file, is unreadable
                    self.reject(it.raw, it.line, it.row, f"cannot tell the row format from its keys "
                                f"({', '.join(sorted(it.obj)) or 'none'}). " + unsupported_reason(it.obj))
                    continue
                self.resolve_format(it.obj)
                self.check_kind()
            try:
                rec = convert_row(it.obj, self.fmt, self.kind, self.origin(it.line, it.row))
                rec = model.model_validate(rec).model_dump(exclude_none=True)
            except RowError as e:
                self.reject(it.raw, it.line, it.row, str(e))
                continue
            except ValidationError as e:
                self.reject(it.raw, it.line, it.row, _pydantic_reason(e))
                continue
            records.append(rec)
            kept_items.append(it)
        df = records_to_frame(self.kind, records)
        df = df.drop("id") if self.kind != "probes" else df
        return self._keep_valid(df, lambda i: (kept_items[i].raw, kept_items[i].line, kept_items[i].row))

    def _keep_valid(self, df: pl.DataFrame, where: Callable[[int], tuple[str, int | None, int | None]]) -> pl.DataFrame:
        df = check_frame(self.kind, df)
        if self.kind == "probes":
            df = self._duplicate_probe_ids(df)
        bad = df.with_row_index("_i").filter(pl.col(REASON).is_not_null())
        for i, reason in zip(bad["_i"].to_list(), bad[REASON].to_list()):
            raw, line, row = where(i)
            self.reject(raw, line, row, reason)
        good = df.filter(pl.col(REASON).is_null()).drop(REASON)
        self.kept += good.height
        return good

    def _duplicate_probe_ids(self, df: pl.DataFrame) -> pl.DataFrame:
        reasons = df[REASON].to_list()
        for i, pid in enumerate(df["id"].to_list()):
            if pid is None or reasons[i] is not None:
                continue
            if pid in self.seen_ids:
                reasons[i] = f"duplicate probe id '{pid}'"
            self.seen_ids.add(pid)
        return df.with_columns(pl.Series(REASON, reasons, dtype=pl.String))


def _columnar_frame(table: pa.Table, kind: str, fmt: str) -> pl.DataFrame | None:
    """The table as the kind's columns if it is already in canonical shape, else None."""
    need = COLUMNAR_FORMATS.get(fmt)
    schema = FRAME_SCHEMAS[kind]
    names = set(table.column_names)
    if need is None or need not in names or not names <= set(schema) - JSON_COLUMNS:
        return None
    for f in table.schema:
        want = schema[f.name]
        if want == pl.String and f.type not in _STRING_TYPES:
            return None
        if want != pl.String:
            if not (pa.types.is_list(f.type) and pa.types.is_struct(f.type.value_type)):
                return None
            inner = f.type.value_type
            if not {inner.field(i).name for i in range(inner.num_fields)} <= _MESSAGE_FIELDS:
                return None
            if any(inner.field(i).type not in _STRING_TYPES for i in range(inner.num_fields)):
                return None
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    return df.select(
        [pl.col(c).cast(t) if c in names else pl.lit(None, t).alias(c) for c, t in schema.items()]
    )


def ingest(
    reg: Registry, paths: list[Path], *, name: str, kind: str, fmt: str = "auto",
    columnar: bool = True, on_bytes: Callable[[int], None] | None = None,
) -> IngestResult:
    """Read every file into one new version of `name`; returns counts and the manifest."""
    if fmt not in FORMATS:
        raise DatakitError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if kind not in FRAME_SCHEMAS:
        raise DatakitError(f"unknown kind {kind!r}; use one of {', '.join(FRAME_SCHEMAS)}")
    reports, quarantine, seen_ids = [], [], set()
    with reg.stage(name, kind) as stage:
        for path in paths:
            fi = _FileIngest(path, fmt, kind, seen_ids)
            if fmt != "auto":
                fi.check_kind()
                fi.fmt = "text" if fmt in ("lines", "document") else fmt  # plain text arrives as {text} rows
            st = FileStats()
            try:
                batches = open_batches(path, fmt if fmt in ("lines", "document") else "auto", st)
                done = 0
                for batch in batches:
                    if isinstance(batch, ArrowBatch):
                        frame = fi.arrow_batch(batch, columnar=columnar)
                    else:
                        frame = fi.row_batch(batch)
                    stage.write(frame)
                    if on_bytes:
                        on_bytes(st.bytes - done)
                        done = st.bytes
            except OSError as e:
                if e.filename and str(e.filename) != str(path):
                    raise  # a fault writing the registry (disk full, read-only), not reading the source
                raise DatakitError(f"{path}: cannot read ({e.strerror or e}); check the path and permissions") from None
            quarantine.extend(fi.quarantine)
            reports.append(FileReport(
                file=str(path), format=fi.fmt, rows_in=fi.rows_in, kept=fi.kept, rejected=len(fi.quarantine),
                sha256=st.hasher.hexdigest(), bytes=st.bytes, blank_lines=st.blank_lines,
            ))
        kept = sum(r.kept for r in reports)
        reasons = dict(Counter(_reason_key(q["reason"]) for q in quarantine).most_common())
        if kept == 0:
            first = "; ".join(f"{q['file']}:{q['line'] or q['row']}: {q['reason']}" for q in quarantine[:3])
            raise DatakitError(
                f"nothing valid read from {', '.join(str(p) for p in paths)} "
                f"({len(quarantine)} rows rejected{': ' + first if first else ''}); fix the rows or check --kind/--format"
            )
        if quarantine:
            quarantine.sort(key=lambda q: (q["file"], q["line"] or 0, q["row"] or 0))
            stage.write_extra("quarantine.parquet", pl.DataFrame(quarantine, schema=QUARANTINE_SCHEMA))
        rows_in = sum(r.rows_in for r in reports)
        stats = {"rows_in": rows_in, "kept": kept, "rejected": len(quarantine), "reasons": reasons}
        params = {
            "kind": kind, "format": fmt,
            "files": [{"file": Path(r.file).name, "format": r.format, "sha256": r.sha256, "bytes": r.bytes} for r in reports],
        }
        manifest, created = stage.commit(op="ingest", params=params, stats=stats)
    return IngestResult(manifest=manifest, created=created, rows_in=rows_in, kept=kept, rejected=len(quarantine),
                        reasons=reasons, files=reports)
