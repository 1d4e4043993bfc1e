"""What the UI's pages show, read from the registry: plain dicts and lists the templates render.

Nothing here writes; every page reads the version it names (immutable), so a page can be reloaded at any time.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from datakit.ops.fields import CHAT_KINDS, text_expr
from datakit.ops.mix_plan import estimate_tokens
from datakit.registry.rows import frame_to_records
from datakit.registry.store import Registry
from datakit.schemas import Manifest
from datakit.text import guess_lang
from datakit.ui import plots

PER_PAGE = 20
LANG_SAMPLE = 5_000  # rows whose language is guessed for the plot (a seeded sample of larger versions)
SIDE_FILES = {"quarantine.parquet": "quarantine", "clusters.parquet": "dedup clusters", "leaks.parquet": "leaks",
              "review.parquet": "review decisions", "mix_sources.parquet": "mix sources", "rejected.parquet": "rejected"}


def datasets(reg: Registry) -> list[dict[str, Any]]:
    out = []
    for name in reg.names():
        versions = reg.versions(name)
        if not versions:
            continue
        m = versions[-1]
        tags = reg.tags(name)
        out.append({"name": name, "versions": len(versions), "latest": m, "tags": tags})
    return out


def children(reg: Registry, m: Manifest) -> list[Manifest]:
    """Versions whose parents include `m` (every manifest is read: fine for a team's registry)."""
    return [v for name in reg.names() for v in reg.versions(name)
            if any(p.content_hash == m.content_hash and p.ref == m.ref for p in v.parents)]


def side_files(m: Manifest) -> dict[str, str]:
    return {f: label for f, label in SIDE_FILES.items() if f in m.files}


def row_texts(kind: str, df: pl.DataFrame) -> pl.Series:
    """Each row's whole text (every turn of a conversation), for search and the length plots."""
    field = "conversation" if kind in CHAT_KINDS else "auto"
    return df.select(text_expr(kind, field).alias("t")).to_series().fill_null("")


def rows_page(reg: Registry, m: Manifest, *, page: int = 1, query: str = "") -> dict[str, Any]:
    """One page of rows (records with their index), filtered by a case-insensitive substring of their text."""
    df = reg.load(m).with_row_index("_row")
    if query:
        df = df.filter(row_texts(m.kind, df.drop("_row")).str.to_lowercase().str.contains(query.lower(), literal=True))
    pages = max(1, -(-df.height // PER_PAGE))
    page = min(max(page, 1), pages)
    chunk = df.slice((page - 1) * PER_PAGE, PER_PAGE)
    records = [{"row": int(i), **r} for i, r in zip(chunk["_row"], frame_to_records(m.kind, chunk.drop("_row")))]
    return {"rows": records, "matches": df.height, "page": page, "pages": pages, "query": query}


def stats_plots(reg: Registry, m: Manifest) -> list[str]:
    """Length in characters and estimated tokens, languages, turns per row, and planned vs realized mixture
    shares (a mix version)."""
    df = reg.load(m)
    out = []
    if df.height:
        text = row_texts(m.kind, df)
        out.append(plots.histogram(text.str.len_chars().to_numpy(), "length in characters", "characters"))
        if m.kind != "probes":
            out.append(plots.histogram(estimate_tokens(m.kind, df), "length in tokens (estimate)", "tokens"))
        sample = text if text.len() <= LANG_SAMPLE else text.sample(LANG_SAMPLE, seed=0)
        langs = pl.Series([guess_lang(t) for t in sample.to_list()]).value_counts(sort=True)
        caption = f"guessed from {sample.len():,} rows" + (" (a sample)" if sample.len() < text.len() else "")
        out.append(plots.bars(langs[:, 0].to_list(), langs["count"].to_list(), "languages", caption))
        if "messages" in df.columns:
            turns = df["messages"].list.len().value_counts().sort("messages")
            out.append(plots.bars([str(x) for x in turns["messages"]], turns["count"].to_list(), "messages per row"))
    comps = m.stats.get("components") if m.op == "mix" else None
    if comps:
        out.append(plots.bars([c["dataset"] for c in comps], [c["realized_share"] for c in comps],
                              "mixture share: realized (dark) vs planned (light)", "share of the mix",
                              second=[c["planned_share"] for c in comps]))
    return out


def side_table(reg: Registry, m: Manifest, filename: str, *, page: int = 1) -> dict[str, Any]:
    df = reg.extra(m, filename)
    if df is None:
        return {"columns": [], "rows": [], "page": 1, "pages": 1, "total": 0}
    pages = max(1, -(-df.height // PER_PAGE))
    page = min(max(page, 1), pages)
    chunk = df.slice((page - 1) * PER_PAGE, PER_PAGE)
    return {"columns": chunk.columns, "rows": chunk.rows(), "page": page, "pages": pages, "total": df.height}


def cluster_pairs(reg: Registry, m: Manifest, *, page: int = 1) -> dict[str, Any]:
    """Dedup clusters page: each removed row beside the row it duplicates (both read from their versions)."""
    table = side_table(reg, m, "clusters.parquet", page=page)
    cols = table["columns"]
    pairs = []
    for values in table["rows"]:
        r = dict(zip(cols, values))
        pairs.append({"similarity": r["similarity"], "method": r["method"],
                      "removed": _one(reg, r["removed_dataset"], r["removed_index"]),
                      "kept": _one(reg, r["kept_dataset"], r["kept_index"]),
                      "removed_at": f"{r['removed_dataset']} row {r['removed_index']}",
                      "kept_at": f"{r['kept_dataset']} row {r['kept_index']}"})
    return table | {"pairs": pairs}


def _one(reg: Registry, ref: str, index: int) -> dict[str, Any]:
    m = reg.resolve(ref)
    df = reg.scan(m).slice(int(index), 1).collect()
    return {"kind": m.kind, **next(frame_to_records(m.kind, df), {})}
