"""The versioned dataset store: immutable, content-addressed versions with lineage, on disk or in a bucket.

Layout under the root (a folder or an object store prefix, `storage.py`):
    datasets/<name>/parts/<token>/data/part-*.parquet   a commit's data and side files, written first
    datasets/<name>/v<N>/manifest.json                  the commit point: a create-only put naming its parts
    datasets/<name>/tags/<seq>.json                     tag snapshots, each a create-only put
Commit protocol (the one Delta Lake and Lance use on S3; no lock server, no rename): write the parts, then put the
manifest of v<N+1> only if it does not exist (`If-None-Match: *`; an exclusive create on disk). A writer that loses
the race re-reads and tries N+2, or returns the existing version when its content hash is already there. A crash
at any instant leaves at most unreferenced parts, which `gc` removes after a grace period. Tags move by the same
rule on a sequence of snapshots (compare-and-swap on the sequence number), which also keeps their history.
Registries written before this layout (data inside v<N>/, tags.json) read unchanged.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from datakit import __version__
from datakit.errors import CheckFailed, DatakitError
from datakit.registry.integrity import check_part
from datakit.registry.rows import ContentHasher, empty_frame, hash_text, known_kind, with_ids
from datakit.registry.storage import Storage, sha256_bytes
from datakit.schemas import VERSION_RE, DatasetRef, FileEntry, Manifest, Parent, check_name, stored_schema

DEFAULT_ROOT = "registry"
HASH_PREFIX_MIN = 6
MAX_COMMIT_ATTEMPTS = 1000  # each lost race means another writer published; this many in a row is a runaway
TAG_FILE_DIGITS = 10
SETTLE_S = 2.0  # how long a commit waits for a version folder's manifest that is being created


def default_root(explicit: str | Path | None = None) -> str:
    """--registry beats DATAKIT_REGISTRY beats ./registry (a path or a URL such as s3://bucket/prefix)."""
    return str(explicit or os.environ.get("DATAKIT_REGISTRY") or DEFAULT_ROOT)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


ROW_GROUP_ROWS = 50_000  # a streamed read (ops.batches) holds about one row group of a part at a time


def parquet_bytes(df: pl.DataFrame, **kw: Any) -> bytes:
    buf = io.BytesIO()
    df.write_parquet(buf, compression="zstd", **kw)
    return buf.getvalue()


def part_name(i: int) -> str:
    return f"data/part-{i:05d}.parquet"


def encode_part(kind: str, df: pl.DataFrame, *, trust_ids: bool = False) -> tuple[bytes, str]:
    """A data part's bytes and its rows' content-hash text; ids computed unless the caller vouches for them."""
    df = with_ids(kind, df, trust=trust_ids)
    return parquet_bytes(df, statistics=False, row_group_size=ROW_GROUP_ROWS), hash_text(df)


def write_part(batch: pl.DataFrame, *, root: str, prefix: str, kind: str, trust_ids: bool) -> pl.DataFrame:
    """Encode one batch (its part number in column `_part`) and put it under a stage's prefix; returns what the
    stage records (`Stage.add_written_part`). Runs wherever an engine sends it, with that machine's credentials."""
    rel = part_name(int(batch["_part"][0]))
    data, text = encode_part(kind, batch.drop("_part"), trust_ids=trust_ids)
    Storage(default_root(root)).put(f"{prefix}/{rel}", data)
    return pl.DataFrame({"rel": [rel], "sha256": [sha256_bytes(data)], "bytes": [len(data)],
                         "rows": [batch.height], "text": [text]})


class Stage:
    """A version being written. Add row chunks in order, then `commit`."""

    def __init__(self, registry: Registry, name: str, kind: str) -> None:
        self.registry, self.name, self.kind = registry, check_name(name), known_kind(kind)
        registry.storage.check_create_only()  # refuse a store that cannot commit safely before writing anything
        self.location = f"parts/{os.getpid()}-{secrets.token_hex(6)}"
        self.prefix = f"datasets/{self.name}/{self.location}"
        self._hasher = ContentHasher(kind)
        self._parts: list[str] = []
        self._files: dict[str, FileEntry] = {}
        self.done = False

    def _put(self, rel: str, data: bytes, rows: int | None = None) -> None:
        self.registry.storage.put(f"{self.prefix}/{rel}", data)
        self._files[rel] = FileEntry(sha256=sha256_bytes(data), bytes=len(data), rows=rows)

    def write(self, df: pl.DataFrame, *, trust_ids: bool = False) -> None:
        """Append rows (stored columns). Ids are computed here unless the caller vouches that the
        rows are unmodified registry rows carrying their ids (`trust_ids`)."""
        if df.height == 0:
            return
        data, text = encode_part(self.kind, df, trust_ids=trust_ids)
        rel = part_name(len(self._parts))
        self._put(rel, data, df.height)
        self._parts.append(rel)
        self._hasher.update_text(text, df.height)

    def add_written_part(self, rel: str, entry: FileEntry, text: str) -> None:
        """A part another process wrote under this stage's prefix (`write_part`), in row order."""
        if rel != part_name(len(self._parts)):
            raise DatakitError(f"{self.name}: part {rel} arrived out of order (expected {part_name(len(self._parts))})")
        self._files[rel] = entry
        self._parts.append(rel)
        self._hasher.update_text(text, entry.rows or 0)

    def write_extra(self, filename: str, df: pl.DataFrame | pl.LazyFrame) -> None:
        """A side file stored with the version (quarantine, cluster report, ...). A lazy frame (an op's spilled
        runs) is streamed through a local file, so a side file larger than memory is never held whole."""
        if isinstance(df, pl.DataFrame):
            self._put(filename, parquet_bytes(df))
            return
        staging = self.registry.local_dir(".staging")
        staging.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f"work-{os.getpid()}-extra-", dir=staging) as folder:
            path = Path(folder) / "extra.parquet"
            df.sink_parquet(path, compression="zstd")
            self.registry.storage.put(f"{self.prefix}/{filename}", path)
            self._files[filename] = FileEntry(sha256=sha256_file(path), bytes=path.stat().st_size)

    def commit(
        self, *, op: str, params: dict[str, Any] | None = None, parents: list[Parent] | None = None,
        stats: dict[str, Any] | None = None,
    ) -> tuple[Manifest, bool]:
        """Publish the version; returns (manifest, created). Identical content returns the existing one."""
        if not self._parts:  # an empty dataset still has a typed part, so readers see its columns
            rel = "data/part-00000.parquet"
            self._put(rel, parquet_bytes(empty_frame(self.kind)), 0)
            self._parts.append(rel)
        digest, reg = self._hasher.hexdigest(), self.registry
        for _ in range(MAX_COMMIT_ATTEMPTS):
            # One listing decides both: v<N+1> is only created by a writer that saw v1..vN without this content,
            # and only one writer can create it. (Separate listings would let two writers of the same content
            # publish it twice.)
            numbers = reg._version_numbers(self.name)
            existing = next((m for m in reg._manifests_of(self.name, numbers, settle=True)
                             if m.content_hash == digest), None)
            if existing is not None:
                self.abort()
                return existing, False
            version = f"v{max((n for n, _ in numbers), default=0) + 1}"
            manifest = Manifest(
                name=self.name, version=version, kind=self.kind, rows=self._hasher.rows, content_hash=digest,
                files=dict(sorted(self._files.items())), data_files=self._parts, location=self.location,
                parents=parents or [], op=op, params=params or {}, stats=stats or {},
                created=datetime.now(timezone.utc), datakit_version=__version__,
            )
            if reg.storage.put(f"datasets/{self.name}/{version}/manifest.json",
                               manifest.model_dump_json(indent=2).encode(), create=True):
                self.done = True
                return manifest, True
        raise DatakitError(f"{self.name}: lost {MAX_COMMIT_ATTEMPTS} commit races in a row; is a writer looping?")

    def abort(self) -> None:
        """Remove what this commit wrote (best effort: `gc` collects anything left)."""
        self.done = True
        self.registry.storage.delete_prefix(self.prefix)


class Registry:
    def __init__(self, root: str | Path | None = None) -> None:
        self.storage = Storage(default_root(root))
        self.root: Path | str = self.storage.local or self.storage.url  # a Path on disk, the URL of a bucket
        self._manifests: dict[tuple[str, str], Manifest] = {}  # versions never change once published

    # ---- writing --------------------------------------------------------------------------
    @contextmanager
    def stage(self, name: str, kind: str) -> Iterator[Stage]:
        st = Stage(self, name, kind)
        try:
            yield st
        finally:
            if not st.done:
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
        for _ in range(MAX_COMMIT_ATTEMPTS):
            seq, tags = self._tag_state(m.name, strict=False)
            before = tags.get(tag)
            body = orjson.dumps({"tags": {**tags, tag: m.version}, "moved": tag, "to": m.version,
                                 "at": datetime.now(timezone.utc).isoformat()}, option=orjson.OPT_SORT_KEYS)
            if self.storage.put(f"datasets/{m.name}/tags/{seq + 1:0{TAG_FILE_DIGITS}d}.json", body, create=True):
                return m, before
        raise DatakitError(f"{m.name}: lost {MAX_COMMIT_ATTEMPTS} tag races in a row")

    # ---- reading --------------------------------------------------------------------------
    def names(self) -> list[str]:
        return [n for n in self.storage.dirs("datasets") if self._version_numbers(n)]

    def versions(self, name: str) -> list[Manifest]:
        return self._manifests_of(check_name(name), self._version_numbers(name))

    def _manifests_of(self, name: str, numbers: list[tuple[int, str]], *, settle: bool = False) -> list[Manifest]:
        """The manifests of these version folders. With `settle` (a commit deciding its number), a folder whose
        manifest is not there yet is waited for briefly: on disk the folder appears a moment before the create-only
        manifest inside it, and skipping it would let the same content be published twice."""
        found = []
        for _, v in numbers:
            m = self._manifests.get((name, v))
            if m is None:
                raw = self.storage.get(f"datasets/{name}/{v}/manifest.json")
                if raw is None and settle:
                    raw = self._settle(name, v)
                if raw is None:
                    continue  # a folder without manifest (a crash, or set aside by repair): never a version
                m = self._manifests[(name, v)] = self.parse_manifest(name, v, raw)
            found.append(m)
        return found

    def _settle(self, name: str, v: str, wait_s: float = SETTLE_S) -> bytes | None:
        if self.storage.exists(f"datasets/{name}/{v}/manifest.quarantined.json"):
            return None
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            time.sleep(0.005)
            if (raw := self.storage.get(f"datasets/{name}/{v}/manifest.json")) is not None:
                return raw
        return None

    def parse_manifest(self, name: str, version: str, raw: bytes) -> Manifest:
        """A stored manifest, checked to be whole and to describe the folder it sits in."""
        where = self.storage.source(f"datasets/{name}/{version}/manifest.json")
        try:
            m = Manifest.model_validate_json(raw)
        except ValueError as e:  # pydantic's ValidationError (torn, empty or edited JSON) is a ValueError
            first = str(e).splitlines()[1 if len(str(e).splitlines()) > 1 else 0].strip()
            raise CheckFailed(f"{where}: damaged manifest ({first}); `datakit registry verify` lists all damage, "
                              f"`datakit registry pull {name} REMOTE` restores it from a copy") from None
        if (m.name, m.version) != (name, version):
            raise CheckFailed(f"{where}: the manifest describes {m.ref}, not {name}@{version} (a version folder was "
                              "copied or renamed by hand); move it back or remove it")
        return m

    def tags(self, name: str) -> dict[str, str]:
        return self._tag_state(name)[1]

    def tag_history(self, name: str) -> list[dict[str, Any]]:
        """Every tag move, oldest first: which tag, to which version, when."""
        return [orjson.loads(self.storage.get(key) or b"{}") for _, key in self._tag_snapshots(name)]

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

    def file_key(self, m: Manifest, rel: str) -> str:
        """Where a version's file lives, relative to the root (its parts folder, or the version folder of a
        registry written before parts folders)."""
        return f"datasets/{m.name}/{m.location or m.version}/{rel}"

    def data_path(self, m: Manifest, rel: str) -> str:
        """A version's file as a path on disk or a URL, for messages and for polars."""
        return self.storage.source(self.file_key(m, rel))

    def scan(self, ref: str | Manifest) -> pl.LazyFrame:
        """The version's rows, read lazily from disk or straight from the bucket (no download first). Each part's
        size and row count (its Parquet footer) are first checked against the manifest, so a truncated, swapped
        or overwritten part fails here, naming the file, instead of returning wrong rows."""
        m = ref if isinstance(ref, Manifest) else self.resolve(ref)
        self.check(m)
        return pl.concat([self.scan_part(m, f) for f in m.data_files], how="vertical")

    def scan_part(self, m: Manifest, rel: str) -> pl.LazyFrame:
        """One data part of a checked version, read lazily (a slice of it reads only the row groups it needs)."""
        # parts written before a field existed read with it as null (schemas.EXTENSION_FIELDS)
        return pl.scan_parquet(self.data_path(m, rel), schema=stored_schema(m.kind),
                               cast_options=pl.ScanCastOptions(missing_struct_fields="insert"), missing_columns="insert")

    def check(self, m: Manifest) -> None:
        """Every data part against the manifest (`integrity.check_part`); CheckFailed names the first bad file."""
        for f in m.data_files:
            check_part(self.storage, m, f, self.file_key(m, f))

    def load(self, ref: str | Manifest) -> pl.DataFrame:
        return self.scan(ref).collect()

    def read_file(self, m: Manifest, rel: str) -> bytes | None:
        return self.storage.get(self.file_key(m, rel))

    def extra(self, ref: str | Manifest, filename: str) -> pl.DataFrame | None:
        m = ref if isinstance(ref, Manifest) else self.resolve(ref)
        data = self.read_file(m, filename)
        return pl.read_parquet(io.BytesIO(data)) if data is not None else None

    def parent_of(self, m: Manifest) -> Parent:
        return Parent(ref=m.ref, content_hash=m.content_hash)

    def local_dir(self, sub: str) -> Path:
        """A folder for local working files of this registry (generation journals): inside a local root, or a
        cache folder keyed by the URL of a remote one (appends are not possible on an object store)."""
        if self.storage.local is not None:
            return self.storage.local / sub
        cache = Path(os.environ.get("DATAKIT_CACHE") or Path.home() / ".cache" / "datakit").expanduser()
        return cache / hashlib.sha256(self.storage.url.encode()).hexdigest()[:16] / sub

    # ---- internals ------------------------------------------------------------------------
    def _version_numbers(self, name: str) -> list[tuple[int, str]]:
        found = [(int(m.group(1)), d) for d in self.storage.dirs(f"datasets/{name}") if (m := VERSION_RE.match(d))]
        return sorted(found)

    def _tag_snapshots(self, name: str) -> list[tuple[int, str]]:
        snaps = []
        for o in self.storage.list(f"datasets/{name}/tags"):
            stem = o["path"].rsplit("/", 1)[-1].removesuffix(".json")
            if stem.isdigit():
                snaps.append((int(stem), o["path"]))
        return sorted(snaps)

    def _tag_state(self, name: str, *, strict: bool = True) -> tuple[int, dict[str, str]]:
        """(sequence number of the newest snapshot, its tags); before any snapshot, a pre-protocol tags.json.
        Not `strict` (moving a tag): a damaged newest snapshot is skipped for the newest readable one, so moving
        a tag repairs the damage."""
        snaps = self._tag_snapshots(name)
        seq = snaps[-1][0] if snaps else 0
        for _, key in reversed(snaps or [(0, f"datasets/{name}/tags.json")]):
            raw = self.storage.get(key)
            try:
                tags = orjson.loads(raw) if raw else {}
                tags = tags.get("tags", {}) if snaps else tags
                if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
                    raise ValueError("not a tag -> version map")
                return seq, tags
            except (ValueError, AttributeError) as e:
                if strict:
                    raise CheckFailed(f"{self.storage.source(key)}: damaged tag file ({e}); `datakit registry "
                                      "verify` lists it; moving any tag of this dataset writes a fresh snapshot") from None
        return seq, {}


def _parse_ref(text: str) -> DatasetRef:
    name, at, selector = text.partition("@")
    check_name(name)
    if at and not selector:
        raise DatakitError(f"invalid ref {text!r}: nothing after '@'; write name@v1, name@TAG or name@HASH")
    return DatasetRef.model_construct(name=name, selector=selector or None)
