"""Row rules for every kind, applied to whole frames at once.

Each rule is a polars expression that yields a reason string for a broken row and null for a
good one; the first broken rule names the row's reason ("message 3: two consecutive user
turns"). Ingest, ops and builders all go through `check_frame`, so a rule lives in one place.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from datakit.schemas import PROBE_TYPES, RECORD_MODELS, ROLES, SPLITS, content_columns

REASON = "_reason"


def message_reasons(
    df: pl.DataFrame, name: str, *, last: tuple[str, ...], need_user: bool, need_assistant: bool,
    only: str | None = None,
) -> pl.Series:
    """Reason per row for a list-of-messages column; `last` lists the roles allowed on the final turn.

    Messages are checked flat (one exploded frame) and folded back per row: far faster than
    per-list expressions, and the reason names the first broken message.
    """
    label = f"{name}: " if name != "messages" else ""
    m = pl.col(name)
    n_msgs = m.list.len().fill_null(0)
    flat = (
        df.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("_row"), m.fill_null([]), pos=pl.int_ranges(1, n_msgs + 1))
        .explode([name, "pos"])
        .with_columns(
            role=m.struct.field("role"),
            content=m.struct.field("content"),
            calls=m.struct.field("tool_calls").list.len().fill_null(0) > 0,
            weight=m.struct.field("weight"),
        )
    )
    first = pl.col("pos") == 1  # rows are contiguous after explode: shift, then blank the row starts
    flat = flat.with_columns(
        same=pl.when(first).then(False).otherwise(
            (pl.col("role") == pl.col("role").shift(1)) & ~pl.col("calls") & ~pl.col("calls").shift(1)
        ),
        pos=pl.col("pos").cast(pl.String),
    )
    role, pos = pl.col("role"), pl.col("pos")

    def at(text: str) -> pl.Expr:
        return pl.concat_str(pl.lit(f"{label}message "), pos, pl.lit(f": {text}"))

    bad = (
        pl.when(m.is_null()).then(None)
        .when(~role.is_in(list(ROLES)) | role.is_null())
        .then(pl.concat_str(pl.lit(f"{label}message "), pos, pl.lit(": unknown role '"), role.fill_null("null"), pl.lit("'")))
        .when((pl.col("content").is_null() | (pl.col("content").str.strip_chars() == "")) & ~pl.col("calls"))
        .then(at("empty content"))
        .when((role == "system") & (pos != "1")).then(at("system turn after the first message"))
        .when(pl.col("weight").is_not_null() & (role != "assistant"))
        .then(at("weight on a non-assistant turn; weights say which assistant turns are trained"))
        .when(pl.col("weight").is_not_null() & ~pl.col("weight").is_in([0.0, 1.0]))
        .then(at("weight must be 0 (not trained) or 1 (trained)"))
        .when(pl.col("same").fill_null(False) & role.is_in(["user", "assistant"]))
        .then(pl.concat_str(pl.lit(f"{label}message "), pos, pl.lit(": two consecutive "), role, pl.lit(" turns")))
    )
    if only:
        bad = bad.when(role != only).then(
            pl.concat_str(pl.lit(f"{label}message "), pos, pl.lit(": role is "), role, pl.lit(f", must be {only}"))
        )
    per_row = flat.group_by("_row", maintain_order=True).agg(
        first_bad=bad.drop_nulls().first(),
        n=m.is_not_null().sum(),
        has_user=(role == "user").any(),
        has_assistant=(role == "assistant").any(),
        last_role=role.last(),
    )
    # rows whose list is empty explode to nothing: join back onto every row index
    per_row = pl.DataFrame({"_row": pl.int_range(df.height, dtype=pl.UInt32, eager=True)}).join(
        per_row, on="_row", how="left", maintain_order="left"
    )
    reason = (
        pl.when(pl.col("n").fill_null(0) == 0).then(pl.lit(f"{label}no messages"))
        .when(pl.col("first_bad").is_not_null()).then(pl.col("first_bad"))
    )
    if need_user:
        reason = reason.when(~pl.col("has_user")).then(pl.lit(f"{label}no user turn"))
    if need_assistant:
        reason = reason.when(~pl.col("has_assistant")).then(pl.lit(f"{label}no assistant turn"))
    reason = reason.when(~pl.col("last_role").is_in(list(last))).then(
        pl.concat_str(pl.lit(f"{label}last turn is "), pl.col("last_role"), pl.lit(f", must be {'/'.join(last)}"))
    )
    return per_row.select(reason.otherwise(None).alias(REASON)).to_series()


def _blank(name: str) -> pl.Expr:
    return pl.col(name).is_null() | (pl.col(name).str.strip_chars() == "")


CHAT = {"last": ("assistant",), "need_user": True, "need_assistant": True}
# Message-list columns each kind checks, with their rules, before its other rules.
MESSAGE_COLUMNS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "sft": [("messages", CHAT)],
    "magpie": [("messages", CHAT)],
    "identity": [("messages", CHAT)],
    "preference": [
        ("prompt", {"last": ("user", "tool"), "need_user": True, "need_assistant": False}),
        ("chosen", {"last": ("assistant",), "need_user": False, "need_assistant": True, "only": "assistant"}),
        ("rejected", {"last": ("assistant",), "need_user": False, "need_assistant": True, "only": "assistant"}),
    ],
    "kto": [
        ("prompt", {"last": ("user", "tool"), "need_user": True, "need_assistant": False}),
        ("completion", {"last": ("assistant",), "need_user": False, "need_assistant": True, "only": "assistant"}),
    ],
}


def _probe_rules() -> list[pl.Expr]:
    t = pl.col("type")
    asks = ~_blank("prompt") | (pl.col("messages").list.len().fill_null(0) > 0)
    n_choices = pl.col("choices").list.len().fill_null(0)
    return [
        pl.when(~t.is_in(list(PROBE_TYPES))).then(
            pl.concat_str(pl.lit("unknown probe type '"), t, pl.lit(f"'; use one of {', '.join(PROBE_TYPES)}"))
        ),
        pl.when(t.is_in(["knowledge", "identity", "bleed", "refusal", "choice", "completion"]) & ~asks).then(
            pl.concat_str(t, pl.lit(" probe needs a prompt or messages"))
        ),
        pl.when((t == "knowledge") & _blank("expect") & (pl.col("accept").list.len().fill_null(0) == 0)).then(
            pl.lit("knowledge probe needs expect or accept")
        ),
        pl.when((t == "completion") & _blank("expect")).then(pl.lit("completion probe needs expect")),
        pl.when((t == "perplexity") & _blank("text")).then(pl.lit("perplexity probe needs text")),
        pl.when((t == "choice") & (n_choices < 2)).then(pl.lit("choice probe needs at least 2 choices")),
        pl.when((t == "choice") & (pl.col("answer").is_null() | (pl.col("answer") < 0) | (pl.col("answer") >= n_choices))).then(
            pl.lit("choice probe answer must index into choices")
        ),
    ]


def rules_for(kind: str) -> list[pl.Expr]:
    """Row rules beyond the message lists (which `message_reasons` checks)."""
    if kind == "cpt":
        return [pl.when(_blank("text")).then(pl.lit("empty text"))]
    if kind in ("sft", "magpie"):
        return []
    if kind == "identity":
        return [
            pl.when(~pl.col("intent").is_in(["affirm", "deny"]) | pl.col("intent").is_null()).then(
                pl.lit("intent must be affirm or deny")
            ),
            pl.when(_blank("lang")).then(pl.lit("lang is missing")),
        ]
    if kind == "preference":
        return [pl.when(pl.col("chosen") == pl.col("rejected")).then(pl.lit("chosen and rejected are identical"))]
    if kind == "kto":
        return [pl.when(pl.col("label").is_null()).then(pl.lit("label is missing (true: desirable, false: not)"))]
    if kind == "probes":
        return _probe_rules()
    raise ValueError(f"unknown kind {kind!r}")


def check_frame(kind: str, df: pl.DataFrame) -> pl.DataFrame:
    """Add a `_reason` column: null for a valid row, else the first broken rule."""
    if df.height == 0:
        return df.with_columns(pl.lit(None, pl.String).alias(REASON))
    msg = [message_reasons(df, col, **spec) for col, spec in MESSAGE_COLUMNS.get(kind, [])]
    rules = [pl.lit(s) for s in msg] + rules_for(kind)
    if "split" in df.columns:
        rules.append(pl.when(pl.col("split").is_not_null() & ~pl.col("split").is_in(list(SPLITS))).then(
            pl.concat_str(pl.lit("split '"), pl.col("split"), pl.lit("' is not train, valid or test"))))
    return df.with_columns(pl.coalesce(rules).alias(REASON) if rules else pl.lit(None, pl.String).alias(REASON))


def validate_record(kind: str, record: dict[str, Any]) -> dict[str, Any]:
    """Check one record dict (shape by pydantic, rules as for frames); raise ValueError on the first problem."""
    from datakit.registry.rows import records_to_frame

    model = RECORD_MODELS[kind].model_validate(record)
    clean = model.model_dump(exclude_none=True)
    frame = check_frame(kind, records_to_frame(kind, [clean]).select([*content_columns(kind), "split"]))
    reason = frame[REASON][0]
    if reason is not None:
        raise ValueError(reason)
    return clean
