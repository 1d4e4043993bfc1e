"""What near-duplicate detection compares: text as a person reads it, cut into shingles.

Before shingling, text is normalized the way a reader ignores differences: Unicode NFKC (full-width forms,
ligatures), lower case, one kind of quote and dash, whitespace collapsed; optionally, short prefixes and
suffixes that repeat across many rows ("Reposted - ", "Read more.") are trimmed. Shingles are word n-grams
(`word:5`) or character n-grams (`char:5`, which tolerate a dropped or swapped word in short rows and need no
word boundaries in CJK text). The similarity threshold keeps its meaning: Jaccard of these shingle sets.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl

from datakit.errors import DatakitError
from datakit.text import tokens_expr

QUOTES = [("[\u2018\u2019\u201a\u201b\u2032\u00b4`]", "'"), ("[\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb]", '"')]
DASHES = ("[\u2010\u2011\u2012\u2013\u2014\u2015\u2212]", "-")
AFFIX_MAX_CHARS = 40  # a boilerplate prefix or suffix is short
AFFIX_MIN_SHARE = 0.005  # ... and repeats in at least this share of rows (and 3 of them)
_PREFIX = re.compile(r"^(.{1,40}?(?: - | \| |: ))")
_SUFFIX = re.compile(r"[.!?] ([^.!?]{1,38}[.!?]?)$")


@dataclass(frozen=True)
class ShingleSpec:
    unit: str  # word | char
    n: int

    @classmethod
    def parse(cls, text: str) -> ShingleSpec:
        unit, _, n = text.partition(":")
        if unit not in ("word", "char") or not n.isdigit() or int(n) < 1:
            raise DatakitError(f"--shingle {text}: use word:N or char:N, e.g. word:5 or char:5")
        return cls(unit, int(n))

    def __str__(self) -> str:
        return f"{self.unit}:{self.n}"


def reader_normalize_series(text: pl.Series) -> pl.Series:
    """NFKC, lower case, one quote and one dash, whitespace collapsed and stripped. Each costly step runs only on
    rows it can change: NFKC where a row has a non-ASCII character (ASCII is NFKC-stable), the whitespace collapse
    where a row has a run of whitespace or a tab or newline (a third of the time of running every step on every row)."""
    out = _only_where(text, r"[^\x00-\x7f]", lambda e: e.str.normalize("NFKC")).str.to_lowercase()
    for pattern, repl in [*QUOTES, DASHES]:
        out = out.str.replace_all(pattern, repl)
    out = _only_where(out, r"\s\s|[^\S ]", lambda e: e.str.replace_all(r"\s+", " "))
    return out.str.strip_chars(" ")


def _only_where(text: pl.Series, pattern: str, step: Callable[[pl.Expr], pl.Expr]) -> pl.Series:
    rows = text.str.contains(pattern).fill_null(False).arg_true()
    if not len(rows):
        return text
    return text.clone().scatter(rows, pl.select(step(pl.lit(text.gather(rows)))).to_series())


def affix_candidates(text: pl.Series) -> pl.DataFrame:
    """Per row, the prefix ("reposted - ") and suffix ("read more.") that could be boilerplate (null where none)."""
    return pl.DataFrame({"t": text}).select(
        pre=pl.col("t").str.extract(_PREFIX.pattern, 1), suf=pl.col("t").str.extract(_SUFFIX.pattern, 1))


def count_affixes(found: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """How often each candidate prefix and suffix occurs (`pre`/`suf` -> value, count); add batches with
    `merge_affix_counts`."""
    return {col: found[col].drop_nulls().value_counts(name="count") for col in ("pre", "suf")}


def merge_affix_counts(a: dict[str, pl.DataFrame], b: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    return {col: pl.concat([a[col], b[col]]).group_by(col).agg(pl.col("count").sum()) for col in ("pre", "suf")}


def common_affixes(counts: dict[str, pl.DataFrame], rows: int) -> dict[str, list[str]]:
    """The prefixes and suffixes that repeat in at least AFFIX_MIN_SHARE of `rows` rows (and 3 of them)."""
    need = max(3, int(AFFIX_MIN_SHARE * rows))
    return {col: sorted(c.filter(pl.col("count") >= need)[col].to_list()) for col, c in counts.items()}


def strip_affixes(text: pl.Series, common: dict[str, list[str]]) -> tuple[pl.Series, pl.Series]:
    """Each row without its common prefix and suffix, and whether it had one (row by row: batches need not be
    the whole table)."""
    found = affix_candidates(text)
    pre, suf = pl.col("pre").is_in(common["pre"]), pl.col("suf").is_in(common["suf"])
    out = found.with_columns(t=text).select(
        pl.when(pre).then(pl.col("t").str.slice(pl.col("pre").str.len_chars())).otherwise(pl.col("t")).alias("t"),
        pre.alias("p"), suf.alias("s"), pl.col("suf"))
    out = out.with_columns(pl.when(pl.col("s")).then(
        pl.col("t").str.slice(0, pl.col("t").str.len_chars() - pl.col("suf").str.len_chars())).otherwise(pl.col("t"))
        .str.strip_chars(" ").alias("t"))
    return out["t"].alias(text.name), out["p"] | out["s"]


def trim_stats(common: dict[str, list[str]], rows_trimmed: int) -> dict[str, Any]:
    return {"prefixes": common["pre"][:20], "suffixes": common["suf"][:20], "rows_trimmed": rows_trimmed}


def shingle_units(text: pl.Series, spec: ShingleSpec) -> pl.Series:
    """Per row, the units its shingles are windows over: word tokens, or characters (spaces included)."""
    if spec.unit == "word":
        return pl.DataFrame({"t": text}).select(tokens_expr(pl.col("t"))).to_series()
    return text.str.split("")
