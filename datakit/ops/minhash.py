"""Shingle hashing, MinHash signatures and LSH banding, vectorized with numpy.

Signatures use one-permutation hashing with rotation densification (Shrivastava & Li 2014):
each shingle is hashed once into one of `num_perm` bins and each bin keeps its minimum, which
estimates Jaccard like k-permutation MinHash at O(shingles) instead of O(shingles x perms).
LSH bands of `rows` bins propose candidate pairs; callers verify every candidate with the
exact Jaccard of the shingle sets, so a false positive never removes a row.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import polars as pl
import xxhash

CHUNK_DOCS = 20_000  # documents per thread task: bounds the temporaries, keeps both cores busy
M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
EMPTY32 = np.uint32(0xFFFFFFFF)  # a signature bin no shingle fell into
_C = np.random.default_rng(20260101).integers(1, 2**63, size=64, dtype=np.uint64) | np.uint64(1)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer: spreads bits so bins and bands see uniform values."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> np.uint64(27))
        x = x * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))




@dataclass
class Shingles:
    """Each document's shingle hashes (repeats possible, unordered), flat with offsets."""

    hashes: np.ndarray
    offsets: np.ndarray

    def of(self, i: int) -> np.ndarray:
        return self.hashes[self.offsets[i] : self.offsets[i + 1]]

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)


def token_hashes(tokens: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """Stable 64-bit hash per token (xxh64 of each distinct token), flat, with per-document offsets."""
    lengths = tokens.list.len().fill_null(0).to_numpy().astype(np.int64)
    flat = tokens.explode().drop_nulls()
    uniq = flat.unique(maintain_order=True)
    table = np.fromiter((xxhash.xxh64_intdigest(t.encode()) for t in uniq.to_list()), dtype=np.uint64, count=len(uniq))
    codes = flat.cast(pl.Enum(uniq)).to_physical().to_numpy()  # index into uniq, computed in Rust
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return table[codes], offsets


def shingle_hashes(tokens: pl.Series, n: int, *, workers: int = 2) -> Shingles:
    """Hashes of every n-token window (a shorter document gives one shingle of all its tokens)."""
    th, off = token_hashes(tokens)
    return _parallel_shingles(th, off, n, workers)


def _parallel_shingles(th: np.ndarray, off: np.ndarray, n: int, workers: int) -> Shingles:
    """Window hashes computed on document chunks in threads (numpy releases the GIL)."""
    n_docs = len(off) - 1
    bounds = np.linspace(0, n_docs, max(1, min(workers * 4, n_docs // CHUNK_DOCS + 1)) + 1).astype(np.int64)
    jobs = [(th[off[a] : off[b]], off[a : b + 1] - off[a]) for a, b in zip(bounds[:-1], bounds[1:])]
    with ThreadPoolExecutor(workers) as pool:
        parts = list(pool.map(lambda j: _window_hashes(j[0], j[1], n), jobs))
    sizes = [np.diff(o) for _, o in parts]
    offsets = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(np.concatenate(sizes) if sizes else [], out=offsets[1:])
    return Shingles(np.concatenate([h for h, _ in parts]) if parts else np.zeros(0, np.uint64), offsets)


def _window_hashes(th: np.ndarray, off: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.diff(off)
    n_windows = np.where(lengths >= n, lengths - n + 1, np.minimum(lengths, 1))
    out_off = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(n_windows, out=out_off[1:])
    padded = np.concatenate([th, np.zeros(n, dtype=np.uint64)])
    acc = np.zeros(len(th), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):  # window hash at every position; windows crossing a document end are dropped below
            acc += padded[k : k + len(th)] * _C[k]
    doc_end = np.repeat(off[1:], lengths)
    full = np.arange(len(th)) + n <= doc_end
    out = np.empty(out_off[-1], dtype=np.uint64)
    long_docs = lengths >= n
    out[np.repeat(long_docs, n_windows)] = acc[full]
    short = np.flatnonzero(~long_docs & (lengths > 0))
    if len(short):  # fewer tokens than n: one shingle of all of them
        with np.errstate(over="ignore"):
            sacc = np.zeros(len(short), dtype=np.uint64)
            for k in range(n - 1):
                inside = lengths[short] > k
                sacc[inside] += th[off[short[inside]] + k] * _C[k]
        out[out_off[short]] = sacc
    return mix64(out), out_off


def signatures(sh: Shingles, num_perm: int, *, workers: int = 2) -> np.ndarray:
    """docs x num_perm one-permutation MinHash as uint32 (half the memory of 64-bit minimums; a 32-bit tie
    between unrelated rows only adds a candidate, which exact verification drops); empty documents stay EMPTY32."""
    bits = int(math.log2(num_perm))
    if 2**bits != num_perm or bits > 32:
        raise ValueError(f"num_perm must be a power of two up to 2**32, got {num_perm}")
    n_docs = len(sh.offsets) - 1
    out = np.empty((n_docs, num_perm), dtype=np.uint32)
    bounds = list(range(0, n_docs, CHUNK_DOCS)) + [n_docs]

    def one(a: int, b: int) -> None:
        lo, hi = sh.offsets[a], sh.offsets[b]
        h = sh.hashes[lo:hi]
        doc = np.repeat(np.arange(b - a), np.diff(sh.offsets[a : b + 1]))
        sig = np.full((b - a) * num_perm, EMPTY32, dtype=np.uint32)
        value = ((h >> np.uint64(32 - bits)) & np.uint64(0xFFFFFFFF)).astype(np.uint32)  # the 32 bits below the bin
        np.minimum.at(sig, doc * num_perm + (h >> np.uint64(64 - bits)).astype(np.int64), value)
        out[a:b] = _densify(sig.reshape(b - a, num_perm))

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda ab: one(*ab), zip(bounds[:-1], bounds[1:])))
    return out


def _densify(sig: np.ndarray) -> np.ndarray:
    """Fill each empty bin from the next non-empty bin to its right (circular), offset by the distance."""
    empty = sig == EMPTY32
    if not empty.any():
        return sig
    k = sig.shape[1]
    has_any = ~empty.all(axis=1)
    cols = np.arange(k, dtype=np.int32)
    first = np.argmax(~empty, axis=1).astype(np.int32)  # first non-empty bin, for wrapping around
    idx = np.where(empty, (first + k)[:, None], cols[None, :])
    nxt = np.minimum.accumulate(idx[:, ::-1], axis=1)[:, ::-1]  # next non-empty at or after each bin
    dist = (nxt - cols[None, :]).astype(np.uint32)
    src = np.take_along_axis(sig, nxt % k, axis=1)
    with np.errstate(over="ignore"):
        out = np.where(empty, src + dist * np.uint32(0x9E3779B9), sig)
    out[~has_any] = EMPTY32
    return out


# Every candidate is verified with exact Jaccard, so a false positive costs only a comparison
# while a false negative loses a duplicate: weigh misses higher than datasketch's 0.5/0.5.
FP_WEIGHT, FN_WEIGHT = 0.2, 0.8


def lsh_params(threshold: float, num_perm: int, fp_weight: float = FP_WEIGHT, fn_weight: float = FN_WEIGHT) -> tuple[int, int]:
    """(bands, rows) minimizing weighted false-positive and false-negative area of the S-curve."""
    s = np.linspace(0, 1, 4001)
    best, best_err = (1, num_perm), math.inf
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            p = 1 - (1 - s**r) ** b
            fp = np.trapezoid(np.where(s < threshold, p, 0), s)
            fn = np.trapezoid(np.where(s >= threshold, 1 - p, 0), s)
            err = fp_weight * fp + fn_weight * fn
            if err < best_err:
                best, best_err = (b, r), err
    return best


def detection_probability(similarity: float, bands: int, rows: int) -> float:
    """The LSH S-curve: chance that two documents of this Jaccard share at least one band."""
    return float(1 - (1 - similarity**rows) ** bands)


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """bands x docs uint64: each document's key in each band (the hash of its `rows` bins there)."""
    out = np.empty((bands, sig.shape[0]), dtype=np.uint64)
    for b in range(bands):
        block = sig[:, b * rows : (b + 1) * rows]
        key = np.zeros(sig.shape[0], dtype=np.uint64)
        with np.errstate(over="ignore"):
            for r in range(rows):
                key = mix64(key + block[:, r].astype(np.uint64) * _C[r % len(_C)])
        out[b] = key
    return out


def bucket_pairs(band: np.ndarray, key: np.ndarray, docs: np.ndarray, *, max_bucket: int = 64) -> np.ndarray:
    """Pairs (i, j), i < j, of documents sharing a (band, key) bucket, possibly repeated; a bucket larger than
    `max_bucket` (many near-identical rows) is linked as a chain over its sorted members, which keeps it connected.
    The entries may come in any order and any split across calls, as long as each bucket is whole in one call."""
    order = np.lexsort((docs, key, band))
    b_sorted, k_sorted, d_sorted = band[order], key[order], docs[order]
    same = (k_sorted[1:] == k_sorted[:-1]) & (b_sorted[1:] == b_sorted[:-1])
    if not same.any():
        return np.zeros((0, 2), dtype=np.int64)
    starts = np.flatnonzero(np.concatenate([[True], ~same]))
    sizes = np.diff(np.append(starts, len(k_sorted)))
    pairs = []
    for size in np.unique(sizes[sizes >= 2]):  # all buckets of one size at once (few distinct sizes)
        at = starts[sizes == size]
        if size <= max_bucket:
            ii, jj = np.triu_indices(size, 1)
        else:
            ii, jj = np.arange(size - 1), np.arange(1, size)
        pairs.append(np.stack([d_sorted[(at[:, None] + ii).ravel()], d_sorted[(at[:, None] + jj).ravel()]], axis=1))
    return np.concatenate(pairs).astype(np.int64)


def unique_pairs(pairs: list[np.ndarray], n_docs: int) -> np.ndarray:
    """The distinct pairs, sorted by (i, j)."""
    allp = np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)
    codes = np.unique(allp[:, 0] * n_docs + allp[:, 1])
    return np.stack([codes // n_docs, codes % n_docs], axis=1)


def candidate_pairs(sig: np.ndarray, bands: int, rows: int, *, max_bucket: int = 64) -> np.ndarray:
    """Unique (i, j), i < j, of documents sharing a band; large buckets are linked as a chain."""
    live = np.flatnonzero(sig[:, 0] != EMPTY32)
    keys = band_keys(sig[live], bands, rows)
    band = np.repeat(np.arange(bands, dtype=np.int64), len(live))
    found = bucket_pairs(band, keys.ravel(), np.tile(live, bands), max_bucket=max_bucket)
    return unique_pairs([found], sig.shape[0])


def jaccard(sh: Shingles, pairs: np.ndarray) -> np.ndarray:
    """Exact Jaccard of the shingle sets of each pair (a loop over small sorted sets: faster here than one
    vectorized sort of every pair's hashes, which numpy does slowly on 64-bit keys)."""
    out = np.empty(len(pairs), dtype=np.float64)
    sets: dict[int, np.ndarray] = {}
    for k, (i, j) in enumerate(pairs):
        a = sets.get(i)
        if a is None:
            a = sets[i] = np.unique(sh.of(i))
        b = sets.get(j)
        if b is None:
            b = sets[j] = np.unique(sh.of(j))
        inter = len(np.intersect1d(a, b, assume_unique=True))
        union = len(a) + len(b) - inter
        out[k] = inter / union if union else 0.0
    return out


def connected(pairs: np.ndarray, n: int) -> np.ndarray:
    """For each of n elements, the lowest index in its connected cluster: roots hooked under the smaller root of
    each pair, then paths halved, until every pair shares a root (vectorized; a few rounds for any input)."""
    parent = np.arange(n, dtype=np.int64)
    if len(pairs) == 0:
        return parent
    a, b = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
    while True:
        ra, rb = parent[a], parent[b]
        if (ra == rb).all():
            return parent
        np.minimum.at(parent, np.maximum(ra, rb), np.minimum(ra, rb))  # parent[x] <= x always holds
        while True:  # pointer jumping until every element points at its root
            grand = parent[parent]
            if (grand == parent).all():
                break
            parent = grand
