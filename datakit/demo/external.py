"""The real external datasets (shared/data/external), ingested: the demo's first step, and
`datakit demo --ingest-only` on its own."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from datakit.errors import DatakitError
from datakit.io.ingest import ingest
from datakit.registry.store import Registry

# file, dataset name, kind, format: what each external file is (see shared/data/external/README.md)
EXTERNAL = [
    ("alpaca_en_demo.json", "alpaca-en", "sft", "auto"),
    ("alpaca_zh_demo.json", "alpaca-zh", "sft", "auto"),
    ("identity.json", "identity-seeds", "sft", "auto"),
    ("dpo_en_demo.json", "dpo-en", "preference", "auto"),
    ("glaive_toolcall_en_demo.json", "glaive-toolcall", "sft", "auto"),
    ("c4_demo.jsonl", "c4", "cpt", "auto"),
    ("wiki_demo.txt", "wiki", "cpt", "lines"),
]


def ingest_external(reg: Registry, data: Path, console: Console) -> None:
    if not data.is_dir():
        raise DatakitError(f"{data}: demo data folder not found; pass --data path/to/shared/data/external")
    console.print(f"registry: {reg.root}")
    for filename, name, kind, fmt in EXTERNAL:
        res = ingest(reg, [data / filename], name=name, kind=kind, fmt=fmt)
        state = "new" if res.created else "unchanged"
        console.print(f"  {filename:32} -> {res.manifest.ref:22} {kind:10} {res.kept:5} kept {res.rejected:3} rejected ({state})")
