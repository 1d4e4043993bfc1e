"""Registry read-side checks: verify checksums and content, diff two versions, collect leftovers."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel

from datakit.errors import CheckFailed, DatakitError
from datakit.registry.rows import ContentHasher, frame_to_records, row_ids
from datakit.registry.storage import age_seconds, sha256_bytes
from datakit.registry.store import Registry
from datakit.schemas import VERSION_RE, Manifest


class Problem(BaseModel):
    ref: str
    path: str
    problem: str
    scope: Literal["version", "tags", "folder"] = "version"  # what `registry repair` would act on


def verify_version(reg: Registry, m: Manifest) -> list[Problem]:
    """Recompute every file checksum, the row ids and the content hash of one version (on disk or in a bucket)."""
    out: list[Problem] = []

    def bad(rel: str, what: str) -> None:
        out.append(Problem(ref=m.ref, path=reg.data_path(m, rel), problem=what))

    for rel in m.data_files:
        if rel not in m.files:
            bad(rel, "data file has no checksum in the manifest")
    for rel, entry in m.files.items():
        data = reg.read_file(m, rel)
        if data is None:
            bad(rel, "file listed in the manifest is missing")
            continue
        actual = sha256_bytes(data)
        if actual != entry.sha256:
            bad(rel, f"sha256 mismatch: manifest {entry.sha256[:16]}..., file {actual[:16]}...")
    folder = reg.file_key(m, "").rstrip("/")
    for o in reg.storage.list(folder):
        rel = o["path"][len(folder) + 1:]
        if rel not in m.files and rel != "manifest.json":
            bad(rel, "file not listed in the manifest")
    if m.location:  # the version folder holds the manifest and nothing else
        vdir = f"datasets/{m.name}/{m.version}"
        for o in reg.storage.list(vdir):
            if o["path"] != f"{vdir}/manifest.json":
                out.append(Problem(ref=m.ref, path=reg.storage.source(o["path"]), problem="file not listed in the manifest"))
    if out:  # data cannot be trusted; row-level checks would only repeat the same finding
        return out
    try:
        hasher = ContentHasher(m.kind)
        for rel in m.data_files:
            df = pl.read_parquet(reg.data_path(m, rel))
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
    """Verify one version or the whole registry the way fsck would; returns (versions checked, problems).
    The whole registry: every version folder (a manifest missing, damaged, or describing another folder), every
    version's files and content, and every tag (a damaged snapshot, a tag naming a missing version)."""
    reg._manifests.clear()  # check the manifests as stored now, not as this process first read them
    if ref is not None:
        m = reg.resolve(ref)
        return 1, verify_version(reg, m)
    if reg.storage.local is not None and not reg.storage.local.exists():
        raise DatakitError(f"no registry at {reg.root}: check --registry or DATAKIT_REGISTRY (a mistyped path "
                           "would otherwise verify as an empty registry)")
    checked, problems = 0, []
    for name in reg.storage.dirs("datasets"):
        versions = []
        for v in reg.storage.dirs(f"datasets/{name}"):
            if not VERSION_RE.match(v):
                continue
            key = f"datasets/{name}/{v}/manifest.json"
            raw = reg.storage.get(key)
            if raw is None:
                if not reg.storage.exists(f"datasets/{name}/{v}/manifest.quarantined.json"):  # repair set it aside
                    problems.append(Problem(ref=name, path=reg.storage.source(f"datasets/{name}/{v}"), scope="folder",
                                            problem="version folder without manifest"))
                continue
            try:
                m = reg.parse_manifest(name, v, raw)
            except CheckFailed as e:
                problems.append(Problem(ref=f"{name}@{v}", path=reg.storage.source(key), problem=str(e).split(": ", 1)[1]))
                continue
            checked += 1
            versions.append(m.version)
            problems.extend(verify_version(reg, m))
        problems.extend(_tag_problems(reg, name, set(versions)))
    return checked, problems


def _tag_problems(reg: Registry, name: str, versions: set[str]) -> list[Problem]:
    try:
        _, tags = reg._tag_state(name)
    except CheckFailed as e:
        path, _, what = str(e).partition(": ")
        return [Problem(ref=name, path=path, problem=what, scope="tags")]
    where = reg.storage.source(f"datasets/{name}/tags")
    return [Problem(ref=f"{name}@{tag}", path=where, problem=f"tag points at {v}, which does not exist (dangling)",
                    scope="tags")
            for tag, v in sorted(tags.items()) if v not in versions]


GRACE_S = 3 * 3600.0  # unpublished parts younger than this may belong to a commit still writing, on any machine


def gc(reg: Registry, *, dry_run: bool = False, grace_s: float = GRACE_S) -> list[str]:
    """Remove what interrupted commits left: parts folders that no manifest names, once everything in them is
    older than the grace period. Age is judged by the files' own timestamps, never by process ids (a writer in
    another container or on another machine has a pid this one cannot see), and links are never followed."""
    removed: list[str] = []
    for name in reg.storage.dirs("datasets"):
        # every manifest's raw bytes, damaged or set aside by repair included: their parts are data, not leftovers
        named = b"".join(reg.storage.get(f"datasets/{name}/{v}/{f}") or b"" for v in reg.storage.dirs(f"datasets/{name}")
                         if VERSION_RE.match(v) for f in ("manifest.json", "manifest.quarantined.json"))
        for token in reg.storage.dirs(f"datasets/{name}/parts"):
            prefix = f"datasets/{name}/parts/{token}"
            if f'"parts/{token}"'.encode() in named:
                continue
            objs = list(reg.storage.list(prefix))
            if objs and min(age_seconds(o["last_modified"]) for o in objs) < grace_s:
                continue
            removed.append(reg.storage.source(prefix))
            if not dry_run:
                reg.storage.delete_prefix(prefix)
    if reg.storage.local is not None:
        removed += _gc_legacy(reg.storage.local, dry_run, grace_s)
    return removed


def _newest_mtime(p: Path) -> float:
    """Latest modification inside p, without following links."""
    if p.is_symlink() or not p.is_dir():
        return p.lstat().st_mtime
    times = [p.lstat().st_mtime]
    for folder, dirs, files in os.walk(p, followlinks=False):
        times += [os.lstat(os.path.join(folder, f)).st_mtime for f in dirs + files]
    return max(times)


def _gc_legacy(root: Path, dry_run: bool, grace_s: float) -> list[str]:
    """Leftovers of the rename-based protocol: .staging/<pid>-<token> folders and .<name>.<pid>.tmp files."""
    now, removed = time.time(), []
    staging, base = root / ".staging", root / "datasets"
    found = sorted(staging.iterdir()) if staging.exists() else []
    found += sorted(base.glob("*/.*.tmp")) if base.exists() else []
    for p in found:
        if now - _newest_mtime(p) < grace_s:
            continue
        removed.append(str(p))
        if not dry_run:
            p.unlink() if p.is_symlink() or not p.is_dir() else shutil.rmtree(p, ignore_errors=True)
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
