"""Which text of a row an op compares: the `--field` of dedup, decontam and split."""

from __future__ import annotations

import polars as pl

from datakit.errors import DatakitError

CHAT_KINDS = ("sft", "identity", "magpie")
FIELDS = ("auto", "text", "first_user", "last_user", "user", "assistant", "conversation", "prompt", "chosen", "full")


def _turns(col: str, role: str | None) -> pl.Expr:
    """Contents of a message-list column (optionally one role), joined by newlines."""
    el = pl.element()
    picked = el.struct.field("content") if role is None else el.filter(el.struct.field("role") == role).struct.field("content")
    return pl.col(col).list.eval(picked.drop_nulls()).list.join("\n")


def text_expr(kind: str, field: str = "auto") -> pl.Expr:
    """An expression giving each row's text for comparison; `auto` picks the kind's natural field."""
    if field == "auto":
        field = {"cpt": "text", "preference": "prompt", "kto": "prompt", "probes": "text"}.get(kind, "first_user")
    if kind == "cpt":
        if field != "text":
            raise DatakitError(f"cpt rows have only a text field; drop --field {field}")
        return pl.col("text")
    if kind == "probes":
        asked = pl.coalesce(pl.col("prompt"), _turns("messages", "user"), pl.col("text"), pl.lit(""))
        if field in ("text", "prompt"):
            return asked
        if field == "full":  # the whole item, answer included: what a leak would contain
            return pl.concat_str([pl.col("prompt"), _turns("messages", "user"), pl.col("expect"), pl.col("text")],
                                 separator=" ", ignore_nulls=True).fill_null("")
        raise DatakitError(f"--field {field} does not apply to probes; use prompt or full")
    if kind in CHAT_KINDS:
        el = pl.element()
        users = pl.col("messages").list.eval(el.filter(el.struct.field("role") == "user").struct.field("content"))
        exprs = {
            "first_user": users.list.first(),
            "last_user": users.list.last(),
            "user": _turns("messages", "user"),
            "assistant": _turns("messages", "assistant"),
            "conversation": _turns("messages", None),
        }
    elif kind == "preference":
        exprs = {"prompt": _turns("prompt", None), "chosen": _turns("chosen", None),
                 "conversation": pl.concat_str(_turns("prompt", None), pl.lit("\n"), _turns("chosen", None))}
    elif kind == "kto":
        exprs = {"prompt": _turns("prompt", None), "completion": _turns("completion", None),
                 "conversation": pl.concat_str(_turns("prompt", None), pl.lit("\n"), _turns("completion", None))}
    else:
        raise DatakitError(f"unknown kind {kind!r}")
    if field not in exprs:
        raise DatakitError(f"--field {field} does not apply to {kind} rows; use one of {', '.join(exprs)}")
    return exprs[field].fill_null("")


def texts(kind: str, df: pl.DataFrame, field: str = "auto") -> pl.Series:
    """Each row's comparison text, normalized (`datakit.text.normalize`)."""
    from datakit.text import normalize_series

    return normalize_series(df.select(text_expr(kind, field).alias("text")).to_series())
