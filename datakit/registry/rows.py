"""Between record dicts and stored frames: JSON columns, row ids and the version content hash.

A row's id is the sha256 (first 16 hex digits) of its content columns serialized as one
compact JSON object in the kind's fixed column order (nulls included), so the same record always gets the same id
whichever path built it. A version's content hash covers kind, schema version and every row's
id, split and meta, in order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
import polars as pl

from datakit.schemas import (
    EXTENSION_FIELDS,
    FRAME_SCHEMAS,
    JSON_COLUMNS,
    MESSAGES,
    SCHEMA_VERSION,
    content_columns,
    stored_schema,
)

ID_HEX = 16


def dumps(obj: Any) -> str:
    """Canonical JSON: sorted keys, compact separators, UTF-8 kept as is."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS).decode()


def dumps_rendered(obj: Any) -> str:
    """JSON that a chat template will render (tools, tool-call arguments): keys in the source's order, since
    the order is part of the prompt the model sees."""
    return orjson.dumps(obj).decode()


RENDERED_JSON = {"tools"}


def _map_arguments(messages: Any, convert: Any) -> Any:
    """Messages with every tool call's `arguments` passed through `convert` (stored as JSON text, since
    their shape differs call to call; records hold the object)."""
    if not isinstance(messages, list):
        return messages
    out = []
    for m in messages:
        calls = m.get("tool_calls") if isinstance(m, dict) else None
        if calls:
            m = {**m, "tool_calls": [
                {**c, "function": {**c["function"], "arguments": convert(c["function"].get("arguments"))}}
                if isinstance(c, dict) and isinstance(c.get("function"), dict) else c for c in calls]}
        out.append(m)
    return out


def _encode_arguments(v: Any) -> Any:
    return dumps_rendered(v) if v is not None and not isinstance(v, str) else v


def _decode_arguments(v: Any) -> Any:
    return orjson.loads(v) if isinstance(v, str) else v


def records_to_frame(kind: str, records: list[dict[str, Any]]) -> pl.DataFrame:
    """Record dicts (JSON fields as Python objects) to the kind's stored columns."""
    schema = stored_schema(kind)
    message_cols = {c for c, t in schema.items() if t == MESSAGES}
    cols: dict[str, list[Any]] = {c: [] for c in schema}
    for rec in records:
        for c in schema:
            v = rec.get(c)
            if c == "meta":
                v = dumps(v or {})
            elif c in JSON_COLUMNS and v is not None:
                v = dumps_rendered(v) if c in RENDERED_JSON else dumps(v)
            elif c in message_cols:
                v = _map_arguments(v, _encode_arguments)
            cols[c].append(v)
    return pl.DataFrame(cols, schema=schema)


def _strip_nulls(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _strip_nulls(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_strip_nulls(x) for x in v]
    return v


def decode_messages(messages: Any) -> Any:
    """A stored message list as records hold it: unset fields dropped, tool-call arguments as objects."""
    return _map_arguments(_strip_nulls(messages), _decode_arguments)


def frame_to_records(kind: str, df: pl.DataFrame) -> Iterator[dict[str, Any]]:
    """Stored rows back to record dicts: JSON fields decoded, absent (null) fields dropped."""
    for row in df.iter_rows(named=True):
        out: dict[str, Any] = {}
        for k, v in row.items():
            if v is None:
                continue
            out[k] = orjson.loads(v) if k in JSON_COLUMNS else decode_messages(v)
        yield out


def row_ids(kind: str, df: pl.DataFrame) -> list[str]:
    """Content ids for every row of a frame holding at least the kind's content columns."""
    if df.height == 0:
        return []
    text = pl.struct(content_columns(kind)).struct.json_encode()
    for field in EXTENSION_FIELDS:  # unset extension fields are not hashed: older rows keep their ids
        text = text.str.replace_all(f',"{field}":null', "", literal=True)
    lines = df.select(text.cast(pl.Binary)).to_series().to_list()
    sha = hashlib.sha256
    return [sha(line).hexdigest()[:ID_HEX] for line in lines]


def with_ids(kind: str, df: pl.DataFrame, *, trust: bool = False) -> pl.DataFrame:
    """Set `id` to the content hash; a probe keeps the id its author gave it. With `trust`, ids
    already present are kept (rows known to be unmodified)."""
    if "split" not in df.columns:
        df = df.with_columns(pl.lit(None, pl.String).alias("split"))
    if trust and "id" in df.columns and df["id"].null_count() == 0:
        return df.select(list(stored_schema(kind)))
    ids = pl.Series("_cid", row_ids(kind, df), dtype=pl.String)
    if kind == "probes" and "id" in df.columns:
        new = df.with_columns(pl.coalesce(pl.col("id"), ids).alias("id"))
    else:
        new = df.with_columns(ids.alias("id"))
    return new.select(list(stored_schema(kind)))


def hash_text(df: pl.DataFrame) -> str:
    """What the content hash reads of rows with ids: `id TAB split TAB meta` per row."""
    if df.height == 0:
        return ""
    split = pl.col("split").fill_null("")
    return df.select(pl.concat_str("id", pl.lit("\t"), split, pl.lit("\t"), "meta", pl.lit("\n")).str.join("")).item()


class ContentHasher:
    """Streams rows (in order) into the version content hash."""

    def __init__(self, kind: str) -> None:
        self._h = hashlib.sha256(f"datakit/{kind}/{SCHEMA_VERSION}\n".encode())
        self.rows = 0

    def update(self, df: pl.DataFrame) -> None:
        self.update_text(hash_text(df), df.height)

    def update_text(self, text: str, rows: int) -> None:
        """Rows given as their `hash_text` (computed elsewhere, e.g. by a worker that wrote the part)."""
        self._h.update(text.encode())
        self.rows += rows

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def content_hash(kind: str, frames: Iterable[pl.DataFrame]) -> tuple[str, int]:
    hasher = ContentHasher(kind)
    for df in frames:
        hasher.update(df)
    return hasher.hexdigest(), hasher.rows


def empty_frame(kind: str) -> pl.DataFrame:
    return pl.DataFrame(schema=stored_schema(kind))


def known_kind(kind: str) -> str:
    if kind not in FRAME_SCHEMAS:
        raise ValueError(f"unknown kind {kind!r}; use one of {', '.join(FRAME_SCHEMAS)}")
    return kind
