"""The versioned dataset store: immutable, content-addressed versions with lineage.

Layout under the root:
    datasets/<name>/v<N>/manifest.json   written last; a version without it never becomes visible
    datasets/<name>/v<N>/data/part-*.parquet, plus extras such as quarantine.parquet
    datasets/<name>/tags.json            tag -> version
    datasets/<name>/.lock                serializes version numbering between processes
    .staging/<pid>-<token>/              a commit in progress; renamed into place in one step
A `kill -9` at any instant leaves either the whole version or only a staging folder that
`gc` removes.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from datakit import __version__
from datakit.errors import DatakitError
from datakit.registry.rows import ContentHasher, empty_frame, known_kind, with_ids
from datakit.schemas import VERSION_RE, DatasetRef, FileEntry, Manifest, Parent, check_name, stored_schema

DEFAULT_ROOT = "registry"
HASH_PREFIX_MIN = 6


def default_root(explicit: str | Path | None = None) -> Path:
    """--registry beats DATAKIT_REGISTRY beats ./registry."""
    return Path(explicit or os.environ.get("DATAKIT_REGISTRY") or DEFAULT_ROOT)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    _fsync(tmp)
    os.replace(tmp, path)
    _fsync(path.parent)


class Stage:
    """A version being written. Add row chunks in order, then `commit`."""

    def __init__(self, registry: Registry, name: str, kind: str) -> None:
        self.registry, self.name, self.kind = registry, check_name(name), known_kind(kind)
        self.dir = registry.root / ".staging" / f"{os.getpid()}-{secrets.token_hex(6)}"
        (self.dir / "data").mkdir(parents=True)
        self._hasher = ContentHasher(kind)
        self._parts: list[str] = []
        self._part_rows: dict[str, int] = {}

    def write(self, df: pl.DataFrame, *, trust_ids: bool = False) -> None:
        """Append rows (stored columns). Ids are computed here unless the caller vouches that the
        rows are unmodified registry rows carrying their ids (`trust_ids`)."""
        if df.height == 0:
            return
        df = with_ids(self.kind, df, trust=trust_ids)
        self._hasher.update(df)
        rel = f"data/part-{len(self._parts):05d}.parquet"
        df.write_parquet(self.dir / rel, compression="zstd", statistics=False)
        self._parts.append(rel)
        self._part_rows[rel] = df.height

    def write_extra(self, filename: str, df: pl.DataFrame) -> None:
        """A side file stored with the version (quarantine, cluster report, ...)."""
        df.write_parquet(self.dir / filename, compression="zstd")

    def commit(
        self, *, op: str, params: dict[str, Any] | None = None, parents: list[Parent] | None = None,
        stats: dict[str, Any] | None = None,
    ) -> tuple[Manifest, bool]:
        """Publish the version; returns (manifest, created). Identical content returns the existing one."""
        if not self._parts:  # an empty dataset still has a typed part, so readers see its columns
            rel = "data/part-00000.parquet"
            empty_frame(self.kind).write_parquet(self.dir / rel)
            self._parts.append(rel)
            self._part_rows[rel] = 0
        files = {}
        for p in sorted(self.dir.rglob("*")):
            if p.is_file():
                rel = str(p.relative_to(self.dir))
                files[rel] = FileEntry(sha256=sha256_file(p), bytes=p.stat().st_size, rows=self._part_rows.get(rel))
                _fsync(p)
        digest = self._hasher.hexdigest()
        with self.registry._locked(self.name):
            existing = self.registry._find_hash(self.name, digest)
            if existing is not None:
                shutil.rmtree(self.dir, ignore_errors=True)
                return existing, False
            version = f"v{self.registry._last_number(self.name) + 1}"
            manifest = Manifest(
                name=self.name, version=version, kind=self.kind, rows=self._hasher.rows, content_hash=digest,
                files=files, data_files=self._parts, parents=parents or [], op=op, params=params or {},
                stats=stats or {}, created=datetime.now(timezone.utc), datakit_version=__version__,
            )
            _write_atomic(self.dir / "manifest.json", manifest.model_dump_json(indent=2).encode())
            _fsync(self.dir / "data")
            _fsync(self.dir)
            target = self.registry._dataset_dir(self.name) / version
            os.rename(self.dir, target)
            _fsync(target.parent)
        return manifest, True

    def abort(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class Registry:
    def __init__(self, root: str | Path | None = None) -> None:
        self.root = default_root(root)

    # ---- writing --------------------------------------------------------------------------
    @contextmanager
    def stage(self, name: str, kind: str) -> Iterator[Stage]:
        st = Stage(self, name, kind)
        try:
            yield st
        finally:
            if st.dir.exists():
                st.abort()

    def commit_frame(self, name: str, kind: str, df: pl.DataFrame, *, op: str, **kw: Any) -> tuple[Manifest, bool]:
        """Commit a whole frame in one go (ops and builders use this)."""
        extras: dict[str, pl.DataFrame] = kw.pop("extras", {}) or {}
        trust_ids: bool = kw.pop("trust_ids", False)
        with self.stage(name, kind) as st:
            st.write(df, trust_ids=trust_ids)
            for fname, extra in extras.items():
                st.write_extra(fname, extra)
            return st.commit(op=op, **kw)

    def tag(self, ref: str, tag: str) -> tuple[Manifest, str | None]:
        """Point TAG at a version; returns the manifest and the version it pointed at before."""
        check_name(tag, "tag")
        if VERSION_RE.match(tag):
            raise DatakitError(f"tag {tag!r} looks like a version number; pick a name such as 'baseline'")
        m = self.resolve(ref)
        with self._locked(m.name):
            tags = self.tags(m.name)
            before = tags.get(tag)
            tags[tag] = m.version
            _write_atomic(self._dataset_dir(m.name) / "tags.json", orjson.dumps(tags, option=orjson.OPT_SORT_KEYS))
        return m, before

    # ---- reading --------------------------------------------------------------------------
    def names(self) -> list[str]:
        d = self.root / "datasets"
        return sorted(p.name for p in d.iterdir() if p.is_dir() and self.versions(p.name)) if d.exists() else []

    def versions(self, name: str) -> list[Manifest]:
        d = self._dataset_dir(check_name(name), create=False)
        if not d.exists():
            return []
        found = []
        for p in d.iterdir():
            m = VERSION_RE.match(p.name)
            if m and (p / "manifest.json").exists():
                found.append((int(m.group(1)), p))
        return [self._read_manifest(p) for _, p in sorted(found)]

    def tags(self, name: str) -> dict[str, str]:
        p = self._dataset_dir(name, create=False) / "tags.json"
        return orjson.loads(p.read_bytes()) if p.exists() else {}

    def resolve(self, ref: str | DatasetRef) -> Manifest:
        r = ref if isinstance(ref, DatasetRef) else _parse_ref(ref)
        versions = self.versions(r.name)
        if not versions:
            known = ", ".join(self.names()) or "none yet"
            raise DatakitError(f"no dataset named {r.name!r} in registry {self.root} (datasets: {known})")
        sel = r.selector
        if sel is None:
            return versions[-1]
        by_version = {m.version: m for m in versions}
        if sel in by_version:
            return by_version[sel]
        tags = self.tags(r.name)
        if sel in tags:
            return by_version[tags[sel]]
        if len(sel) >= HASH_PREFIX_MIN and all(c in "0123456789abcdef" for c in sel):
            hits = [m for m in versions if m.content_hash.startswith(sel)]
            if len(hits) == 1:
                return hits[0]
            if len(hits) > 1:
                raise DatakitError(f"{r}: hash prefix matches {', '.join(m.version for m in hits)}; give more digits")
        raise DatakitError(
            f"{r}: no such version; {r.name} has {', '.join(by_version)}"
            + (f" and tags {', '.join(sorted(tags))}" if tags else "")
        )

    def version_dir(self, m: Manifest) -> Path:
        return self._dataset_dir(m.name, create=False) / m.version

    def scan(self, ref: str | Manifest) -> pl.LazyFrame:
        m = ref if isinstance(ref, Manifest) else self.resolve(ref)
        d = self.version_dir(m)
        # parts written before a field existed read with it as null (schemas.EXTENSION_FIELDS)
        schema = stored_schema(m.kind)
        cast = pl.ScanCastOptions(missing_struct_fields="insert")
        return pl.concat([pl.scan_parquet(d / f, schema=schema, cast_options=cast, missing_columns="insert")
                          for f in m.data_files], how="vertical")

    def load(self, ref: str | Manifest) -> pl.DataFrame:
        return self.scan(ref).collect()

    def extra(self, ref: str | Manifest, filename: str) -> pl.DataFrame | None:
        m = ref if isinstance(ref, Manifest) else self.resolve(ref)
        p = self.version_dir(m) / filename
        return pl.read_parquet(p) if p.exists() else None

    def parent_of(self, m: Manifest) -> Parent:
        return Parent(ref=m.ref, content_hash=m.content_hash)

    # ---- internals ------------------------------------------------------------------------
    def _dataset_dir(self, name: str, create: bool = True) -> Path:
        d = self.root / "datasets" / name
        if create:
            d.mkdir(parents=True, exist_ok=True)
            (self.root / ".staging").mkdir(exist_ok=True)
        return d

    @contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        with open(self._dataset_dir(name) / ".lock", "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _read_manifest(self, version_dir: Path) -> Manifest:
        return Manifest.model_validate_json((version_dir / "manifest.json").read_bytes())

    def _last_number(self, name: str) -> int:
        d = self._dataset_dir(name)
        nums = [int(m.group(1)) for p in d.iterdir() if (m := VERSION_RE.match(p.name))]
        return max(nums, default=0)

    def _find_hash(self, name: str, digest: str) -> Manifest | None:
        return next((m for m in self.versions(name) if m.content_hash == digest), None)


def _parse_ref(text: str) -> DatasetRef:
    name, at, selector = text.partition("@")
    check_name(name)
    if at and not selector:
        raise DatakitError(f"invalid ref {text!r}: nothing after '@'; write name@v1, name@TAG or name@HASH")
    return DatasetRef.model_construct(name=name, selector=selector or None)
