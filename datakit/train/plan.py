"""One training plan, executed by both backends: which rows form each micro-batch, in what order, for how many
optimizer steps. MLX and Hugging Face then differ only in the engine, never in what they are fed.

The plan is a stream: each epoch is a seeded permutation of the rows (or, with `group_by_length`, a permutation
whose mega-batches of 50 x batch_size rows are sorted by length, as transformers' LengthGroupedSampler does),
the epochs are concatenated, and the stream is cut into micro-batches of `batch_size` rows, `grad_accum` of them
per optimizer step. No row is ever left out: a batch may straddle two epochs, and every row is seen once per
epoch. The plan is written to the stage folder (`plan.json`: row ids per micro-batch) so two runs can be compared
step by step.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from datakit.errors import DatakitError
from datakit.train.recipe import TrainSpec

MEGA_BATCH = 50  # batches per length-sorted block, as transformers' LengthGroupedSampler


class TrainPlan(BaseModel):
    steps: int = Field(description="optimizer steps")
    batch_size: int
    grad_accum: int
    seed: int
    group_by_length: bool = False
    rows: int = Field(description="rows in the training split the plan indexes")
    epochs: float = Field(description="passes over the rows the stream covers")
    micro_batches: list[list[int]] = Field(description="row indexes of each micro-batch, in training order")

    def step_batches(self, step: int) -> list[list[int]]:
        """The micro-batches of optimizer step `step` (0-based)."""
        return self.micro_batches[step * self.grad_accum:(step + 1) * self.grad_accum]

    @property
    def row_stream(self) -> list[int]:
        return [i for b in self.micro_batches for i in b]

    def write(self, path: Path) -> Path:
        path.write_text(self.model_dump_json())
        return path


def total_steps(spec: TrainSpec, train_rows: int) -> int:
    """Optimizer steps: `iters`, or epochs over the rows at batch_size * grad_accum rows per step."""
    if spec.iters is not None:
        return spec.iters
    return max(1, math.ceil(spec.epochs * math.ceil(train_rows / (spec.batch_size * spec.grad_accum))))


def _epoch(n: int, rng: np.random.Generator, lengths: list[int] | None, batch_size: int) -> np.ndarray:
    order = rng.permutation(n)
    if lengths is None:
        return order
    block = MEGA_BATCH * batch_size
    out = [sorted(order[i:i + block], key=lambda r: -lengths[r]) for i in range(0, n, block)]
    return np.array([r for blk in out for r in blk])


def make_plan(spec: TrainSpec, *, rows: int, seed: int, lengths: list[int] | None = None) -> TrainPlan:
    """The plan for `rows` training rows; `lengths` (tokens per row) only matters with group_by_length."""
    if rows < 1:
        raise DatakitError("the training split has no rows; export a dataset with train rows")
    if spec.group_by_length and (lengths is None or len(lengths) != rows):
        raise DatakitError("group_by_length needs every row's length")
    steps = total_steps(spec, rows)
    need = steps * spec.batch_size * spec.grad_accum
    rng = np.random.default_rng(seed)
    stream: list[int] = []
    while len(stream) < need:
        stream += _epoch(rows, rng, lengths if spec.group_by_length else None, spec.batch_size).tolist()
    stream = stream[:need]
    micro = [stream[i:i + spec.batch_size] for i in range(0, need, spec.batch_size)]
    return TrainPlan(steps=steps, batch_size=spec.batch_size, grad_accum=spec.grad_accum, seed=seed,
                     group_by_length=spec.group_by_length, rows=rows, epochs=round(need / rows, 4), micro_batches=micro)


def read_plan(path: Path) -> TrainPlan:
    return TrainPlan.model_validate(json.loads(path.read_text()))
