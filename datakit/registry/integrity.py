"""What every read of a version checks before trusting a part: cheap always, the full checksum once per change.

Always: the part exists, its size and its Parquet footer's row count match the manifest (a truncated, swapped or
overwritten part fails here, naming the file). Then the sha256 of the whole part against the manifest, unless this
machine already verified this very file: a cache (in $DATAKIT_CACHE, default ~/.cache/datakit) remembers parts by
size and modification time on disk, by ETag in a bucket, so a flipped byte is caught the first time a changed file
is read and unchanged files cost nothing more. `--verify-reads` (DATAKIT_VERIFY_READS=1) hashes every part on every
read, for a disk that may rot a file without touching its size or mtime. An op reads its inputs through this check, so it never commits on
top of a damaged parent.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import orjson
import polars as pl

from datakit.errors import CheckFailed
from datakit.registry.storage import Storage, sha256_bytes
from datakit.schemas import Manifest

VERIFY_READS_ENV = "DATAKIT_VERIFY_READS"
_LOCK = threading.Lock()
_MEMO: dict[str, str] = {}


def cache_file() -> Path:
    return Path(os.environ.get("DATAKIT_CACHE") or Path.home() / ".cache" / "datakit").expanduser() / "verified-parts.json"


def _load() -> dict[str, str]:
    if not _MEMO:
        try:
            _MEMO.update(orjson.loads(cache_file().read_bytes()))
        except (OSError, ValueError):
            pass  # no cache yet, or a damaged one: verify again
    return _MEMO


def _remember(key: str, stamp: str) -> None:
    with _LOCK:
        _load()[key] = stamp
        path = cache_file()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(orjson.dumps(_MEMO))
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only home only costs a re-check next time


def check_part(storage: Storage, m: Manifest, rel: str, key: str) -> None:
    """Raise CheckFailed naming the file unless the part `rel` of `m`, stored at `key`, is the one the manifest
    describes."""
    entry, path = m.files.get(rel), storage.source(key)
    fix = f"run `datakit registry verify {m.ref}`, then restore the version from a copy (`registry pull`)"
    stamp = storage.stamp(key)
    if stamp is None:
        raise CheckFailed(f"{path}: data file of {m.ref} is missing; {fix}")
    size = int(stamp.split(":", 1)[0])
    if entry is None:
        raise CheckFailed(f"{path}: {m.ref} lists this part without a checksum; {fix}")
    if size != entry.bytes:
        raise CheckFailed(f"{path}: {size:,} bytes, the manifest of {m.ref} says {entry.bytes:,} (truncated or "
                          f"replaced); {fix}")
    try:
        rows = pl.scan_parquet(path).select(pl.len()).collect().item()
    except Exception as e:  # noqa: BLE001 - any unreadable footer is the same finding
        raise CheckFailed(f"{path}: not a readable Parquet file ({type(e).__name__}); {fix}") from None
    if entry.rows is not None and rows != entry.rows:
        raise CheckFailed(f"{path}: {rows} rows, the manifest of {m.ref} says {entry.rows}; {fix}")
    memo_key = hashlib.sha256(f"{storage.url}|{key}".encode()).hexdigest()[:32]
    if os.environ.get(VERIFY_READS_ENV) != "1" and _load().get(memo_key) == f"{stamp}:{entry.sha256}":
        return
    data = storage.get(key)
    if data is None or sha256_bytes(data) != entry.sha256:
        raise CheckFailed(f"{path}: content differs from the manifest of {m.ref} (sha256); {fix}")
    _remember(memo_key, f"{stamp}:{entry.sha256}")
