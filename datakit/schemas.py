"""Typed shapes at every boundary: record kinds, their storage schema, refs and manifests.

Records are plain dicts with TRL's key names plus `id` (content hash) and `meta`. The pydantic
models below are the documented shape (and the source of the JSON Schema files in `schemas/`);
`FRAME_SCHEMAS` is how each kind is stored column by column. Row-level rules that span fields
(turn order, per-type probe requirements) live in `validate.py`, applied to whole frames.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator

from datakit.registry.names import check_name  # noqa: F401  (re-exported: callers import it from here)

SCHEMA_VERSION = 1
KINDS = ("cpt", "sft", "identity", "magpie", "preference", "kto", "probes")
Kind = Literal["cpt", "sft", "identity", "magpie", "preference", "kto", "probes"]
ROLES = ("system", "user", "assistant", "tool")
PROBE_TYPES = ("knowledge", "completion", "identity", "bleed", "refusal", "perplexity", "choice")

VERSION_RE = re.compile(r"v([1-9][0-9]*)\Z")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# ---- record kinds -------------------------------------------------------------------------


class ToolFunction(_Strict):
    name: str
    arguments: dict[str, Any] = Field(description=(
        "the call's arguments as a JSON object (the Hugging Face and TRL convention, which chat templates render "
        "as JSON once); sources that store a JSON string (OpenAI, sharegpt) are decoded at ingest and the row's "
        "meta.converted says where"))


class ToolCall(_Strict):
    type: Literal["function"] = "function"
    id: str | None = None
    function: ToolFunction


class Message(_Strict):
    # Plain str here so the frame rules (validate.py) give the same reason on every ingest path.
    role: str = Field(json_schema_extra={"enum": list(ROLES)})
    content: str | None = Field(None, description="null only on an assistant turn with tool_calls")
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[ToolCall] | None = None
    weight: float | None = Field(None, description=(
        "OpenAI fine-tuning files: 0 = no loss on this assistant turn, 1 (or absent) = trained"))


class RecordBase(_Strict):
    id: str | None = Field(None, description="content hash, assigned at commit")
    group_id: str | None = Field(None, description="rows derived from one origin share it")
    split: str | None = Field(None, description="train, valid or test, set by the split op",
                              json_schema_extra={"enum": ["train", "valid", "test", None]})
    meta: dict[str, Any] = Field(default_factory=dict)


class CptRecord(RecordBase):
    text: str
    source: str | None = None
    doc_id: str | None = None


class SftRecord(RecordBase):
    messages: list[Message]
    tools: list[dict[str, Any]] | None = Field(None, description="function schemas offered")
    parallel_tool_calls: bool | None = Field(None, description="OpenAI fine-tuning files: whether the row's "
                                                                "assistant may call several tools at once")


class IdentityRecord(SftRecord):
    intent: str = Field(json_schema_extra={"enum": ["affirm", "deny"]})
    lang: str


class MagpieRecord(SftRecord):
    generation: dict[str, Any] = Field(default_factory=dict, description="generator, template, sampling")
    scores: dict[str, float] = Field(default_factory=dict)


class PreferenceRecord(RecordBase):
    prompt: list[Message]
    chosen: list[Message]
    rejected: list[Message]
    score_chosen: float | None = None
    score_rejected: float | None = None


class KtoRecord(RecordBase):
    """Unpaired preference (TRL's KTO format): one completion and whether it is desirable."""

    prompt: list[Message]
    completion: list[Message]
    label: bool = Field(description="true: a desirable completion; false: an undesirable one (never a target)")


class ProbeRecord(RecordBase):
    id: str | None = Field(None, description="probe id: user-given, else the content hash")
    suite: str | None = None
    type: str = Field(json_schema_extra={"enum": list(PROBE_TYPES)})
    group: str | None = Field(None, description="e.g. general or domain, for <group>.<metric>")
    prompt: str | None = None
    messages: list[Message] | None = None
    expect: str | None = None
    accept: list[str] | None = None
    forbid: list[str] | None = None
    choices: list[str] | None = None
    answer: int | None = Field(None, description="index into choices")
    text: str | None = None


RECORD_MODELS: dict[str, type[RecordBase]] = {
    "cpt": CptRecord,
    "sft": SftRecord,
    "identity": IdentityRecord,
    "magpie": MagpieRecord,
    "preference": PreferenceRecord,
    "kto": KtoRecord,
    "probes": ProbeRecord,
}

# ---- storage: one polars schema per kind --------------------------------------------------

TOOL_CALL = pl.Struct(
    {"type": pl.String, "id": pl.String, "function": pl.Struct({"name": pl.String, "arguments": pl.String})}
)
MESSAGE = pl.Struct(
    {
        "role": pl.String,
        "content": pl.String,
        "name": pl.String,
        "tool_call_id": pl.String,
        "tool_calls": pl.List(TOOL_CALL),
        "weight": pl.Float64,
    }
)
MESSAGES = pl.List(MESSAGE)
_CHAT = {"messages": MESSAGES, "tools": pl.String}
_S = pl.String

# Fields added after schema version 1, always last in their struct or frame: a row's id hashes them only when
# they are set (registry/rows.py), so every row written before they existed keeps its id.
EXTENSION_FIELDS = ("weight", "parallel_tool_calls")
_EXT = {"parallel_tool_calls": pl.Boolean}

# Column order is part of the content hash: change it only with SCHEMA_VERSION.
FRAME_SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "cpt": {"text": _S, "source": _S, "doc_id": _S, "group_id": _S},
    "sft": {**_CHAT, "group_id": _S, **_EXT},
    "identity": {**_CHAT, "intent": _S, "lang": _S, "group_id": _S, **_EXT},
    "magpie": {**_CHAT, "generation": _S, "scores": _S, "group_id": _S, **_EXT},
    "preference": {
        "prompt": MESSAGES,
        "chosen": MESSAGES,
        "rejected": MESSAGES,
        "score_chosen": pl.Float64,
        "score_rejected": pl.Float64,
        "group_id": _S,
    },
    "kto": {"prompt": MESSAGES, "completion": MESSAGES, "label": pl.Boolean, "group_id": _S},
    "probes": {
        "suite": _S,
        "type": _S,
        "group": _S,
        "prompt": _S,
        "messages": MESSAGES,
        "expect": _S,
        "accept": pl.List(_S),
        "forbid": pl.List(_S),
        "choices": pl.List(_S),
        "answer": pl.Int64,
        "text": _S,
        "group_id": _S,
    },
}
# Free-form fields stored as JSON text (their shape varies row to row).
JSON_COLUMNS = {"meta", "tools", "generation", "scores"}


SPLITS = ("train", "valid", "test")


def content_columns(kind: str) -> list[str]:
    """The columns a row's id hashes: everything but `id`, `split` and `meta`."""
    return list(FRAME_SCHEMAS[kind])


def stored_schema(kind: str) -> dict[str, pl.DataType]:
    return {"id": pl.String, **FRAME_SCHEMAS[kind], "split": pl.String, "meta": pl.String}


# ---- refs and manifests -------------------------------------------------------------------


class DatasetRef(BaseModel):
    """`name`, `name@v3`, `name@tag` or `name@<content-hash prefix>`."""

    model_config = ConfigDict(frozen=True)
    name: str
    selector: str | None = None

    @field_validator("name")
    @classmethod
    def _valid_name(cls, v: str) -> str:
        return check_name(v)

    @classmethod
    def parse(cls, text: str) -> DatasetRef:
        name, _, selector = text.partition("@")
        if "@" in text and not selector:
            raise ValueError(f"invalid ref {text!r}: nothing after '@'; write name@v1, name@TAG or name@HASH")
        return cls(name=name, selector=selector or None)

    def __str__(self) -> str:
        return f"{self.name}@{self.selector}" if self.selector else self.name


class Parent(BaseModel):
    ref: str = Field(description="name@vN")
    content_hash: str


class FileEntry(BaseModel):
    sha256: str
    bytes: int
    rows: int | None = None


class Manifest(BaseModel):
    """Published last, by a create-only put at datasets/<name>/v<N>/manifest.json: its presence means the version
    is complete."""

    name: str
    version: str
    kind: Kind
    schema_version: int = SCHEMA_VERSION
    rows: int
    content_hash: str
    files: dict[str, FileEntry]
    data_files: list[str] = Field(description="parquet parts in row order")
    location: str | None = Field(None, description="folder of the files, relative to the dataset's folder "
                                 "(parts/<token>); absent: the version's own folder (registries written before parts folders)")
    parents: list[Parent] = Field(default_factory=list)
    op: str
    params: dict[str, Any] = Field(default_factory=dict)
    stats: dict[str, Any] = Field(default_factory=dict)
    created: datetime
    datakit_version: str

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


class QuarantineRow(BaseModel):
    """A row that did not make it in, with everything needed to find and fix it."""

    file: str
    line: int | None = Field(None, description="1-based line in a line-oriented file")
    row: int | None = Field(None, description="1-based element or row index otherwise")
    reason: str
    raw: str


QUARANTINE_SCHEMA = {"file": pl.String, "line": pl.Int64, "row": pl.Int64, "reason": pl.String, "raw": pl.String}

JSON_SCHEMA_MODELS: dict[str, type[BaseModel]] = {
    **{f"record.{k}": m for k, m in RECORD_MODELS.items()},
    "manifest": Manifest,
    "quarantine": QuarantineRow,
}
