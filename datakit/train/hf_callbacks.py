"""Trainer callbacks for the HF backend: report metrics to metrics.jsonl and keep the best adapter.

Both only act on the world's process zero, so a torchrun launch writes one metrics file and one
adapter. Imported lazily by `hf_backend` (transformers is a heavy dependency).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from datakit.train.job import MetricsLog


class MetricsCallback(TrainerCallback):
    """Every trainer log (train or eval) becomes one metrics.jsonl row in datakit's schema."""

    def __init__(self, metrics: MetricsLog, stage: str) -> None:
        self.metrics, self.stage = metrics, stage
        self._last: tuple[float, int] | None = None  # (time, tokens seen) at the previous train log

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._last = (time.perf_counter(), state.num_input_tokens_seen or 0)

    def _tokens_per_s(self, state: Any) -> float | None:
        now, seen = time.perf_counter(), state.num_input_tokens_seen or 0
        rate = None
        if self._last is not None and seen > self._last[1] and now > self._last[0]:
            rate = round((seen - self._last[1]) / (now - self._last[0]), 1)
        self._last = (now, seen)
        return rate

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        row: dict[str, Any] = {"step": state.global_step, "stage": self.stage, "world_size": args.world_size}
        if "eval_loss" in logs:
            row["val_loss"] = logs["eval_loss"]
        if "loss" in logs:
            row.update(train_loss=logs["loss"], lr=logs.get("learning_rate"), tokens_per_s=self._tokens_per_s(state))
        if "train_loss" in logs:  # the end-of-training summary: the mean over the run
            row["train_loss_mean"] = logs["train_loss"]
        # DPO's and KTO's preference metrics (rewards/margins, eval_rewards/accuracies, logps/chosen, kl ...) under
        # flat names
        row.update({k.replace("/", "_"): v for k, v in logs.items() if "rewards/" in k or "logps/" in k or k == "kl"})
        if len(row) > 3:
            self.metrics.write(**row)


class BestAdapterCallback(TrainerCallback):
    """Save the adapter each time validation loss improves, so the best survives checkpoint rotation.

    HF keeps the best *checkpoint* only when save_every is a multiple of eval_every; a LoRA adapter is
    small, so saving it on every improvement works for any recipe.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict | None = None, **kwargs: Any) -> None:
        value = (metrics or {}).get("eval_loss")
        # Runs before the Trainer updates state.best_metric, so best_metric is still the previous best.
        if value is None or (state.best_metric is not None and not value < state.best_metric):
            return
        if state.is_world_process_zero:
            save_adapter(kwargs["model"], self.folder)
            (self.folder / "best.json").write_text(json.dumps({"step": state.global_step, "val_loss": value}))


def save_adapter(model: Any, folder: Path) -> None:
    """Only the trained adapter (DPO adds a frozen "ref" copy when it continues a PeftModel); a fully fine-tuned
    model saves whole, as a folder `from_pretrained` loads."""
    folder.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "peft_config"):
        model.save_pretrained(str(folder), selected_adapters=["default"])
    else:
        model.save_pretrained(str(folder))


class ProgressCallback(TrainerCallback):
    """The stage's steps with the latest loss on stderr (TRL's tqdm is off): a bar on a terminal, plain lines
    every few seconds elsewhere (`datakit.progress`)."""

    def __init__(self, label: str) -> None:
        self.label, self._bar, self._update = label, None, None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        from datakit.progress import progress_bar

        self._bar = progress_bar(self.label, state.max_steps, fields={"loss": None})
        self._update = self._bar.__enter__()
        self._update(state.global_step)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._update is not None:
            self._update(state.global_step)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        if self._update is not None and logs and "loss" in logs:
            self._update(state.global_step, loss=float(logs["loss"]))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar, self._update = None, None
