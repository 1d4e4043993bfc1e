"""The arithmetic of a mixture: shares, per-component counts, which rows, and token counts.

All of it is index arithmetic on numpy arrays (a million-row mix never loops in Python); the
frames themselves are only gathered once, in `mix.py`.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import polars as pl

from datakit.errors import DatakitError

EPS = 1e-9
# CJK scripts: about one token per character in common BPE vocabularies; other text about four
# characters per token; plus a few template tokens per message (role header, end of turn).
CJK = r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]"
CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4


def rng_for(seed: int, key: str) -> np.random.Generator:
    """A generator derived from the seed and a key by sha256, so it never depends on Python's hash()."""
    digest = hashlib.sha256(f"datakit-mix/{seed}/{key}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


# ---- shares and counts --------------------------------------------------------------------


def solve_shares(weights: list[float], lo: list[float], hi: list[float]) -> np.ndarray:
    """Shares proportional to the weights, each held within [lo, hi], summing to 1.

    share_i = clip(lam * w_i, lo_i, hi_i) for the single lam that makes them sum to 1: a component
    held at a bound keeps it and the free ones split the rest in their weight ratios, so a
    min_share raises one component and scales the others down proportionally (max_share: up).
    """
    w, lo_, hi_ = (np.asarray(x, dtype=np.float64) for x in (weights, lo, hi))
    if lo_.sum() > 1 + EPS:
        raise DatakitError(f"min_share policies sum to {lo_.sum():.3f}, over 1: no mix satisfies them; lower them")
    if hi_.sum() < 1 - EPS:
        raise DatakitError(f"max_share caps leave the shares at most {hi_.sum():.3f}, under 1; raise a cap")

    def total(lam: float) -> float:
        return float(np.clip(lam * w, lo_, hi_).sum())

    a, b = 0.0, 1.0 / w.sum()
    for _ in range(200):  # total() is nondecreasing in lam: bracket, then bisect
        if total(b) >= 1 - EPS:
            break
        b *= 2
    for _ in range(200):
        mid = (a + b) / 2
        a, b = (mid, b) if total(mid) < 1 else (a, mid)
    shares = np.clip(b * w, lo_, hi_)
    free = (b * w > lo_) & (b * w < hi_)
    if free.any():  # exact ratios for the free components, whatever bisection left over
        shares[free] = w[free] * (1 - shares[~free].sum()) / w[free].sum()
    return shares


def largest_remainder(shares: np.ndarray, total: int) -> np.ndarray:
    """Integer counts summing to `total` exactly, each within one of share * total."""
    quota = shares * total
    counts = np.floor(quota + EPS).astype(np.int64)
    rest = total - int(counts.sum())
    by_remainder = np.argsort(-(quota - counts), kind="stable")
    if rest >= 0:
        counts[by_remainder[:rest]] += 1
    else:  # float noise floored one quota up
        counts[by_remainder[rest:]] -= 1
    return counts


def natural_total(sizes: list[float], shares: np.ndarray) -> int:
    """The largest total for which no component needs a repeat: min of size_i / share_i."""
    return int(math.floor(min(s / p for s, p in zip(sizes, shares) if p > 0) + EPS))


# ---- which rows ---------------------------------------------------------------------------


def spread_order(group_id: pl.Series, rng: np.random.Generator) -> np.ndarray:
    """Positions 0..n-1 in picking order: round robin over groups taken in shuffled order.

    Round 0 takes one random row from every group, round 1 a second one, and so on, so a
    downsample covers as many groups (origins) as it can before it takes a second variant.
    A row without a group_id is a group of its own.
    """
    n = len(group_id)
    codes = group_id.rank("dense").cast(pl.Int64).fill_null(0).to_numpy() - 1
    alone = group_id.is_null().to_numpy()
    codes[alone] = codes.max(initial=-1) + 1 + np.arange(int(alone.sum()))
    group_rank = rng.permutation(int(codes.max(initial=-1)) + 1)
    perm = rng.permutation(n)
    by_code = codes[perm]
    grouped = np.argsort(by_code, kind="stable")
    first = np.searchsorted(by_code[grouped], by_code[grouped], side="left")
    rounds = np.empty(n, dtype=np.int64)
    rounds[grouped] = np.arange(n) - first
    return perm[np.lexsort((group_rank[by_code], rounds))]


def take(order: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` picks: every row once (in `order`) before any repeats; returns (positions, repeat number)."""
    n = len(order)
    if count == 0 or n == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    passes, rest = divmod(count, n)
    positions = np.concatenate([np.tile(order, passes), order[:rest]])
    repeat = np.repeat(np.arange(passes + 1), [n] * passes + [rest])
    return positions, repeat


def count_for_budget(tokens_in_order: np.ndarray, budget: float, max_rows: int) -> int:
    """Rows to take, in picking order (repeating it), whose token sum comes closest to the budget."""
    n = len(tokens_in_order)
    passes = min(math.ceil(max_rows / n), math.ceil(budget / max(tokens_in_order.sum(), 1)) + 1) if n else 0
    cum = np.concatenate([[0], np.cumsum(np.tile(tokens_in_order, passes))])[: max_rows + 1]
    m = int(np.searchsorted(cum, budget, side="left"))
    if m >= len(cum):
        return len(cum) - 1
    return m - 1 if m > 0 and budget - cum[m - 1] < cum[m] - budget else m


# ---- tokens -------------------------------------------------------------------------------


def _contents(col: str) -> pl.Expr:
    return pl.col(col).list.eval(pl.element().struct.field("content").fill_null("")).list.join("\n")


def _estimate(text: pl.Expr) -> pl.Expr:
    cjk = text.str.count_matches(CJK)
    return cjk + (text.str.len_chars() - cjk + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def estimate_tokens(kind: str, df: pl.DataFrame) -> np.ndarray:
    """~1 token per CJK character, 1 per 4 other characters, 4 per chat message (template)."""
    if kind == "cpt":
        expr = _estimate(pl.col("text"))
    elif kind == "preference":  # a DPO step reads prompt+chosen and prompt+rejected
        expr = sum(_estimate(_contents(c)) + TOKENS_PER_MESSAGE * pl.col(c).list.len() * k
                   for c, k in (("prompt", 2), ("chosen", 1), ("rejected", 1)))
    elif kind == "kto":
        expr = sum(_estimate(_contents(c)) + TOKENS_PER_MESSAGE * pl.col(c).list.len()
                   for c in ("prompt", "completion"))
    else:
        expr = _estimate(_contents("messages")) + TOKENS_PER_MESSAGE * pl.col("messages").list.len()
    return df.select(expr.cast(pl.Int64)).to_series().to_numpy()


def load_tokenizer(path: str):  # noqa: ANN201 (transformers is imported lazily)
    if not Path(path).is_dir():
        raise DatakitError(f"tokenizer: {path} is not a local folder; download the tokenizer first "
                           "(e.g. `hf download MODEL --local-dir DIR`) and give its folder")
    try:
        from transformers import AutoTokenizer
    except ImportError as e:
        raise DatakitError("unit: tokens with a tokenizer needs transformers: pip install 'datakit[hf]'") from e
    return AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)


def _messages(rows: list[list[dict] | None]) -> list[list[dict]]:
    """Stored message lists as the trainers render them (arguments as objects, content always present)."""
    from datakit.io.export import engine_messages
    from datakit.registry.rows import decode_messages

    return [engine_messages(decode_messages(r or [])) for r in rows]


def tokenizer_tokens(kind: str, df: pl.DataFrame, tok, batch: int = 1024) -> np.ndarray:  # noqa: ANN001
    """Exact counts: the chat template's rendering for chat rows, a plain encode for cpt text."""

    def chat(convs: list[list[dict]]) -> list[int]:
        ids = tok.apply_chat_template(convs, tokenize=True, return_dict=False)
        return [len(x) for x in ids]

    out: list[int] = []
    for start in range(0, df.height, batch):
        part = df.slice(start, batch)
        if kind == "cpt":
            out += [len(x) for x in tok(part["text"].to_list(), add_special_tokens=False)["input_ids"]]
        elif kind == "preference":
            prompt = _messages(part["prompt"].to_list())
            chosen, rejected = (chat([p + a for p, a in zip(prompt, _messages(part[c].to_list()))])
                                for c in ("chosen", "rejected"))
            out += [a + b for a, b in zip(chosen, rejected)]
        elif kind == "kto":
            prompt, completion = _messages(part["prompt"].to_list()), _messages(part["completion"].to_list())
            out += chat([p + c for p, c in zip(prompt, completion)])
        else:
            out += chat(_messages(part["messages"].to_list()))
    return np.asarray(out, dtype=np.int64)
