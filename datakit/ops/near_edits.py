"""Near-copies as scraped and generated data plant them, for measuring dedup recall on real text.

    copies = plant(texts, random.Random(0), per_kind=20)   # [(source index, edited text, kind), ...]

Each kind is one edit a person would still call "the same text": a dropped word or two, words re-cased, a
swapped neighbour pair, curly quotes, doubled spaces, a repost prefix or a read-more suffix, the whole text in
upper case, trailing whitespace.
"""

from __future__ import annotations

import random
from collections.abc import Callable

KINDS = ("drop_words", "recase_words", "swap_pair", "curly_quotes", "double_spaces", "prefix", "suffix",
         "upper", "trailing_space")


def _words(text: str) -> list[str]:
    return text.split(" ")


def _drop(t: str, rng: random.Random) -> str:
    w = _words(t)
    for _ in range(1 if len(w) < 40 else 2):
        if len(w) > 3:
            w.pop(rng.randrange(1, len(w) - 1))
    return " ".join(w)


def _recase(t: str, rng: random.Random) -> str:
    w = _words(t)
    for i in rng.sample(range(len(w)), max(1, len(w) // 10)):
        w[i] = w[i].title() if w[i].islower() else w[i].lower()
    return " ".join(w)


def _swap(t: str, rng: random.Random) -> str:
    w = _words(t)
    if len(w) > 3:
        i = rng.randrange(0, len(w) - 1)
        w[i], w[i + 1] = w[i + 1], w[i]
    return " ".join(w)


EDITS: dict[str, Callable[[str, random.Random], str]] = {
    "drop_words": _drop,
    "recase_words": _recase,
    "swap_pair": _swap,
    "curly_quotes": lambda t, r: t.replace('"', "\u201c").replace("'", "\u2019") if ("'" in t or '"' in t)
    else "\u201c" + t + "\u201d",
    "double_spaces": lambda t, r: t.replace(" ", "  ", max(1, t.count(" ") // 5)),
    "prefix": lambda t, r: "Reposted - " + t,
    "suffix": lambda t, r: t + " Read more.",
    "upper": lambda t, r: t.upper(),
    "trailing_space": lambda t, r: t + "  \n",
}


def plant(texts: list[str], rng: random.Random, *, per_kind: int) -> list[tuple[int, str, str]]:
    """`per_kind` edited copies of distinct random sources for every kind of edit."""
    out = []
    for kind in KINDS:
        for i in rng.sample(range(len(texts)), min(per_kind, len(texts))):
            out.append((i, EDITS[kind](texts[i], rng), kind))
    return out
