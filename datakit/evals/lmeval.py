"""lm-eval-harness beside datakit's own probes: local tasks from probes, and standard tasks, on the same model.

    write_local_task(probes, Path("evals/tasks"), task_name="acme")   # lmeval_tasks.py: acme_choice, acme_knowledge
    out = run_tasks(["acme_choice", "hellaswag"], model=Path("models/base"), adapter=Path("runs/1/adapter"),
                    out_dir=Path("evals/tuned"), include_path=folder)
    out["tasks"]["acme_choice"] == {"status": "ok", "metrics": {"acc,none": 0.8, ...}}
    out["tasks"]["hellaswag"]   == {"status": "unavailable offline", "reason": "..."}

The harness's footguns, each handled here: its response cache is keyed by request, not by model (so it
lives under out_dir per model+adapter fingerprint); HFLM loads the base model's tokenizer unless told
(an adapter folder with its own tokenizer wins); generate_until stops at a blank line unless `until` is
set; a json dataset has only a `train` split; fewshot_as_multiturn defaults to True (pinned False here).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from datakit.errors import DatakitError

# Words in an exception chain that mean "the data or the task's files had to come from the network".
OFFLINE_SIGNS = ("offline", "connection", "couldn't reach", "could not reach", "localentrynotfound",
                 "not found on the hub", "doesn't exist on the hub", "max retries", "name resolution",
                 "datasetnotfound")


def hflm_args(model: Path, adapter: Path | None, *, batch_size: int = 8, device: str | None = None) -> dict[str, Any]:
    """HFLM's arguments: the adapter's own tokenizer (its SFT chat template) when it saved one."""
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    has_tok = adapter is not None and (Path(adapter) / "tokenizer_config.json").exists()
    args: dict[str, Any] = {"pretrained": str(model), "tokenizer": str(adapter if has_tok else model),
                            "batch_size": batch_size, "device": device}
    if adapter is not None:
        args["peft"] = str(adapter)
    return args


def cache_path(out_dir: Path, model: Path, adapter: Path | None) -> Path:
    """Where lm-eval's response cache lives: one folder per model+adapter fingerprint.

    The harness keys cached responses by request only, so a cache shared across models returns one
    model's answers for another. The key is the model's config and weight files (name, size, mtime)
    and the adapter's files' sha256 (adapters are small; two adapters never look alike).
    """
    from datakit.registry.store import sha256_file

    model = Path(model).resolve()
    key: dict[str, Any] = {"model": str(model), "files": {}}
    for p in sorted(model.iterdir()):
        if p.suffix in (".json", ".safetensors", ".bin", ".model"):
            st = p.stat()
            key["files"][p.name] = sha256_file(p) if p.suffix == ".json" else [st.st_size, st.st_mtime_ns]
    if adapter is not None:
        key["adapter"] = {p.name: sha256_file(p) for p in sorted(Path(adapter).iterdir()) if p.is_file()}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return Path(out_dir) / "lm_eval_cache" / digest[:16] / "responses"


def _why(e: BaseException) -> tuple[str, str]:
    """(status, reason) for a task that failed: "unavailable offline" when its data needed the network."""
    chain, seen = [], e
    while seen is not None and len(chain) < 8:
        chain.append(f"{type(seen).__name__}: {seen}")
        seen = seen.__cause__ or seen.__context__
    text = " | ".join(chain)
    if any(s in text.lower() for s in OFFLINE_SIGNS):
        return "unavailable offline", (f"{text[:400]}; its dataset must be downloaded: run once with network "
                                       "access (HF_DATASETS_OFFLINE unset) to fill the HF cache")
    return "failed", text[:400]


def _metrics(res: dict[str, Any], task: str) -> dict[str, Any]:
    """A task's (or group's) metrics, keyed `metric,filter` as lm-eval names them (`alias` etc. dropped)."""
    block = res["results"].get(task) or next(iter(res["results"].values()), {})
    return {k: v for k, v in block.items() if "," in k and isinstance(v, (int, float))}


def run_tasks(tasks: list[str], *, model: Path, adapter: Path | None, out_dir: Path, include_path: Path | None = None,
              limit: int | None = None, apply_chat_template: bool = False, cache: bool = False,
              batch_size: int = 8, device: str | None = None, log_samples: bool = False) -> dict[str, Any]:
    """Run lm-eval tasks on `model` (+ LoRA `adapter`) through `simple_evaluate`, one task at a time so a
    task that cannot load (no network, unknown name) is reported and the rest still run.

    Returns {"tasks": {task: {"status": "ok", "metrics": {...}} | {"status": ..., "reason": ...}},
    "settings": {...}}; the settings record the chat-template and few-shot choices that move scores. With
    `log_samples`, each ok task also lists its documents: {"id", "output", <metric>: value}.
    """
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise DatakitError("lm_eval tasks need lm-eval: pip install 'lm-eval[hf]' (or datakit[eval])") from None
    args = hflm_args(Path(model), Path(adapter) if adapter else None, batch_size=batch_size, device=device)
    use_cache = str(cache_path(out_dir, Path(model), Path(adapter) if adapter else None)) if cache else None
    if use_cache:
        Path(use_cache).parent.mkdir(parents=True, exist_ok=True)
    settings = {"lm_eval_version": getattr(lm_eval, "__version__", "?"), "model_args": args,
                "apply_chat_template": apply_chat_template, "fewshot_as_multiturn": False, "limit": limit,
                "include_path": str(include_path) if include_path else None, "use_cache": use_cache}
    manager = TaskManager(include_path=str(include_path) if include_path else None)
    known = set(manager.all_tasks)
    lm = HFLM(**args)
    out: dict[str, Any] = {}
    for task in tasks:
        if task not in known:
            out[task] = {"status": "unknown task", "reason": f"{task!r} is not in lm-eval's task index; check the "
                         "name (lm-eval ls tasks) or pass include_path to a folder with its YAML"}
            continue
        try:
            res = lm_eval.simple_evaluate(
                model=lm, tasks=[task], task_manager=manager, limit=limit, use_cache=use_cache,
                apply_chat_template=apply_chat_template, fewshot_as_multiturn=False, log_samples=log_samples,
                bootstrap_iters=1000)
        except Exception as e:  # one task's missing data must not sink the others
            status, reason = _why(e)
            out[task] = {"status": status, "reason": reason}
            continue
        out[task] = {"status": "ok", "metrics": _metrics(res, task),
                     "n": (res.get("n-samples") or {}).get(task, {}).get("effective")}
        if log_samples:
            out[task]["samples"] = [_sample(s) for s in (res.get("samples") or {}).get(task, [])]
    return {"tasks": out, "settings": settings}


def _sample(s: dict[str, Any]) -> dict[str, Any]:
    """One logged document: its id, what the model said (generation tasks) and its metric values."""
    resps = s.get("filtered_resps") or s.get("resps") or []
    output = resps[0] if resps and isinstance(resps[0], str) else None
    metrics = {k: v for k, v in s.items() if k in ("acc", "acc_norm", "exact_match", "datakit_match")}
    return {"id": (s.get("doc") or {}).get("id"), "output": output, **metrics}


def run_suite_tasks(tasks: list[str], *, backend: str, model: str | Path, adapter: str | Path | None,
                    out_dir: Path) -> dict[str, Any]:
    """`datakit eval`'s hook: a suite's lm_eval_tasks on the same model and adapter (hf only)."""
    if not tasks:
        return {}
    if backend != "hf":
        return {"tasks": {t: {"status": "needs --backend hf"} for t in tasks}, "settings": {"backend": backend}}
    return run_tasks(tasks, model=Path(model), adapter=Path(adapter) if adapter else None, out_dir=out_dir)
