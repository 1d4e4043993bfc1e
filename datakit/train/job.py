"""What the runner hands a backend for one stage, and what the backend hands back.

A backend is a module with `run_stage(job: StageJob) -> StageResult`. It trains from
`job.base_model` (plus `job.adapter_in` when chaining), reads the exported data in
`job.data_dir`, writes its adapter, checkpoints and metrics under `job.out_dir`, and never
touches the registry.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datakit.train.recipe import StageSpec


class StopTraining(Exception):
    """Raised from a report callback to end training early (mlx-lm's callbacks cannot stop it)."""


@dataclass
class MetricsLog:
    """Appends one JSON object per report step to metrics.jsonl (train/val loss, lr, tokens/s)."""

    path: Path

    def write(self, **row: Any) -> None:
        row.setdefault("time", round(time.time(), 3))
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    def rows(self) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.path.read_text().splitlines()] if self.path.exists() else []


@dataclass
class StageJob:
    stage: StageSpec
    base_model: Path
    data_dir: Path  # mlx: train.jsonl / valid.jsonl [/ test.jsonl]; hf: a datasets DatasetDict on disk
    out_dir: Path  # adapter/, checkpoints/, metrics.jsonl go here
    adapter_in: Path | None = None  # adapter folder to start from (the previous stage's adapter/)
    seed: int = 0
    track_memory: bool = False  # hf on a CPU: count peak tensor bytes (slower); CUDA and MLX always count
    trust_remote_code: bool = False  # the recipe's switch: run a model folder's own Python code (hf only)
    metrics: MetricsLog = field(init=False)

    def __post_init__(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.metrics = MetricsLog(self.out_dir / "metrics.jsonl")

    @property
    def adapter_dir(self) -> Path:
        """The stage's trained weights: adapter/ (lora, dora), or model/ (method full: a whole model folder)."""
        return self.out_dir / ("model" if self.stage.method == "full" else "adapter")

    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / "checkpoints"


@dataclass
class StageResult:
    adapter_dir: Path
    steps: int
    best_val_loss: float | None = None
    best_step: int | None = None
    stopped_early: bool = False
    resumed_from_step: int | None = None
    train_tokens: int = 0
    tokens_per_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
