"""The MLX backend: one stage (cpt | sft | dpo) of LoRA training with mlx-lm's `train()` as the engine.

    result = run_stage(StageJob(stage=spec, base_model=..., data_dir=..., out_dir=...))
What datakit adds around the engine (mlx-lm 0.32 lacks each): assistant-only masks for every turn
(mlx_data), DPO (mlx_dpo), early stopping and the best adapter by validation loss, checkpoints that
hold optimizer state and step so a killed run resumes exactly, and a compatibility check on the
adapter a chained stage starts from. Output: `adapter/` in mlx-lm's format
(`mlx_lm.load(base, adapter_path=...)`), `checkpoints/`, `metrics.jsonl`.
"""

from __future__ import annotations

import math
import os
import shutil
from functools import partial
from pathlib import Path
from typing import Any

from datakit.errors import DatakitError
from datakit.train import mlx_data, mlx_dpo
from datakit.train.job import StageJob, StageResult, StopTraining
from datakit.train.mlx_checkpoint import (
    EXTRA_FILE,
    adapter_config,
    check_compatible,
    latest_checkpoint,
    load_weights_checked,
    restore_checkpoint,
    save_adapter,
    save_checkpoint,
    save_full_model,
)
from datakit.train.plan import make_plan
from datakit.train.recipe import LoraSpec, TrainSpec


def _import_mlx() -> None:
    try:
        import mlx.core  # noqa: F401
        import mlx_lm  # noqa: F401
    except ImportError:
        raise DatakitError("the mlx backend needs mlx and mlx-lm: pip install 'datakit[mlx]' "
                           "(on Linux: pip install 'mlx[cpu]' mlx-lm)") from None


def attach_lora(model: Any, lora: LoraSpec, train_embeddings: bool, method: str = "lora") -> dict:
    """Freeze the base, add LoRA (or DoRA) layers as the spec says; returns mlx-lm's adapter config."""
    import mlx.nn as nn
    from mlx_lm.tuner.utils import linear_to_lora_layers

    n_layers = len(model.layers)
    if lora.num_layers is not None and lora.num_layers > n_layers:
        raise DatakitError(f"lora.num_layers={lora.num_layers} but the model has only {n_layers} layers; "
                           f"lower it or omit it to adapt all layers")
    wanted = set(lora.target_modules)
    # mlx-lm's keys are module paths inside a decoder layer ("self_attn.q_proj"); recipes name the leaf.
    keys = sorted(name for name, _ in model.layers[0].named_modules() if name.rsplit(".", 1)[-1] in wanted)
    found = {k.rsplit(".", 1)[-1] for k in keys}
    if missing := sorted(wanted - found):
        have = sorted({n.rsplit(".", 1)[-1] for n, m in model.layers[0].named_modules() if n and "proj" in n})
        raise DatakitError(f"lora.target_modules {missing} are not in this model's layers; it has {have}")
    if lora.qlora and not any(isinstance(m, nn.QuantizedLinear) for _, m in model.named_modules()):
        raise DatakitError("lora.qlora: the base model is not quantized; on mlx give a quantized folder "
                           "(mlx_lm.convert --hf-path BASE -q) or set qlora: false")
    config = adapter_config(lora, num_layers=lora.num_layers or n_layers, keys=keys, method=method)
    model.freeze()
    linear_to_lora_layers(model, config["num_layers"], config["lora_parameters"], use_dora=method == "dora")
    if train_embeddings:
        mods = [m for name, m in model.named_modules() if name.endswith("embed_tokens") or name == "lm_head"]
        if not mods:
            raise DatakitError("train_embeddings: no embed_tokens or lm_head module in this model")
        for m in mods:
            m.unfreeze()
    return config


def load_model(base_model: Path, adapter_dir: Path) -> tuple[Any, Any]:
    """`mlx_lm.load(base, adapter_path=...)` plus the embedding rows that train_embeddings saved beside
    the LoRA tensors (mlx-lm's loader accepts LoRA tensors only)."""
    import mlx.core as mx
    import mlx_lm

    model, tokenizer = mlx_lm.load(str(base_model), adapter_path=str(adapter_dir))
    if (adapter_dir / EXTRA_FILE).exists():
        model.load_weights(list(mx.load(str(adapter_dir / EXTRA_FILE)).items()), strict=False)
    return model, tokenizer


def lr_schedule(spec: TrainSpec, steps: int) -> Any:
    """constant | cosine | linear over `steps` optimizer steps after a linear warmup from 0 (as mlx-lm)."""
    import mlx.optimizers as optim

    warm = round(spec.warmup * steps)
    rest = max(steps - warm, 1)
    main = {"cosine": lambda: optim.cosine_decay(spec.lr, rest),
            "linear": lambda: optim.linear_schedule(spec.lr, 0.0, rest),
            "constant": lambda: optim.linear_schedule(spec.lr, spec.lr, 1)}[spec.schedule]()
    return optim.join_schedules([optim.linear_schedule(0.0, spec.lr, warm), main], [warm]) if warm else main


class ClippedOptimizer:
    """An mlx optimizer whose `update` first clips the gradients' global norm (torch's clip_grad_norm_ rule:
    scale by max_norm / (norm + 1e-6) when above). mlx-lm's train() calls `update` once per optimizer step,
    after accumulation, where the HF Trainer clips too. Everything else is the wrapped optimizer's."""

    def __init__(self, inner: Any, max_norm: float) -> None:
        self.inner, self.max_norm = inner, max_norm

    def update(self, model: Any, gradients: Any) -> None:
        if self.max_norm > 0:
            import mlx.optimizers as optim

            gradients, _ = optim.clip_grad_norm(gradients, self.max_norm)
        self.inner.update(model, gradients)

    @property
    def state(self) -> Any:  # mlx-lm compiles over it; a restored checkpoint assigns it
        return self.inner.state

    @state.setter
    def state(self, value: Any) -> None:
        self.inner.state = value

    def __getattr__(self, name: str) -> Any:  # init, learning_rate, ...
        return getattr(self.inner, name)


def load_split(job: StageJob, tokenizer: Any, split: str) -> tuple[list, int]:
    path = job.data_dir / f"{split}.jsonl"
    if not path.exists():
        if split == "train":
            raise DatakitError(f"{path}: no training rows; export the dataset with `datakit export --format mlx`")
        return [], 0
    spec = job.stage.train
    examples, dropped = mlx_data.encode_rows(job.stage.stage, mlx_data.read_jsonl(path), tokenizer, spec.max_seq_len)
    if split == "train" and len(examples) < spec.batch_size:
        raise DatakitError(f"{path}: Dataset must have at least batch_size={spec.batch_size} examples but only has "
                           f"{len(examples)}" + (f" ({dropped} dropped: no target tokens within max_seq_len)" if dropped else "")
                           + ". Lower train.batch_size or add rows.")
    return examples, dropped


class StageCallback:
    """mlx-lm TrainingCallback: metrics at every report, validation every eval_every steps, checkpoints
    every save_every, the best adapter by validation loss, and early stopping (raises StopTraining).

    Validation runs here, on optimizer-step boundaries, not through train()'s own steps_per_eval:
    train() validates *before* step k, i.e. the weights after k-1 steps (k-1 micro-steps with grad
    accumulation), which would misname the step of the best adapter."""

    def __init__(self, job: StageJob, model: Any, optimizer: Any, validate: Any, config: dict,
                 state: dict, *, grad_accum: int, last_iter: int) -> None:
        self.job, self.model, self.optimizer, self.validate, self.config = job, model, optimizer, validate, config
        self.state, self.grad_accum, self.last_iter = state, grad_accum, last_iter
        self.offset, self.tokens_at_start = state["step"], state["train_tokens"]
        self.tokens_per_s: float | None = None

    def on_train_loss_report(self, info: dict) -> None:
        it, spec = info["iteration"], self.job.stage.train
        step = self.offset + it // self.grad_accum
        self.state.update(step=step, train_tokens=self.tokens_at_start + int(info["trained_tokens"]))
        self.tokens_per_s = info["tokens_per_second"]
        self.job.metrics.write(step=step, train_loss=info["train_loss"], lr=info["learning_rate"],
                               tokens_per_s=round(self.tokens_per_s, 1), stage=self.job.stage.stage)
        try:
            if self.validate and (step % spec.eval_every == 0 or it == self.last_iter):
                self.on_val_loss_report({"iteration": step, "val_loss": self.validate()})
        finally:  # a checkpoint is due even when validation just stopped the run
            if step % spec.save_every == 0:
                save_checkpoint(self.job.checkpoint_dir, step, self.model, self.optimizer, self.config,
                                self.state, keep_last=spec.keep_last)

    def on_val_loss_report(self, info: dict) -> None:
        step, loss, st = info["iteration"], info["val_loss"], self.state
        self.job.metrics.write(step=step, val_loss=loss, stage=self.job.stage.stage)
        early = self.job.stage.train.early_stopping
        min_delta = early.min_delta if early else 0.0
        if st["best_val_loss"] is None or loss < st["best_val_loss"] - min_delta:
            st.update(best_val_loss=loss, best_step=step, bad_reports=0)
            save_adapter(self.job.checkpoint_dir / "best", self.model, self.config)
            return
        st["bad_reports"] += 1
        if early and st["bad_reports"] >= early.patience:
            raise StopTraining(f"validation loss has not improved by {min_delta} for {early.patience} reports; "
                               f"best {st['best_val_loss']:.4f} at step {st['best_step']}")


def prepare_stage(job: StageJob) -> tuple:
    """Model with LoRA (and adapter_in), tokenized splits, loss; DPO rows get reference log-probs here,
    from the stage's starting weights, before any checkpoint is restored."""
    import mlx.core as mx
    import mlx_lm

    spec = job.stage.train
    mx.random.seed(job.seed)  # LoRA init, dropout
    model, tokenizer = mlx_lm.load(str(job.base_model))
    if job.stage.method == "full":
        if job.adapter_in is not None:
            raise DatakitError(f"a full fine-tuning stage starts from a model folder, not the adapter {job.adapter_in}")
        model.unfreeze()  # every weight trains
        config = {"fine_tune_type": "full"}
    else:
        config = attach_lora(model, job.stage.lora, spec.train_embeddings, job.stage.method)
    config["datakit"] = {"stage": job.stage.model_dump(), "base_model": str(job.base_model), "seed": job.seed,
                         "adapter_in": str(job.adapter_in) if job.adapter_in else None}
    if job.adapter_in is not None:
        inherited = check_compatible(job.adapter_in, config)
        load_weights_checked(model, job.adapter_in)
        config["extra_weights"] = sorted(set(config.get("extra_weights", [])) | set(inherited))
    train_set, dropped = load_split(job, tokenizer, "train")
    valid_set, _ = load_split(job, tokenizer, "valid")
    loss = mlx_data.masked_loss
    if job.stage.stage == "dpo":
        train_set = mlx_dpo.with_reference(model, train_set, spec.batch_size, spec.max_seq_len)
        valid_set = mlx_dpo.with_reference(model, valid_set, spec.batch_size, spec.max_seq_len)
        loss = partial(mlx_dpo.dpo_loss, beta=spec.dpo_beta)
    return model, config, train_set, valid_set, loss, dropped


def run_stage(job: StageJob) -> StageResult:
    """Train one stage; resumes from the newest complete checkpoint under job.checkpoint_dir."""
    _import_mlx()
    import mlx.core as mx
    import mlx.optimizers as optim
    from mlx_lm.tuner.trainer import TrainingArgs, evaluate, train

    spec = job.stage.train
    if spec.packing:
        raise DatakitError("train.packing is not supported by the mlx backend (rows are length-sorted and padded); "
                           "set packing: false or use backend: hf")
    if spec.early_stopping and not (job.data_dir / "valid.jsonl").exists():
        raise DatakitError(f"{job.data_dir}: early_stopping needs a valid.jsonl split; add a split op or remove it")
    mx.reset_peak_memory()
    model, config, train_set, valid_set, loss, dropped = prepare_stage(job)
    plan = make_plan(spec, rows=len(train_set), seed=job.seed,
                     lengths=[max(len(f) for f in ex if isinstance(f, list)) for ex in train_set])
    plan.write(job.out_dir / "plan.json")
    steps = plan.steps
    # bias-corrected like torch's AdamW (mlx's Adam defaults to none, which makes the first steps ~3x larger),
    # clipped at the same global norm as the HF Trainer: one recipe, one optimizer, on either backend
    optimizer = ClippedOptimizer(optim.Adam(learning_rate=lr_schedule(spec, steps), bias_correction=True),
                                 spec.max_grad_norm)
    optimizer.init(model.trainable_parameters())
    state = {"step": 0, "best_val_loss": None, "best_step": None, "bad_reports": 0, "train_tokens": 0, "seed": job.seed}
    margin_start = (mlx_dpo.reward_margin(model, train_set, spec.dpo_beta, spec.batch_size, spec.max_seq_len)
                    if job.stage.stage == "dpo" else None)
    resumed = None
    if (ckpt := latest_checkpoint(job.checkpoint_dir)) is not None:
        state = restore_checkpoint(ckpt, model, optimizer, config)
        resumed = state["step"]
        mx.random.seed(job.seed + resumed)  # fresh dropout stream; the data order is replayed exactly below

    def validate() -> float:  # every row once, the last batch partial; mlx-lm weights batches by tokens
        value = evaluate(model, valid_set, spec.batch_size, num_batches=-1, max_seq_length=spec.max_seq_len,
                         loss=loss, iterate_batches=mlx_data.eval_batches)
        model.train()
        return value

    ga = spec.grad_accum
    last_iter = max(steps - state["step"], 0) * ga  # train() counts micro-batches
    cb = StageCallback(job, model, optimizer, validate if valid_set else None, config, state,
                       grad_accum=ga, last_iter=last_iter)
    if valid_set and resumed is None:
        cb.on_val_loss_report({"iteration": 0, "val_loss": validate()})  # the starting point can be the best
    stopped = False
    if last_iter > 0:
        report = min(10, math.gcd(spec.eval_every, spec.save_every))  # train-loss reports, as HF logs every <=10 steps
        args = TrainingArgs(batch_size=spec.batch_size, iters=last_iter, val_batches=-1, steps_per_report=report * ga,
                            steps_per_eval=last_iter + 1, steps_per_save=last_iter + 1, max_seq_length=spec.max_seq_len,
                            adapter_file=str(job.checkpoint_dir / "last.safetensors"), grad_accumulation_steps=ga,
                            grad_checkpoint=bool(spec.gradient_checkpointing))
        job.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        batches = mlx_data.plan_batches(train_set, plan, skip=state["step"] * ga, normalize=job.stage.stage != "dpo")
        model.train()
        try:
            train(model, optimizer, train_set, None, args, loss=loss, iterate_batches=batches, training_callback=cb)
        except StopTraining as e:
            stopped = True
            job.metrics.write(step=state["step"], event="early_stop", reason=str(e), stage=job.stage.stage)
    return _finish(job, model, config, state, train_set, cb, stopped=stopped, resumed=resumed,
                   dropped=dropped, margin_start=margin_start, optimizer=optimizer)


def _finish(job: StageJob, model: Any, config: dict, state: dict, train_set: list, cb: StageCallback, *,
            stopped: bool, resumed: int | None, dropped: int, margin_start: float | None, optimizer: Any) -> StageResult:
    """adapter/ = the best adapter by validation loss (the last weights with final_adapter: last or no valid split)."""
    import mlx.core as mx

    spec = job.stage.train
    best = job.checkpoint_dir / "best"
    tmp = job.out_dir / f".adapter.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    use_best = spec.final_adapter == "best" and state["best_step"] is not None and (best / "adapters.safetensors").exists()
    if config.get("fine_tune_type") == "full":
        if use_best:
            load_weights_checked(model, best)
        save_full_model(tmp, model, job.base_model)
    elif use_best:
        shutil.copytree(best, tmp)
    else:
        save_adapter(tmp, model, config)
    shutil.rmtree(job.adapter_dir, ignore_errors=True)
    os.replace(tmp, job.adapter_dir)
    extra: dict[str, Any] = {"optimizer_step": int(optimizer.state["step"].item()), "dropped_rows": dropped,
                             "extra_weights_file": EXTRA_FILE if (job.adapter_dir / EXTRA_FILE).exists() else None,
                             "peak_memory_bytes": int(mx.get_peak_memory())}
    if margin_start is not None:
        extra.update(reward_margin_start=margin_start, reward_margin_end=mlx_dpo.reward_margin(
            model, train_set, spec.dpo_beta, spec.batch_size, spec.max_seq_len))
    return StageResult(adapter_dir=job.adapter_dir, steps=state["step"], best_val_loss=state["best_val_loss"],
                       best_step=state["best_step"], stopped_early=stopped, resumed_from_step=resumed,
                       train_tokens=state["train_tokens"], tokens_per_s=cb.tokens_per_s, extra=extra)
