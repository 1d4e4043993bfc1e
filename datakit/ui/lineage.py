"""A version's lineage as a graph: its parents back to the source files, the versions made from it, and the
training runs (and their eval reports) that used it; laid out in columns and drawn as SVG on the server.

Runs are found under a runs folder (`runs/<name>/<run-id>/lineage.json`, written by `datakit train`): a run used
a version when its lineage names the version's content hash. A report (`report.json` beside `report.html`,
written by `datakit eval`) belongs to a run when it names the run's folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from datakit.errors import DatakitError
from datakit.registry.store import Registry
from datakit.schemas import Manifest

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


def find_runs(runs_dir: Path | None) -> list[dict[str, Any]]:
    """Every training run under `runs_dir` with its lineage, and the eval reports that name its folder."""
    if runs_dir is None or not runs_dir.is_dir():
        return []
    reports = [(p, _report_text(p)) for p in sorted(runs_dir.rglob("report.json"))]
    out = []
    for lin in sorted(runs_dir.rglob("lineage.json")):
        try:
            data = json.loads(lin.read_text())
        except (OSError, ValueError):
            continue
        names = {str(lin.parent.resolve()), str(data.get("run_dir") or lin.parent)}
        out.append({"dir": lin.parent, "lineage": data, "name": f"{data.get('recipe', '?')} / {lin.parent.name}",
                    "reports": [p.with_name("report.html") for p, text in reports
                                if any(n in text for n in names) and p.with_name("report.html").exists()]})
    return out


def _report_text(path: Path) -> str:
    """A report and the eval results it compares (they name the model and adapter, inside a run's folder)."""
    text = path.read_text(errors="replace")
    try:
        dirs = json.loads(text).get("dirs") or []
    except ValueError:
        return text
    for d in dirs:
        results = Path(d) / "results.json"
        if results.is_file():
            text += results.read_text(errors="replace")
    return text


def lineage_graph(reg: Registry, focus: Manifest, runs: list[dict[str, Any]], children: list[Manifest]) -> Graph:
    g = Graph()
    g.add(Node(focus.ref, focus.ref, f"{focus.kind}, {focus.rows:,} rows, {focus.op}", "focus", f"/v/{focus.ref}"))
    _ancestors(reg, g, focus, 0, set())
    for c in children:
        g.add(Node(c.ref, c.ref, f"{c.kind}, {c.rows:,} rows, {c.op}", "version", f"/v/{c.ref}", 1))
        g.edges.add((focus.ref, c.ref))
    for i, run in enumerate(runs):
        if not any(d.get("content_hash") == focus.content_hash for d in run["lineage"].get("data", [])):
            continue
        key = f"run:{run['dir']}"
        g.add(Node(key, run["name"], "training run", "run", None, 2 if children else 1))
        g.edges.add((focus.ref, key))
        for j, rep in enumerate(run["reports"]):
            rkey = f"report:{rep}"
            g.add(Node(rkey, "eval report", rep.parent.name, "report", f"/report?run={i}&n={j}", g.nodes[key].depth + 1))
            g.edges.add((key, rkey))
    return g


def _ancestors(reg: Registry, g: Graph, m: Manifest, depth: int, seen: set[str]) -> None:
    if m.ref in seen:
        return
    seen.add(m.ref)
    for f in m.params.get("files", []) if isinstance(m.params.get("files"), list) else []:
        if isinstance(f, dict) and f.get("file"):
            key = f"file:{f['file']}:{f.get('sha256', '')}"
            node = g.add(Node(key, Path(str(f["file"])).name, f"file, sha256 {str(f.get('sha256', ''))[:12]}", "file"))
            node.depth = min(node.depth, depth - 1)
            g.edges.add((key, m.ref))
    for p in m.parents:
        try:
            pm = reg.resolve(p.ref)
        except DatakitError:  # a parent removed from this registry: shown, not followed
            g.add(Node(p.ref, p.ref, "not in this registry", "file", None, depth - 1))
            g.edges.add((p.ref, m.ref))
            continue
        node = g.add(Node(pm.ref, pm.ref, f"{pm.kind}, {pm.rows:,} rows, {pm.op}", "version", f"/v/{pm.ref}", depth - 1))
        node.depth = min(node.depth, depth - 1)
        g.edges.add((pm.ref, m.ref))
        _ancestors(reg, g, pm, node.depth, seen)


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
