"""Measured peak memory of a training run, to set beside the estimate (datakit/train/memory.py).

CUDA and MLX count their own allocations (`torch.cuda.max_memory_allocated`, `mx.get_peak_memory`); torch on
a CPU counts nothing, so `TorchPeak` watches every tensor storage an op creates (a dispatch mode) and frees it
from the count when the storage dies. It slows a step a little: the HF backend uses it only when asked.
"""

from __future__ import annotations

import importlib
import json
import uuid
import weakref
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class TorchPeak(TorchDispatchMode):
    """Live bytes of CPU tensor storages, starting from `tensors` (a model's parameters and buffers)."""

    def __init__(self, tensors: Any = ()) -> None:
        super().__init__()
        self._live: dict[int, int] = {}
        self._refs: dict[int, weakref.ref] = {}
        self.current = self.peak = 0
        for t in tensors:
            self._add(t)

    def _add(self, t: Any) -> None:
        import torch

        if not isinstance(t, torch.Tensor) or t.device.type != "cpu" or t.is_sparse or t.is_meta:
            return
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key == 0 or key in self._live:
            return
        self._live[key] = storage.nbytes()
        self.current += self._live[key]
        self.peak = max(self.peak, self.current)

        def freed(_ref: Any, key: int = key) -> None:
            self.current -= self._live.pop(key, 0)
            self._refs.pop(key, None)

        self._refs[key] = weakref.ref(storage, freed)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            self._add(t)
        return out


class ProbeCase(BaseModel):
    """One tiny-model training shape whose peak is measured and estimated."""

    backend: Literal["hf", "mlx"]
    method: Literal["lora", "dora", "full"] = "lora"
    hidden: int = 128
    layers: int = 2
    intermediate: int = 352
    embedding_rows: int | None = None
    batch_size: int = 2
    max_seq_len: int = 128
    gradient_checkpointing: bool = False


def probe_spec(case: ProbeCase) -> Any:
    """The 2-step SFT stage a probe trains."""
    from datakit.train.recipe import StageSpec

    return StageSpec.model_validate({
        "stage": "sft", "data": "probe@1", "method": case.method, "lora": {"rank": 8, "alpha": 16, "dropout": 0.05},
        "train": {"iters": 2, "batch_size": case.batch_size, "max_seq_len": case.max_seq_len, "eval_every": 100,
                  "save_every": 100, "gradient_checkpointing": case.gradient_checkpointing}})


def probe_stage(case: ProbeCase, work: Path) -> dict[str, Any]:
    """Train 2 steps of `case` on rows that fill max_seq_len; the measured peak and the estimate, in bytes."""
    import datasets

    from datakit.tiny import build_llama
    from datakit.train.job import StageJob
    from datakit.train.memory import estimate, model_shape

    base = work / f"base-{case.hidden}-{case.layers}-{case.intermediate}-{case.embedding_rows}"
    if not base.is_dir():
        build_llama(base, layers=case.layers, hidden=case.hidden, intermediate=case.intermediate, heads=4, kv_heads=2,
                    max_positions=max(512, case.max_seq_len), embedding_rows=case.embedding_rows)
    rows = [{"messages": [{"role": "user", "content": f"question {i} " + "word " * 8},
                          {"role": "assistant", "content": "answer " * case.max_seq_len}]} for i in range(4)]
    data = work / f"data-{case.backend}"
    if not data.is_dir():
        if case.backend == "mlx":
            data.mkdir(parents=True)
            (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        else:
            datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(data))
    spec = probe_spec(case)
    job = StageJob(stage=spec, base_model=base, data_dir=data, out_dir=work / "out" / uuid.uuid4().hex,
                   track_memory=True)
    backend = importlib.import_module(f"datakit.train.{case.backend}_backend")
    measured = backend.run_stage(job).extra["peak_memory_bytes"]
    shape = model_shape(base)
    est = estimate(shape, spec, case.backend, "cpu")
    return {"case": case.model_dump(), "shape": shape.model_dump(), "measured": measured,
            "estimate": est.total_bytes, "parts": est.parts}
