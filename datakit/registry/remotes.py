"""Copy versions between two registries (a laptop folder and the team's bucket, or two buckets), like git remotes.

A version travels as it is: the same number, the same manifest bytes, its files at the same keys, so lineage and
content hashes arrive unchanged and `verify` passes on the other side. Only files the destination lacks (or holds
with another checksum) are copied, each checked against the manifest's sha256 before it is written; the manifest
goes last with a create-only put, so an interrupted copy is invisible and a rerun finishes it. A version number
that already names different content on the destination is refused: the two registries diverged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from datakit.errors import DatakitError
from datakit.registry.storage import sha256_bytes
from datakit.registry.store import Registry
from datakit.schemas import Manifest


class Copied(BaseModel):
    ref: str
    status: str  # copied | present
    files_copied: int = 0
    bytes_copied: int = 0


def select(reg: Registry, ref: str | None, *, every: bool) -> list[Manifest]:
    """What a push or pull of REF moves: the named version and every earlier version of its dataset (history
    travels whole, so version numbers stay aligned on both sides); `every`: all versions of all datasets."""
    if every:
        return [m for name in reg.names() for m in reg.versions(name)]
    if not ref:
        raise DatakitError("name a dataset or version to copy (e.g. faq or faq@v3), or pass --all")
    last = reg.resolve(ref)
    return [m for m in reg.versions(last.name) if int(m.version[1:]) <= int(last.version[1:])]


def plan_bytes(src: Registry, manifests: list[Manifest]) -> int:
    return sum(e.bytes for m in manifests for e in m.files.values())


def copy_versions(src: Registry, dst: Registry, manifests: list[Manifest], *,
                  advance: Callable[[int], None] = lambda n: None) -> list[Copied]:
    """Copy each version (oldest first) that `dst` does not have; refuse one whose number `dst` uses otherwise."""
    done = []
    for m in manifests:
        there = _existing(dst, m)
        if there is not None:
            if there.content_hash != m.content_hash:
                raise DatakitError(
                    f"{m.ref}: {dst.root} already has a different {m.version} (content {there.content_hash[:12]}, "
                    f"here {m.content_hash[:12]}): both registries committed {m.name} since they last synced, and "
                    f"versions never change. Copy the other side into a fresh registry to compare, then commit your "
                    f"rows under a new name (e.g. {m.name}-mine) and copy that.")
            advance(sum(e.bytes for e in m.files.values()))
            done.append(Copied(ref=m.ref, status="present"))
            continue
        done.append(_copy_one(src, dst, m, advance))
    return done


def _existing(reg: Registry, m: Manifest) -> Manifest | None:
    raw = reg.storage.get(f"datasets/{m.name}/{m.version}/manifest.json")
    return reg.parse_manifest(m.name, m.version, raw) if raw is not None else None  # a damaged one is named


def _copy_one(src: Registry, dst: Registry, m: Manifest, advance: Callable[[int], None]) -> Copied:
    files = bytes_ = 0
    for rel, entry in sorted(m.files.items()):
        key = src.file_key(m, rel)
        have = dst.storage.get(key)
        if have is not None and sha256_bytes(have) == entry.sha256:
            advance(entry.bytes)
            continue  # already there (a rerun after an interrupted copy)
        data = src.storage.get(key)
        if data is None or sha256_bytes(data) != entry.sha256:
            raise DatakitError(f"{m.ref}: {src.data_path(m, rel)} is missing or does not match its manifest checksum; "
                               f"run `datakit registry verify {m.ref}` on {src.root} before copying it")
        dst.storage.put(key, data)
        files, bytes_ = files + 1, bytes_ + len(data)
        advance(entry.bytes)
    manifest = src.storage.get(f"datasets/{m.name}/{m.version}/manifest.json")
    assert manifest is not None  # resolved from this very object
    if not dst.storage.put(f"datasets/{m.name}/{m.version}/manifest.json", manifest, create=True):
        raced = _existing(dst, m)  # someone published this number meanwhile
        if raced is None or raced.content_hash != m.content_hash:
            raise DatakitError(f"{m.ref}: {dst.root} published a different {m.version} while copying; pull it first")
    return Copied(ref=m.ref, status="copied", files_copied=files, bytes_copied=bytes_)


def summary(results: list[Copied]) -> dict[str, Any]:
    return {"versions": [r.model_dump() for r in results],
            "copied": sum(r.status == "copied" for r in results), "present": sum(r.status == "present" for r in results),
            "files_copied": sum(r.files_copied for r in results), "bytes_copied": sum(r.bytes_copied for r in results)}
