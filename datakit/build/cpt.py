"""`datakit build cpt DOCS... --name NAME`: company documents to continued-pretraining text.

Per document: text per page, repeated headers/footers and page numbers dropped, normalized (NFC,
whitespace), cut into paragraphs or knowledge sentences, filtered (too short, mostly symbols),
exact duplicates removed across all documents. Each dropped piece is counted by reason; rows
carry `source` (file name), `doc_id` (content hash of the file) and `group_id` (the document, so
a split never puts one document on both sides).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import regex

from datakit.build.documents import read_pages, strip_furniture
from datakit.errors import DatakitError
from datakit.ops import runner
from datakit.ops.runner import OpOutput
from datakit.registry.rows import records_to_frame
from datakit.registry.store import Registry
from datakit.schemas import Manifest
from datakit.text import guess_lang, normalize, segment_paragraphs, segment_sentences

Unit = Literal["paragraph", "sentence"]
_WORDY = regex.compile(r"[\p{L}\p{N}]")


def _drop_reason(piece: str, min_chars: int, min_word_share: float) -> str | None:
    if not piece or len(_WORDY.findall(piece)) / len(piece) < min_word_share:
        return "mostly symbols"
    if len(piece) < min_chars:
        return "too short"
    return None


def build_cpt(
    paths: list[Path], *, unit: Unit = "paragraph", min_chars: int = 20, min_word_share: float = 0.5,
) -> OpOutput:
    """Documents to cpt rows plus stats; no registry access (see `run_build_cpt`)."""
    if unit not in ("paragraph", "sentence"):
        raise DatakitError(f"--unit {unit}: use paragraph or sentence")
    rows: list[dict[str, Any]] = []
    dropped: Counter[str] = Counter()
    seen: set[str] = set()
    furniture = pages_total = pieces_total = 0
    for path in paths:
        raw = path.read_bytes()
        doc_id = hashlib.sha256(raw).hexdigest()[:16]
        pages, removed = strip_furniture(read_pages(path))
        furniture += removed
        pages_total += len(pages)
        text = normalize("\n\n".join(pages))
        pieces = segment_paragraphs(text)
        if unit == "sentence":
            pieces = [s for p in pieces for s in segment_sentences(p)]
        for i, piece in enumerate(pieces):
            pieces_total += 1
            piece = normalize(piece)
            reason = _drop_reason(piece, min_chars, min_word_share)
            key = piece.casefold()
            if reason is None and key in seen:
                reason = "duplicate"
            if reason:
                dropped[reason] += 1
                continue
            seen.add(key)
            rows.append({"text": piece, "source": path.name, "doc_id": doc_id, "group_id": f"doc-{doc_id}",
                         "meta": {"piece": i, "lang": guess_lang(piece), "unit": unit}})
    frame = records_to_frame("cpt", rows).drop("id")
    stats = {"documents": len(paths), "pages": pages_total, "furniture_lines_removed": furniture,
             "rows_in": pieces_total, "rows_out": len(rows), "removed": sum(dropped.values()),
             "dropped": dict(dropped), "langs": dict(Counter(r["meta"]["lang"] for r in rows))}
    return OpOutput(frame, stats)


def run_build_cpt(reg: Registry, paths: list[Path], *, name: str, unit: Unit = "paragraph",
                  min_chars: int = 20) -> tuple[Manifest, bool, dict[str, Any]]:
    expanded = _expand(paths)
    out = build_cpt(expanded, unit=unit, min_chars=min_chars)
    if out.frame.height == 0:
        raise DatakitError(f"build cpt: no text survived from {len(expanded)} document(s) ({out.stats['dropped']}); "
                           "check the files or lower --min-chars")
    files = [{"file": p.name, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()} for p in expanded]
    m, created = runner.commit(reg, name=name, kind="cpt", inputs=[], op="build-cpt",
                               params={"unit": unit, "min_chars": min_chars, "files": files}, out=out)
    return m, created, out.stats


def _expand(paths: list[Path]) -> list[Path]:
    """Folders stand for the documents inside them (sorted, so the build is deterministic)."""
    from datakit.build.documents import DOC_SUFFIXES

    out: list[Path] = []
    for p in paths:
        out += sorted(q for q in p.rglob("*") if q.suffix.lower() in DOC_SUFFIXES) if p.is_dir() else [p]
    if not out:
        raise DatakitError(f"build cpt: no documents in {', '.join(map(str, paths))} ({', '.join(DOC_SUFFIXES)})")
    return out
