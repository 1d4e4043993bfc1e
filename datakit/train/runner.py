"""`datakit train RECIPE.yaml`: resolve data and model, lay out the run folder, run each stage.

    runs/<name>/<run-id>/recipe.yaml        the resolved recipe (refs pinned to name@vN)
    runs/<name>/<run-id>/lineage.json       data hashes, base model fingerprint, library versions, seed
    runs/<name>/<run-id>/<i>-<stage>/       data/ (exported), preflight.json, metrics.jsonl, adapter/, checkpoints/
Each stage starts from the previous stage's adapter unless it names its own `resume_adapter`.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field

from datakit import __version__
from datakit.errors import DatakitError
from datakit.registry.store import Registry
from datakit.schemas import Manifest
from datakit.train.memory import MemoryEstimate, estimate_stage
from datakit.train.model_check import model_fingerprint
from datakit.train.recipe import RecipeSpec, StageSpec

log = logging.getLogger(__name__)
BACKEND_PACKAGES = {"mlx": ["mlx", "mlx-lm"], "hf": ["torch", "transformers", "peft", "trl", "accelerate", "datasets"]}
STAGE_KINDS = {"cpt": ("cpt",), "sft": ("sft", "identity", "magpie"), "dpo": ("preference",), "kto": ("kto",)}


class StagePlan(BaseModel):
    index: int
    stage: str
    data_ref: str
    data_hash: str
    kind: str
    rows: dict[str, int]
    dir: str
    adapter_in: str | None
    base_model: str = Field("", description="the model folder this stage trains: the recipe's base_model, or the "
                                            "model/ a previous full fine-tuning stage wrote")
    memory: MemoryEstimate | None = Field(None, description="estimated peak training memory (datakit/train/memory.py)")
    memory_note: str | None = Field(None, description="why there is no memory estimate")
    preflight: dict[str, Any] | None = Field(None, description="a dry run's preflight: ok, rows over max_seq_len, "
                                             "errors (the real run writes the whole report to preflight.json)")


class RunPlan(BaseModel):
    recipe: RecipeSpec
    run_dir: str
    base_model: str
    stages: list[StagePlan]
    problems: list[str]


def _versions(backend: str) -> dict[str, str]:
    out = {"python": platform.python_version(), "datakit": __version__}
    for pkg in BACKEND_PACKAGES[backend]:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "missing"
    return out


def _data(reg: Registry, spec: StageSpec, recipe_dir: Path) -> Manifest:
    """A registry ref, or a mixture YAML (mixed into the registry first, so the run can name its version)."""
    if spec.data.endswith((".yaml", ".yml")):
        from datakit.ops.mix import run_mix

        path = Path(spec.data) if Path(spec.data).is_absolute() else recipe_dir / spec.data
        return run_mix(reg, path).manifest
    return reg.resolve(spec.data)


def _split_rows(reg: Registry, m: Manifest) -> dict[str, int]:
    import polars as pl

    df = reg.scan(m).select(pl.col("split").fill_null("train")).collect() if "split" in reg.scan(m).collect_schema() else None
    if df is None:
        return {"train": m.rows, "valid": 0, "test": 0}
    counts = dict(df.group_by("split").len().iter_rows())
    return {s: int(counts.get(s, 0)) for s in ("train", "valid", "test")}


def plan(reg: Registry, recipe: RecipeSpec, *, recipe_dir: Path, run_id: str | None = None,
         device: str | None = None, free_bytes: int | None = None) -> RunPlan:
    """Check everything that can be checked without training; problems are listed, not raised one by one.
    Each stage gets a memory estimate on this machine's device (or `device` with `free_bytes`, to plan for another)."""
    problems: list[str] = []
    base = Path(recipe.base_model).expanduser()
    if not base.is_dir():
        problems.append(f"base_model {recipe.base_model}: no such folder; give a local model folder (datakit never "
                        "downloads one), or try the recipe on a tiny random model: `datakit tiny-model "
                        f"{recipe.base_model}`")
    stages, prev_dir, prev_method, stage_base = [], None, None, base
    rid = run_id or datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    run_dir = Path(recipe.output_dir) / recipe.name / rid
    for i, st in enumerate(recipe.stages):
        try:
            m = _data(reg, st, recipe_dir)
        except DatakitError as e:
            problems.append(f"stages.{i}.data: {e}")
            continue
        if m.kind not in STAGE_KINDS[st.stage]:
            problems.append(f"stages.{i}: a {st.stage} stage needs {'/'.join(STAGE_KINDS[st.stage])} data; {m.ref} is {m.kind}")
        if st.stage == "kto" and recipe.backend != "hf":
            problems.append(f"stages.{i}: kto stages train with TRL's KTOTrainer on the hf backend (mlx-lm has no "
                            "KTO); set backend: hf, or pair the rows for a dpo stage")
        rows = _split_rows(reg, m)
        if st.train.early_stopping and rows["valid"] == 0:
            problems.append(f"stages.{i}: early stopping needs a validation split; {m.ref} has none "
                            f"(run: datakit split {m.ref} --valid 0.1 --name {m.name}-split)")
        if rows["train"] < st.train.batch_size:
            problems.append(f"stages.{i}: {m.ref} has {rows['train']} training rows, fewer than batch_size={st.train.batch_size}")
        stage_dir = run_dir / f"{i + 1}-{st.stage}"
        chained = prev_dir is not None and prev_method != "full"  # a full stage hands on a model, not an adapter
        adapter_in = st.resume_adapter or (str(prev_dir / "adapter") if chained else None)
        if st.method == "full" and adapter_in:
            problems.append(f"stages.{i}: method full after the adapter stage {i}: a full stage starts from a model "
                            "folder; put full stages first, or train this one as lora/dora")
        if st.resume_adapter and not Path(st.resume_adapter).is_dir():
            problems.append(f"stages.{i}.resume_adapter {st.resume_adapter}: no such adapter folder")
        memory, note = None, None
        if base.is_dir():  # a full stage's model/ does not exist yet; it has the base model's shape
            try:
                memory = estimate_stage(base, st, recipe.backend, device=device, free_bytes=free_bytes)
            except DatakitError as e:  # the preflight reports a broken model folder; the estimate only says why not
                note = f"not estimated: {e}"
        stages.append(StagePlan(index=i, stage=st.stage, data_ref=m.ref, data_hash=m.content_hash, kind=m.kind,
                                rows=rows, dir=str(stage_dir), adapter_in=adapter_in, base_model=str(stage_base),
                                memory=memory, memory_note=note))
        if st.method == "full":
            stage_base = stage_dir / "model"
        prev_dir, prev_method = stage_dir, st.method
    return RunPlan(recipe=recipe, run_dir=str(run_dir), base_model=str(base), stages=stages, problems=problems)


def _backend(name: str) -> Any:
    try:
        return importlib.import_module(f"datakit.train.{name}_backend")
    except ImportError as e:
        raise DatakitError(f"backend {name} needs its extra: pip install 'datakit[{name}]' ({e})") from None


def _write_lineage(p: RunPlan, reg: Registry) -> None:
    run_dir = Path(p.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    pinned = p.recipe.model_copy(deep=True)
    for st, sp in zip(pinned.stages, p.stages):
        st.data = sp.data_ref
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump(pinned.model_dump(mode="json"), sort_keys=False))
    lineage = {
        "recipe": p.recipe.name, "run_dir": p.run_dir, "backend": p.recipe.backend, "seed": p.recipe.seed,
        "registry": str(reg.root.resolve()) if isinstance(reg.root, Path) else reg.root,  # absolute: runs move
        "data": [{"stage": s.stage, "ref": s.data_ref, "content_hash": s.data_hash, "rows": s.rows} for s in p.stages],
        "base_model": {"path": p.base_model, "fingerprint": model_fingerprint(Path(p.base_model))},
        "versions": _versions(p.recipe.backend),
        "recipe_hash": hashlib.sha256(json.dumps(pinned.model_dump(mode="json"), sort_keys=True).encode()).hexdigest(),
        "created": datetime.now(timezone.utc).isoformat(),
    }
    (run_dir / "lineage.json").write_text(json.dumps(lineage, indent=2))


def run(reg: Registry, recipe: RecipeSpec, *, recipe_dir: Path, dry_run: bool = False,
        run_id: str | None = None, launcher: str | None = None, device: str | None = None,
        free_bytes: int | None = None) -> tuple[RunPlan, list[dict[str, Any]]]:
    """Plan, then (unless dry_run) export, preflight and train every stage in order. `launcher` (hf only)
    runs each stage as `LAUNCHER -m datakit.train.hf_backend --job <stage>/job.json`, e.g. `torchrun
    --nproc_per_node 4` or `accelerate launch --config_file recipes/accelerate/fsdp.yaml`."""
    if launcher and recipe.backend != "hf":
        raise DatakitError(f"--launcher runs the hf backend under torchrun/accelerate; recipe {recipe.name} uses "
                           f"{recipe.backend} (a single process): drop --launcher or use --backend hf")
    from datakit.io.export import export_training
    from datakit.train.job import StageJob

    p = plan(reg, recipe, recipe_dir=recipe_dir, run_id=run_id, device=device, free_bytes=free_bytes)
    if p.problems:
        raise DatakitError(f"recipe {recipe.name}: {len(p.problems)} problem(s):\n" + "\n".join(f"  {x}" for x in p.problems))
    if dry_run:  # the same preflight a real run does first, so the plan shows what the run will meet
        for sp, st in zip(p.stages, recipe.stages):
            report = _preflight_report(Path(sp.base_model), sp, st, recipe.backend, reg)
            if report is not None:
                sp.preflight = {"ok": report.ok, "over_max_seq_len": report.stats.get("over_max_seq_len"),
                                "max_seq_len": st.train.max_seq_len, "rows": report.stats.get("rows"),
                                "errors": [f.message for f in report.findings if f.level == "error"]}
        return p, []
    for sp in p.stages:
        if sp.memory is not None and sp.memory.fits is False:  # an estimate: warn, the run may still fit
            from datakit.train.memory import format_estimate

            log.warning("stage %d (%s) may not fit: %s", sp.index + 1, sp.stage, format_estimate(sp.memory))
    backend = _backend(recipe.backend)
    _write_lineage(p, reg)
    results = []
    for sp, st in zip(p.stages, recipe.stages):
        stage_dir = Path(sp.dir)
        data_dir = stage_dir / "data"
        export_training(reg, sp.data_ref, recipe.backend, data_dir)
        _preflight(Path(sp.base_model), sp, st, recipe.backend, reg, stage_dir)
        job = StageJob(stage=st, base_model=Path(sp.base_model), data_dir=data_dir, out_dir=stage_dir,
                       adapter_in=Path(sp.adapter_in) if sp.adapter_in else None, seed=recipe.seed,
                       trust_remote_code=recipe.trust_remote_code)
        if launcher:
            res = _launch(launcher, job, stage_dir)
        else:
            with contextlib.redirect_stdout(sys.stderr):  # engines print progress; stdout stays for results (--json)
                res = backend.run_stage(job)
        summary = {"stage": sp.stage, "dir": sp.dir, "adapter": str(res.adapter_dir), "steps": res.steps,
                   "best_val_loss": res.best_val_loss, "best_step": res.best_step, "stopped_early": res.stopped_early,
                   "resumed_from_step": res.resumed_from_step, "tokens_per_s": res.tokens_per_s, **res.extra}
        if sp.stage != "cpt":  # does the tuned model stop on its end-of-turn token?
            model, adapter = (res.adapter_dir, None) if st.method == "full" else (Path(sp.base_model), res.adapter_dir)
            summary["stop_check"] = _stop_check(recipe.backend, model, adapter, data_dir, stage_dir)
        (stage_dir / "result.json").write_text(json.dumps(summary, indent=2, default=str))
        results.append(summary)
    return p, results


def _launch(launcher: str, job: Any, stage_dir: Path) -> Any:
    """One stage in other processes (torchrun, accelerate); rank 0 writes result.json for us to read."""
    import shlex
    import subprocess

    from datakit.train.hf_backend import job_to_json
    from datakit.train.job import StageResult

    cmd = [*shlex.split(launcher), "-m", "datakit.train.hf_backend", "--job", str(job_to_json(job, stage_dir / "job.json"))]
    (stage_dir / "result.json").unlink(missing_ok=True)
    proc = subprocess.run(cmd, stdout=sys.stderr)  # engines' progress to stderr, as in-process
    if proc.returncode != 0 or not (stage_dir / "result.json").is_file():
        raise DatakitError(f"stage {stage_dir.name}: `{shlex.join(cmd)}` exited {proc.returncode}; its output is "
                           "above. Rerun the same command to resume from the last checkpoint.")
    r = json.loads((stage_dir / "result.json").read_text())
    return StageResult(**{**r, "adapter_dir": Path(r["adapter_dir"])})


def _preflight(base: Path, sp: StagePlan, st: StageSpec, backend: str, reg: Registry, stage_dir: Path) -> None:
    """Refuse to train on data or a model that would fail deep inside loading or teach the model not to stop."""
    from datakit.train import preflight as pf

    report = _preflight_report(base, sp, st, backend, reg)
    if report is None:
        (stage_dir / "preflight.json").write_text(json.dumps({"ran": False}))
        return
    (stage_dir / "preflight.json").write_text(report.model_dump_json(indent=2))
    if not report.ok:
        raise DatakitError(f"preflight failed for stage {sp.index + 1} ({sp.stage}):\n{pf.format_report(report)}")


def _preflight_report(base: Path, sp: StagePlan, st: StageSpec, backend: str, reg: Registry) -> Any:
    """The preflight of the rows the trainer will read: the train and valid splits (test rows are never trained
    on, so they must not count as truncated); None where the preflight module cannot load."""
    try:
        from datakit.train import preflight as pf
    except ImportError:  # preflight lands separately; training still records that it did not run
        return None
    import polars as pl

    from datakit.io.export import training_records

    df = reg.load(sp.data_ref)
    rows = training_records(sp.kind, df.filter(pl.col("split").fill_null("train") != "test"))
    return pf.preflight(base, sp.kind, rows, max_seq_len=st.train.max_seq_len, backend=backend)


def _stop_check(backend: str, base: Path, adapter: Path | None, data_dir: Path, stage_dir: Path) -> dict[str, Any]:
    from datakit.train import stopcheck

    rows = _export_rows(backend, data_dir)
    report = stopcheck.check(backend, base, adapter, rows)
    (stage_dir / "stopcheck.json").write_text(report.model_dump_json(indent=2))
    return {"prompts": report.prompts, "stopped": report.stopped, "stop_token": report.stop_token}


def _export_rows(backend: str, data_dir: Path) -> list[dict[str, Any]]:
    """Validation rows (else training rows) back from the exported stage data."""
    if backend == "mlx":
        for name in ("valid.jsonl", "train.jsonl"):
            if (data_dir / name).exists():
                return [json.loads(x) for x in (data_dir / name).read_text().splitlines()[:16]]
        return []
    import datasets

    dd = datasets.load_from_disk(str(data_dir))
    split = "valid" if "valid" in dd else "train"
    return dd[split].select(range(min(16, len(dd[split])))).to_list()
