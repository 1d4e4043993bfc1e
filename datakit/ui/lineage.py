"""A version's lineage as a graph: its parents back to the source files, the versions made from it, and the
training runs (and their eval reports) that used it; laid out in columns and drawn as SVG on the server.

Runs and the reports that judged them come from `datakit.train.run_index` (the index `datakit runs` prints): a run
used a version when its lineage names the version's content hash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from datakit.registry.ancestry import ancestry
from datakit.registry.store import Registry
from datakit.schemas import Manifest
from datakit.train.run_index import RunRecord

COL_W, ROW_H, BOX_W, BOX_H, MARGIN = 230, 64, 200, 44, 16


@dataclass
class Node:
    key: str
    label: str
    sub: str
    kind: str                 # file, version, focus, run, report
    href: str | None = None
    depth: int = 0            # column: parents left of the focus (negative), children and runs right


@dataclass
class Graph:
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: set[tuple[str, str]] = field(default_factory=set)

    def add(self, node: Node) -> Node:
        return self.nodes.setdefault(node.key, node)


def lineage_graph(reg: Registry, focus: Manifest, runs: list[RunRecord], children: list[Manifest]) -> Graph:
    g = Graph()
    g.add(Node(focus.ref, focus.ref, f"{focus.kind}, {focus.rows:,} rows, {focus.op}", "focus", f"/v/{focus.ref}"))
    _ancestors(reg, g, focus)
    for c in children:
        g.add(Node(c.ref, c.ref, f"{c.kind}, {c.rows:,} rows, {c.op}", "version", f"/v/{c.ref}", 1))
        g.edges.add((focus.ref, c.ref))
    for i, run in enumerate(runs):
        if not any(s.content_hash == focus.content_hash for s in run.stages):
            continue
        key = f"run:{run.dir}"
        g.add(Node(key, run.name, "training run", "run", None, 2 if children else 1))
        g.edges.add((focus.ref, key))
        for j, rep in enumerate(run.reports):
            rkey = f"report:{rep.path}"
            g.add(Node(rkey, "eval report", f"{rep.as_name}: {rep.verdict or 'compared'}", "report",
                       f"/report?run={i}&n={j}" if rep.html else None, g.nodes[key].depth + 1))
            g.edges.add((key, rkey))
    return g


def _ancestors(reg: Registry, g: Graph, focus: Manifest) -> None:
    anc = ancestry(reg, focus)
    for ref, pm in anc.versions.items():
        sub = f"{pm.kind}, {pm.rows:,} rows, {pm.op}" if pm is not None else "not in this registry"
        g.add(Node(ref, ref, sub, "version" if pm is not None else "file", f"/v/{ref}" if pm else None, -anc.depth[ref]))
    for child, parents in anc.parents.items():
        g.edges.update((p, child) for p in parents)
        for f in anc.files(child):
            key = f"file:{f['file']}:{f.get('sha256', '')}"
            node = g.add(Node(key, Path(str(f["file"])).name, f"file, sha256 {str(f.get('sha256', ''))[:12]}", "file"))
            node.depth = min(node.depth, -anc.depth[child] - 1)
            g.edges.add((key, child))


def to_svg(g: Graph) -> str:
    """Columns by depth, nodes stacked in each; edges as curves from a node's right side to the next's left."""
    depths = sorted({n.depth for n in g.nodes.values()})
    col = {d: i for i, d in enumerate(depths)}
    stacks: dict[int, list[Node]] = {}
    for n in sorted(g.nodes.values(), key=lambda n: (n.depth, n.kind != "focus", n.label)):
        stacks.setdefault(n.depth, []).append(n)
    pos = {n.key: (MARGIN + col[d] * COL_W, MARGIN + i * ROW_H) for d, ns in stacks.items() for i, n in enumerate(ns)}
    width = MARGIN * 2 + len(depths) * COL_W
    height = MARGIN * 2 + max(len(ns) for ns in stacks.values()) * ROW_H
    # scales down to the page's width (a deep lineage stays whole on screen), never up
    parts = [f'<svg class="lineage" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             f'aria-label="lineage graph" style="max-width: 100%; height: auto">']
    for a, b in sorted(g.edges):
        (x1, y1), (x2, y2) = pos[a], pos[b]
        x1, y1, y2 = x1 + BOX_W, y1 + BOX_H / 2, y2 + BOX_H / 2
        mid = (x1 + x2) / 2
        parts.append(f'<path d="M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}" class="edge"/>')
    for key, n in g.nodes.items():
        x, y = pos[key]
        box = (f'<g class="node {n.kind}"><rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6"/>'
               f'<text x="{x + 8}" y="{y + 18}" class="label">{escape(n.label[:30])}</text>'
               f'<text x="{x + 8}" y="{y + 34}" class="sub">{escape(n.sub[:36])}</text></g>')
        parts.append(f'<a href="{escape(n.href)}">{box}</a>' if n.href else box)
    parts.append("</svg>")
    return "".join(parts)
