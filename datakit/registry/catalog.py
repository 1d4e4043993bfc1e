"""Read-only views of a registry for people and scripts: the catalog, a dataset's history, a version's
manifest with sample rows, its quarantine. Each returns plain JSON-ready dicts."""

from __future__ import annotations

from typing import Any

from datakit.errors import DatakitError
from datakit.registry.rows import frame_to_records
from datakit.registry.store import Registry


def catalog(reg: Registry) -> list[dict[str, Any]]:
    """One entry per dataset: its latest version, kind, rows, number of versions, tags and hash."""
    rows = []
    for name in reg.names():
        vs = reg.versions(name)
        m = vs[-1]
        rows.append({"name": name, "latest": m.version, "kind": m.kind, "rows": m.rows, "versions": len(vs),
                     "tags": sorted(reg.tags(name)), "content_hash": m.content_hash, "created": m.created.isoformat()})
    return rows


def history(reg: Registry, name: str) -> list[dict[str, Any]]:
    """A dataset's versions, oldest first, each with its op, parents, tags and stats."""
    vs = reg.versions(name)
    if not vs:
        raise DatakitError(f"no dataset named {name!r} in {reg.root}; see `datakit registry ls`")
    tags = reg.tags(name)
    return [{"ref": m.ref, "version": m.version, "rows": m.rows, "content_hash": m.content_hash, "op": m.op,
             "parents": [p.model_dump() for p in m.parents], "created": m.created.isoformat(),
             "tags": sorted(t for t, v in tags.items() if v == m.version), "stats": m.stats} for m in vs]


def describe(reg: Registry, ref: str, *, rows: int = 0) -> dict[str, Any]:
    """A version's manifest plus its first `rows` rows as records."""
    m = reg.resolve(ref)
    sample = list(frame_to_records(m.kind, reg.scan(m).head(rows).collect())) if rows else []
    return m.model_dump(mode="json") | {"ref": m.ref, "sample": sample}


def quarantine(reg: Registry, ref: str, *, limit: int = 20) -> dict[str, Any]:
    """The rows a version's ingest rejected (file, line or row, reason, raw text): the first `limit` and the total."""
    q = reg.extra(ref, "quarantine.parquet")
    return {"total": 0 if q is None else q.height, "rows": q.head(limit).to_dicts() if q is not None else []}
