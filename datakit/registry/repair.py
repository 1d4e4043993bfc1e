"""The safe fixes for what `verify` finds, planned first and applied only when asked (`registry repair --yes`).

- a damaged version (unreadable manifest, or files that fail their checksums or content hash) is quarantined: its
  manifest is set aside as manifest.quarantined.json, so no read or op uses it, and its number is never reused;
  its data stays where it is (gc keeps the parts a quarantined manifest names).
- a damaged newest tag snapshot is replaced by a fresh one from the newest readable snapshot; a tag naming a
  missing version is dropped (tag history keeps what it was).
Nothing is ever deleted.
"""

from __future__ import annotations

from datetime import datetime, timezone

import orjson
from pydantic import BaseModel

from datakit.errors import CheckFailed
from datakit.registry.store import TAG_FILE_DIGITS, Registry
from datakit.registry.verify import verify

QUARANTINED = "manifest.quarantined.json"


class Fix(BaseModel):
    action: str  # quarantine-version | rewrite-tags
    target: str  # name@vN, or the dataset name for tags
    why: str
    tags: dict[str, str] | None = None  # rewrite-tags: the tags the fresh snapshot will hold


def plan(reg: Registry) -> list[Fix]:
    """The fixes for what `verify` finds: one walk of the registry, shared with it."""
    _, problems = verify(reg)
    bad: dict[str, str] = {}
    for p in problems:
        if p.scope == "version":
            bad.setdefault(p.ref, p.problem)
    fixes = [Fix(action="quarantine-version", target=ref, why=why) for ref, why in bad.items()]
    touched = {r.split("@")[0] for r in bad} | {p.ref.split("@")[0] for p in problems if p.scope == "tags"}
    for name in sorted(touched):
        healthy = {v for v in reg.storage.dirs(f"datasets/{name}") if f"{name}@{v}" not in bad
                   and reg.storage.exists(f"datasets/{name}/{v}/manifest.json")}
        try:
            _, tags = reg._tag_state(name)
            damaged = False
        except CheckFailed:
            _, tags = reg._tag_state(name, strict=False)
            damaged = True
        kept = {t: v for t, v in tags.items() if v in healthy}
        dropped = sorted(set(tags) - set(kept))
        if damaged or dropped:
            why = "; ".join((["the newest tag snapshot is damaged"] if damaged else [])
                            + ([f"tags naming a missing or damaged version: {', '.join(dropped)}"] if dropped else []))
            fixes.append(Fix(action="rewrite-tags", target=name, why=why, tags=kept))
    return fixes


def apply(reg: Registry, fixes: list[Fix]) -> None:
    for f in fixes:
        if f.action == "quarantine-version":
            name, v = f.target.split("@")
            key = f"datasets/{name}/{v}/manifest.json"
            raw = reg.storage.get(key)
            if raw is not None:
                reg.storage.put(f"datasets/{name}/{v}/{QUARANTINED}", raw)
                reg.storage.delete(key)
        elif f.action == "rewrite-tags":
            seq, _ = reg._tag_state(f.target, strict=False)
            body = orjson.dumps({"tags": f.tags or {}, "repaired": f.why, "at": datetime.now(timezone.utc).isoformat()},
                                option=orjson.OPT_SORT_KEYS)
            if not reg.storage.put(f"datasets/{f.target}/tags/{seq + 1:0{TAG_FILE_DIGITS}d}.json", body, create=True):
                raise CheckFailed(f"{f.target}: a tag moved while repairing; run `datakit registry repair` again")
