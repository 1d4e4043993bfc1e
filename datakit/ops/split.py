"""Deterministic, group-aware train/valid/test split.

Rows sharing a `group_id` (paraphrases of one fact, answers to one prompt) land on one side;
rows that are near-duplicates of each other are joined into one group too, so a paraphrase in
validation of a training row cannot fake a low validation loss. Groups are ordered by a hash of
the seed and their smallest row id (independent of row order) and fill valid, then test.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import polars as pl

from datakit.errors import DatakitError
from datakit.ops import minhash, runner
from datakit.ops.fields import texts
from datakit.ops.runner import OpOutput
from datakit.registry.store import Registry
from datakit.schemas import Manifest
from datakit.text import tokens_expr


def _groups(m: Manifest, df: pl.DataFrame, *, field: str, threshold: float, ngram: int, num_perm: int) -> tuple[np.ndarray, int]:
    """Group index per row: given group_ids, merged through near-duplicate links; and how many links merged groups."""
    n = df.height
    gid = df["group_id"].to_list()
    first: dict[str, int] = {}
    links = []
    for i, g in enumerate(gid):
        if g is not None and (j := first.setdefault(g, i)) != i:
            links.append((j, i))
    text = pl.DataFrame({"t": texts(m.kind, df, field)}).with_columns(tok=tokens_expr(pl.col("t")))
    sh = minhash.shingle_hashes(text["tok"], ngram)
    bands, rows = minhash.lsh_params(threshold, num_perm)
    cand = minhash.candidate_pairs(minhash.signatures(sh, num_perm), bands, rows)
    near = cand[minhash.jaccard(sh, cand) >= threshold] if len(cand) else cand
    pairs = np.concatenate([np.array(links, dtype=np.int64).reshape(-1, 2), near.astype(np.int64)])
    root = minhash.connected(pairs, n)
    before = minhash.connected(np.array(links, dtype=np.int64).reshape(-1, 2), n)
    merged = len(np.unique(before)) - len(np.unique(root))
    return root, merged


def split(
    inp: tuple[Manifest, pl.DataFrame], *, valid: float, test: float = 0.0, seed: int = 0, field: str = "auto",
    threshold: float = 0.7, ngram: int = 5, num_perm: int = 128,
) -> OpOutput:
    """The same rows in the same order, each with `split` set to train, valid or test."""
    if valid < 0 or test < 0 or valid + test >= 1:
        raise DatakitError(f"--valid {valid} and --test {test} must be >= 0 and sum to less than 1")
    m, df = inp
    n = df.height
    root, merged = _groups(m, df, field=field, threshold=threshold, ngram=ngram, num_perm=num_perm)
    ids = df["id"].to_list()
    groups = pl.DataFrame({"root": root, "id": ids}).group_by("root").agg(pl.col("id").min().alias("key"), pl.len().alias("size"))
    order = sorted(zip(groups["key"].to_list(), groups["root"].to_list(), groups["size"].to_list()),
                   key=lambda g: hashlib.sha256(f"{seed}:{g[0]}".encode()).digest())
    targets = {"valid": round(valid * n), "test": round(test * n)}
    counts = {"train": 0, "valid": 0, "test": 0}
    side: dict[int, str] = {}
    for _, r, size in order:
        name = next((s for s in ("valid", "test") if counts[s] < targets[s]), "train")
        side[r] = name
        counts[name] += size
    labels = pl.Series("split", [side[r] for r in root], dtype=pl.String)
    group_counts = {s: sum(1 for v in side.values() if v == s) for s in counts}
    stats: dict[str, Any] = {
        "rows_in": n, "rows_out": n, "removed": 0, "seed": seed, "planned": {"valid": valid, "test": test},
        "rows": counts, "groups": group_counts, "realized": {s: round(c / n, 4) if n else 0 for s, c in counts.items()},
        "groups_merged_by_similarity": merged, "threshold": threshold, "field": field,
    }
    return OpOutput(df.with_columns(labels), stats, rows_unchanged=True)


def run_split(reg: Registry, ref: str, names: list[str], *, valid: float, test: float = 0.0, seed: int = 0,
              field: str = "auto", threshold: float = 0.7) -> list[dict[str, Any]]:
    inp = runner.load(reg, [ref])[0]
    params = {"input": inp[0].ref, "valid": valid, "test": test, "seed": seed, "field": field, "threshold": threshold}
    o = split(inp, valid=valid, test=test, seed=seed, field=field, threshold=threshold)
    return runner.commit_each(reg, [inp[0]], [o], runner.output_names([ref], names), op="split", params=params)
