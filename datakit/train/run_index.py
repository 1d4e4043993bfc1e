"""The training runs under a runs folder: what each trained on, from which base model, how far it got, and the
eval reports that judged it. Read by `datakit runs ls|show` and the web UI's lineage page.

A run is a folder holding lineage.json (written by `datakit train`): runs/<recipe>/<run-id>/. A comparison report
(report.json, written by `datakit compare`) judged a run when a compared model or adapter lies inside that folder;
the report's verdict for that candidate is the run's verdict there.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from datakit.errors import DatakitError


class StageState(BaseModel):
    index: int
    stage: str
    ref: str = Field(description="the data version the stage trained on, pinned (name@vN)")
    content_hash: str
    dir: str
    done: bool = Field(description="the stage's adapter (or model, for method full) was written")
    steps: int | None = Field(None, description="last step logged in metrics.jsonl")
    train_loss: float | None = Field(None, description="last training loss logged")
    val_loss: float | None = Field(None, description="last validation loss logged")


class ReportLink(BaseModel):
    path: str = Field(description="report.json")
    html: str | None = Field(None, description="report.html beside it, when present")
    as_name: str = Field(description="the name the report gives this run's model")
    verdict: str | None = Field(None, description="the report's verdict for this run (pass/fail/underpowered), if "
                                                  "it was a gated candidate")
    report_verdict: str | None = Field(None, description="the whole comparison's verdict")


class RunRecord(BaseModel):
    id: str = Field(description="<recipe>/<run-id>")
    dir: str
    recipe: str
    backend: str
    created: str | None = None
    seed: int | None = None
    registry: str | None = Field(None, description="the registry the data versions were read from")
    base_model: dict[str, Any] = Field(default_factory=dict, description="path and fingerprint (a hash per config, "
                                                                        "weight and tokenizer file)")
    base_digest: str = Field("", description="one hash of the whole fingerprint: two runs share it only when "
                                             "every config, weight and tokenizer file was the same")
    stages: list[StageState] = Field(default_factory=list)
    reports: list[ReportLink] = Field(default_factory=list)
    lineage: dict[str, Any] = Field(default_factory=dict, description="lineage.json as written")

    @property
    def name(self) -> str:
        return f"{self.recipe} / {Path(self.dir).name}"

    @property
    def status(self) -> str:
        done = sum(s.done for s in self.stages)
        return "trained" if self.stages and done == len(self.stages) else f"{done} of {len(self.stages)} stages done"


def fingerprint_digest(fingerprint: Any) -> str:
    """The base model's fingerprint (file -> hash) as one short hash, for a column or a line."""
    if not fingerprint:
        return "?"
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]


def _last_losses(metrics: Path) -> tuple[int | None, float | None, float | None]:
    step = train = val = None
    if metrics.is_file():
        for line in metrics.read_text(errors="replace").splitlines():
            try:
                row = json.loads(line)
            except ValueError:  # a line cut by a crash: the rows before it still count
                continue
            step = row.get("step", step)
            train = row.get("train_loss", train)
            val = row.get("val_loss", val)
    return step, train, val


def _stages(run_dir: Path, lineage: dict[str, Any]) -> list[StageState]:
    out = []
    for i, d in enumerate(lineage.get("data") or []):
        sdir = run_dir / f"{i + 1}-{d.get('stage', '?')}"
        step, train, val = _last_losses(sdir / "metrics.jsonl")
        out.append(StageState(index=i, stage=str(d.get("stage", "?")), ref=str(d.get("ref", "?")),
                              content_hash=str(d.get("content_hash", "")), dir=str(sdir),
                              done=(sdir / "adapter").is_dir() or (sdir / "model").is_dir(),
                              steps=step, train_loss=train, val_loss=val))
    return out


def _inside(path: str | None, folder: Path) -> bool:
    if not path:
        return False
    try:
        return Path(path).resolve().is_relative_to(folder.resolve())
    except (OSError, ValueError):
        return False


def _reports(runs_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for p in sorted(runs_dir.rglob("report.json")):
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("runs"), list):
            found.append((p, data))
    return found


def _links(run_dir: Path, reports: list[tuple[Path, dict[str, Any]]]) -> list[ReportLink]:
    links = []
    for path, data in reports:
        for info in data["runs"]:
            if isinstance(info, dict) and (_inside(info.get("adapter"), run_dir) or _inside(info.get("model"), run_dir)):
                html = path.with_name("report.html")
                links.append(ReportLink(path=str(path), html=str(html) if html.is_file() else None,
                                        as_name=str(info.get("name")),
                                        verdict=(data.get("candidate_verdicts") or {}).get(info.get("name")),
                                        report_verdict=data.get("verdict")))
                break
    return links


def find_runs(runs_dir: Path | None) -> list[RunRecord]:
    """Every run under `runs_dir` (oldest first), with its stages' progress and the reports that judged it."""
    if runs_dir is None or not Path(runs_dir).is_dir():
        return []
    runs_dir = Path(runs_dir)
    reports = _reports(runs_dir)
    out = []
    for lin in runs_dir.rglob("lineage.json"):
        try:
            data = json.loads(lin.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        run_dir = lin.parent
        recipe = str(data.get("recipe") or run_dir.parent.name)
        out.append(RunRecord(id=f"{recipe}/{run_dir.name}", dir=str(run_dir), recipe=recipe,
                             backend=str(data.get("backend", "?")), created=data.get("created"), seed=data.get("seed"),
                             registry=data.get("registry"), base_model=data.get("base_model") or {},
                             base_digest=fingerprint_digest((data.get("base_model") or {}).get("fingerprint")),
                             stages=_stages(run_dir, data), reports=_links(run_dir, reports), lineage=data))
    return sorted(out, key=lambda r: (r.created or "", r.id))


def resolve_run(runs_dir: Path, key: str) -> RunRecord:
    """A run by folder path, `<recipe>/<run-id>`, `<run-id>`, or `<recipe>` (its latest run)."""
    runs = find_runs(runs_dir)
    if (Path(key) / "lineage.json").is_file():  # a folder: found under runs_dir (with its reports), or on its own
        want = Path(key).resolve()
        hit = [r for r in runs if Path(r.dir).resolve() == want]
        hit = hit or [r for r in find_runs(want.parent.parent) if Path(r.dir).resolve() == want]
    else:
        hit = [r for r in runs if key in (r.id, Path(r.dir).name)] or [r for r in runs if r.recipe == key][-1:]
    if not hit:
        known = ", ".join(r.id for r in runs[-10:]) or f"none under {runs_dir}"
        raise DatakitError(f"no training run {key!r} under {runs_dir}; known runs: {known} (list them with "
                           "`datakit runs ls --runs FOLDER`)")
    if len(hit) > 1:
        raise DatakitError(f"{key!r} names {len(hit)} runs: {', '.join(r.id for r in hit)}; give <recipe>/<run-id>")
    return hit[0]
