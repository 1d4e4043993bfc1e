"""Registry read-side checks: verify checksums and content, diff two versions, collect leftovers."""

from __future__ import annotations

import os
import shutil
from typing import Any

import polars as pl
from pydantic import BaseModel

from datakit.registry.rows import ContentHasher, frame_to_records, row_ids
from datakit.registry.store import Registry, sha256_file
from datakit.schemas import Manifest


class Problem(BaseModel):
    ref: str
    path: str
    problem: str


def verify_version(reg: Registry, m: Manifest) -> list[Problem]:
    """Recompute every file checksum, the row ids and the content hash of one version."""
    d = reg.version_dir(m)
    out: list[Problem] = []

    def bad(path: str, what: str) -> None:
        out.append(Problem(ref=m.ref, path=str(d / path), problem=what))

    for rel, entry in m.files.items():
        p = d / rel
        if not p.exists():
            bad(rel, "file listed in the manifest is missing")
            continue
        actual = sha256_file(p)
        if actual != entry.sha256:
            bad(rel, f"sha256 mismatch: manifest {entry.sha256[:16]}..., file {actual[:16]}...")
    listed = set(m.files) | {"manifest.json"}
    for p in d.rglob("*"):
        rel = str(p.relative_to(d))
        if p.is_file() and rel not in listed:
            bad(rel, "file not listed in the manifest")
    if out:  # data cannot be trusted; row-level checks would only repeat the same finding
        return out
    try:
        hasher = ContentHasher(m.kind)
        for rel in m.data_files:
            df = pl.read_parquet(d / rel)
            ids = row_ids(m.kind, df)
            user_ids = m.kind == "probes"
            stored = df["id"].to_list()
            wrong = [i for i, (a, b) in enumerate(zip(stored, ids)) if a != b and not user_ids]
            if wrong:
                bad(rel, f"{len(wrong)} row ids do not match row content (first at row {wrong[0] + 1})")
            hasher.update(df)
        if hasher.rows != m.rows:
            bad("data", f"row count {hasher.rows} differs from manifest {m.rows}")
        if hasher.hexdigest() != m.content_hash:
            bad("data", "content hash differs from manifest")
    except Exception as e:  # an unreadable part is a finding, not a crash
        bad("data", f"cannot read data: {e}")
    return out


def verify(reg: Registry, ref: str | None = None) -> tuple[int, list[Problem]]:
    """Verify one version or every version; returns (versions checked, problems)."""
    if ref is not None:
        m = reg.resolve(ref)
        return 1, verify_version(reg, m)
    checked, problems = 0, []
    base = reg.root / "datasets"
    for name_dir in sorted(base.iterdir()) if base.exists() else []:
        for vdir in sorted(name_dir.iterdir()):
            if vdir.is_dir() and not (vdir / "manifest.json").exists():
                problems.append(Problem(ref=name_dir.name, path=str(vdir), problem="version folder without manifest"))
        for m in reg.versions(name_dir.name):
            checked += 1
            problems.extend(verify_version(reg, m))
    return checked, problems


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def gc(reg: Registry, *, dry_run: bool = False) -> list[str]:
    """Remove staging folders and temp files of commits whose process is gone."""
    removed: list[str] = []
    staging = reg.root / ".staging"
    for p in sorted(staging.iterdir()) if staging.exists() else []:
        pid = p.name.split("-", 1)[0]
        if pid.isdigit() and _alive(int(pid)) and int(pid) != os.getpid():
            continue  # a live commit: leave it alone
        removed.append(str(p))
        if not dry_run:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    base = reg.root / "datasets"
    for p in sorted(base.glob("*/.*.tmp")) if base.exists() else []:
        pid = p.name.rsplit(".", 2)[-2]
        if not (pid.isdigit() and _alive(int(pid))):
            removed.append(str(p))
            if not dry_run:
                p.unlink(missing_ok=True)
    return removed


def _preview(kind: str, df: pl.DataFrame, n: int) -> list[dict[str, Any]]:
    out = []
    for rec in frame_to_records(kind, df.head(n)):
        rec.pop("meta", None)
        out.append(rec)
    return out


def diff(reg: Registry, a: str, b: str, *, examples: int = 5) -> dict[str, Any]:
    """Rows added and removed from A to B, compared by content id (duplicates counted)."""
    ma, mb = reg.resolve(a), reg.resolve(b)
    fa, fb = reg.load(ma), reg.load(mb)
    ca = fa.group_by("id").len("a")
    cb = fb.group_by("id").len("b")
    j = ca.join(cb, on="id", how="full", coalesce=True).fill_null(0)
    added_ids = j.filter(pl.col("b") > pl.col("a"))
    removed_ids = j.filter(pl.col("a") > pl.col("b"))
    added = int((added_ids["b"] - added_ids["a"]).sum())
    removed = int((removed_ids["a"] - removed_ids["b"]).sum())
    return {
        "a": ma.ref, "b": mb.ref, "rows_a": ma.rows, "rows_b": mb.rows,
        "added": added, "removed": removed, "unchanged": ma.rows - removed,
        "added_examples": _preview(mb.kind, fb.filter(pl.col("id").is_in(added_ids["id"].implode())).unique("id", keep="first", maintain_order=True), examples),
        "removed_examples": _preview(ma.kind, fa.filter(pl.col("id").is_in(removed_ids["id"].implode())).unique("id", keep="first", maintain_order=True), examples),
    }
