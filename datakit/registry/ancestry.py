"""A version's ancestry: the versions it was made from, back to the source files ingest read (with their sha256).

One walk shared by `datakit runs show` (printed as a tree) and the web UI's lineage graph (drawn as SVG).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from datakit.errors import DatakitError
from datakit.registry.store import Registry
from datakit.schemas import Manifest


def source_files(m: Manifest) -> list[dict[str, Any]]:
    """The files an ingest version was read from: [{file, sha256, ...}] (empty for versions made by ops)."""
    files = m.params.get("files")
    return [f for f in files if isinstance(f, dict) and f.get("file")] if isinstance(files, list) else []


@dataclass
class Ancestry:
    focus: Manifest
    versions: dict[str, Manifest | None] = field(default_factory=dict)  # ref -> manifest; None: not in this registry
    parents: dict[str, list[str]] = field(default_factory=dict)  # ref -> its parents' refs, in manifest order
    depth: dict[str, int] = field(default_factory=dict)  # ref -> longest path to the focus (parents 1)

    def files(self, ref: str) -> list[dict[str, Any]]:
        m = self.focus if ref == self.focus.ref else self.versions.get(ref)
        return source_files(m) if m is not None else []


def ancestry(reg: Registry, focus: Manifest) -> Ancestry:
    """Every version upstream of `focus`. Depth is the longest path, so in a layered drawing every version sits
    left of all the versions it fed."""
    a = Ancestry(focus=focus, depth={focus.ref: 0})
    stack = [focus]
    while stack:
        m = stack.pop()
        a.parents[m.ref] = [p.ref for p in m.parents]
        for p in m.parents:
            if p.ref not in a.versions:
                try:
                    pm: Manifest | None = reg.resolve(p.ref)
                except DatakitError:  # a parent removed from this registry: shown, not followed
                    pm = None
                a.versions[p.ref] = pm
                if pm is not None:
                    stack.append(pm)
    changed, rounds = True, 0
    while changed and rounds <= len(a.parents):  # longest-path layering on a DAG: relax until no depth grows
        changed, rounds = False, rounds + 1
        for child, parents in a.parents.items():
            for p in parents:
                d = a.depth.get(child, 0) + 1
                if a.depth.get(p, 0) < d:
                    a.depth[p], changed = d, True
    return a
