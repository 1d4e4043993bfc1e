"""Hugging Face backend: one stage (cpt, sft, dpo) with TRL's trainers as engines, LoRA via peft.

    python -m datakit.train.hf_backend --job JOB.json                       # one process
    torchrun --nproc_per_node 2 -m datakit.train.hf_backend --job JOB.json  # data parallel

Data arrives in shape (TRL's `text` / `messages` / `prompt`,`chosen`,`rejected`) and is prepared by
`hf_data` before the trainer sees it (assistant-only labels, rows counted and dropped visibly, the plan's
order). Here: an adapter to continue is checked before loading, and the best adapter by validation loss is
kept. torch, transformers, trl and peft are imported lazily.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from datakit.errors import DatakitError
from datakit.train.hf_data import load_splits, prepare
from datakit.train.job import StageJob, StageResult
from datakit.train.plan import make_plan
from datakit.train.recipe import StageSpec

log = logging.getLogger(__name__)
INSTALL = "pip install 'datakit[hf]' (torch, transformers, trl, peft, datasets)"


# ---- model ------------------------------------------------------------------------------------

def lora_config(spec: StageSpec, num_layers: int) -> Any:
    """peft LoraConfig from the recipe; train_embeddings trains full copies of embed_tokens and lm_head."""
    from peft import LoraConfig

    lora = spec.lora
    layers = None
    if lora.num_layers is not None:
        if lora.num_layers > num_layers:
            raise DatakitError(f"lora.num_layers={lora.num_layers} but the model has {num_layers} decoder layers; "
                               f"set lora.num_layers to at most {num_layers} or omit it")
        layers = list(range(num_layers - lora.num_layers, num_layers))
    return LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=list(lora.target_modules),
                      layers_to_transform=layers, task_type="CAUSAL_LM", bias="none",
                      use_dora=spec.method == "dora", use_rslora=lora.rslora,
                      modules_to_save=["embed_tokens", "lm_head"] if spec.train.train_embeddings else None)


def check_adapter(adapter: Path, model: Any, job: StageJob) -> None:
    """Refuse an adapter that cannot continue on this model with this stage's LoRA settings."""
    from datakit.train.model_check import model_fingerprint

    path = adapter / "adapter_config.json"
    if not path.is_file():
        raise DatakitError(f"{adapter}: not a peft adapter folder (no adapter_config.json); point resume_adapter "
                           "at a stage's adapter/ folder")
    cfg = json.loads(path.read_text())
    where = f"adapter {adapter}"
    if cfg.get("peft_type") != "LORA":
        raise DatakitError(f"{where}: peft_type is {cfg.get('peft_type')!r}, only LORA adapters continue here")
    if bool(cfg.get("use_dora")) != (job.stage.method == "dora"):
        raise DatakitError(f"{where}: use_dora is {bool(cfg.get('use_dora'))} but the stage's method is "
                           f"{job.stage.method}; set method to {'dora' if cfg.get('use_dora') else 'lora'} or start "
                           "a fresh adapter")
    if bool(cfg.get("use_rslora")) != job.stage.lora.rslora:
        raise DatakitError(f"{where}: use_rslora is {bool(cfg.get('use_rslora'))} but lora.rslora is "
                           f"{job.stage.lora.rslora}; match them or start a fresh adapter")
    if cfg.get("r") != job.stage.lora.rank:
        raise DatakitError(f"{where}: rank r={cfg.get('r')} but stage {job.stage.stage} asks lora.rank="
                           f"{job.stage.lora.rank}; set lora.rank: {cfg.get('r')} or start a fresh adapter")
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    targets = cfg.get("target_modules") or []
    if isinstance(targets, list) and not set(targets) <= names:
        raise DatakitError(f"{where}: target modules {sorted(set(targets) - names)} do not exist in {job.base_model}; "
                           "the adapter was trained on another architecture")
    base = Path(cfg.get("base_model_name_or_path") or "")
    if str(base) and (base / "config.json").is_file():
        if model_fingerprint(base).get("config.json") != model_fingerprint(job.base_model).get("config.json"):
            raise DatakitError(f"{where}: trained on {base}, whose config.json differs from base_model "
                               f"{job.base_model}; continue on the base model the adapter was trained on")


def _quantization(job: StageJob) -> dict[str, Any]:
    """lora.qlora on hf: 4-bit NF4 base weights through bitsandbytes, which needs a CUDA GPU."""
    if not job.stage.lora.qlora:
        return {}
    import torch

    try:
        import bitsandbytes
    except ImportError:
        bitsandbytes = None
    if not torch.cuda.is_available() or bitsandbytes is None:
        raise DatakitError("lora.qlora on the hf backend loads 4-bit weights with bitsandbytes on a CUDA GPU; this "
                           f"machine has {'no CUDA GPU' if not torch.cuda.is_available() else 'no bitsandbytes'}. "
                           "Set lora.qlora: false, or use backend mlx with a quantized model folder")
    from transformers import BitsAndBytesConfig

    return {"quantization_config": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                      bnb_4bit_use_double_quant=True,
                                                      bnb_4bit_compute_dtype=torch.bfloat16)}


def load_policy(job: StageJob) -> tuple[Any, Any, Any]:
    """(model, peft_config, tokenizer): a fresh LoRA config, or the chained adapter loaded trainable."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    remote = job.trust_remote_code  # off unless the recipe turns it on
    tok = AutoTokenizer.from_pretrained(str(job.base_model), trust_remote_code=remote)
    dtype = torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    model = AutoModelForCausalLM.from_pretrained(str(job.base_model), dtype=dtype, trust_remote_code=remote,
                                                 **_quantization(job))
    if job.stage.lora.qlora:
        from peft import prepare_model_for_kbit_training

        # casts the unquantized weights (norms, embeddings, head) to fp32: memory.py counts that copy
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=job.stage.train.gradient_checkpointing
                                                is not False)
    if job.stage.method == "full":
        if job.adapter_in is not None:
            raise DatakitError(f"a full fine-tuning stage starts from a model folder, not the adapter {job.adapter_in}")
        return model, None, tok  # no peft config: TRL trains every weight
    if job.adapter_in is None:
        return model, lora_config(job.stage, model.config.num_hidden_layers), tok
    from peft import PeftModel

    check_adapter(job.adapter_in, model, job)
    try:
        model = PeftModel.from_pretrained(model, str(job.adapter_in), is_trainable=True)
    except (RuntimeError, ValueError) as e:  # e.g. size mismatch: hidden sizes differ
        raise DatakitError(f"adapter {job.adapter_in}: does not load onto {job.base_model} ({e})") from None
    return model, None, tok  # TRL continues a PeftModel when given no peft_config


# ---- checkpoints ------------------------------------------------------------------------------

def find_checkpoint(folder: Path) -> tuple[Path, int] | None:
    """The latest resumable checkpoint under `folder` and its step: checkpoint-N folders, or a checkpoint
    whose files were flattened into `folder` (or one level below) by an upload/download round trip."""
    if not folder.is_dir():
        return None
    found = []
    for state in [folder / "trainer_state.json", *folder.glob("*/trainer_state.json")]:
        if state.is_file() and any(state.parent.glob("adapter_model.*")):
            found.append((json.loads(state.read_text()).get("global_step", 0), state.parent))
    if not found:
        return None
    step, path = max(found, key=lambda x: x[0])
    return path, step


# ---- engine -----------------------------------------------------------------------------------

def trainer_args(job: StageJob, has_valid: bool, steps: int) -> Any:
    """SFTConfig or DPOConfig: every value comes from the recipe, the plan (`steps` over rows already in plan
    order, read sequentially) or is a fixed backend choice."""
    import torch

    t, stage = job.stage.train, job.stage.stage
    cuda = torch.cuda.is_available()
    evals = {"eval_strategy": "no"}
    if has_valid:
        # HF keeps the best checkpoint from rotation only when saves land on eval steps; the best
        # adapter itself is kept by BestAdapterCallback either way.
        evals = dict(eval_strategy="steps", eval_steps=t.eval_every, metric_for_best_model="eval_loss",
                     greater_is_better=False,
                     load_best_model_at_end=t.final_adapter == "best" and t.save_every % t.eval_every == 0)
    common = dict(
        output_dir=str(job.checkpoint_dir), learning_rate=t.lr, lr_scheduler_type=t.schedule,
        warmup_steps=t.warmup,  # transformers 5: a float in [0, 1) is a ratio of total steps
        per_device_train_batch_size=t.batch_size, per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum, max_steps=steps, num_train_epochs=1.0,
        train_sampling_strategy="sequential", max_grad_norm=t.max_grad_norm,
        max_length=t.max_seq_len, seed=job.seed, save_strategy="steps", save_steps=t.save_every,
        save_total_limit=t.keep_last, logging_steps=min(10, t.eval_every), report_to="none", disable_tqdm=True,
        use_cpu=not cuda, bf16=cuda and torch.cuda.is_bf16_supported(), 
        activation_checkpointing=cuda if t.gradient_checkpointing is None else t.gradient_checkpointing,
        include_num_input_tokens_seen="non_padding", dataloader_num_workers=0, **evals,
    )
    if stage == "dpo":
        from trl import DPOConfig

        return DPOConfig(beta=t.dpo_beta, **common)
    if stage == "kto":
        from trl import KTOConfig

        return KTOConfig(beta=t.dpo_beta, **common)
    from trl import SFTConfig

    # cpt trains on every token; sft labels arrive already masked, so TRL must not mask again.
    return SFTConfig(packing=t.packing, completion_only_loss=False, assistant_only_loss=False, **common)


def build_trainer(job: StageJob) -> tuple[Any, dict[str, Any]]:
    """The TRL engine, with data prepared and callbacks attached; plus facts found on the way."""
    from transformers import EarlyStoppingCallback

    from datakit.train.hf_callbacks import BestAdapterCallback, MetricsCallback, ProgressCallback

    stage, t = job.stage.stage, job.stage.train
    train_raw, valid_raw = load_splits(job)
    if t.early_stopping is not None and valid_raw is None:
        raise DatakitError(f"{job.data_dir}: early_stopping needs a 'valid' split and the export has none; "
                           "split the dataset (datakit ops split) or drop train.early_stopping")
    if t.packing and stage != "sft":
        raise DatakitError(f"stage {stage}: packing applies to sft only; remove train.packing")
    model, peft_config, tok = load_policy(job)
    train, train_lengths, long_train = prepare(job, tok, train_raw)
    valid, _, long_valid = prepare(job, tok, valid_raw) if valid_raw is not None else (None, [], 0)
    # the plan both backends follow: the trainer reads the rows in its order (sequential sampling)
    plan = make_plan(t, rows=len(train), seed=job.seed, lengths=train_lengths)
    plan.write(job.out_dir / "plan.json")
    train = train.select(plan.row_stream)
    callbacks = [MetricsCallback(job.metrics, stage), ProgressCallback(f"training {stage} ({job.base_model.name})")]
    if valid is not None:
        callbacks.append(BestAdapterCallback(job.out_dir / "best-adapter"))
    if t.early_stopping is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=t.early_stopping.patience,
                                               early_stopping_threshold=t.early_stopping.min_delta))
    args = trainer_args(job, valid is not None, plan.steps)
    if stage == "dpo":
        from trl import DPOTrainer as Engine
    elif stage == "kto":
        from trl import KTOTrainer as Engine
    else:
        from trl import SFTTrainer as Engine
    trainer = Engine(model=model, args=args, train_dataset=train, eval_dataset=valid, processing_class=tok,
                     peft_config=peft_config, callbacks=callbacks)
    if trainer.is_fsdp_enabled:  # one rank cannot save a sharded adapter mid-run; see save_final
        trainer.remove_callback(BestAdapterCallback)
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # with tqdm off it prints every log dict; ours: a bar + metrics.jsonl
    return trainer, {"truncated_rows": long_train + long_valid,
                     "truncated_by_split": {"train": long_train, "valid": long_valid}}


def _quiet_libraries() -> None:
    """datasets' and transformers' own bars for every map and load drown datakit's one bar per stage."""
    import warnings

    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")


def run_stage(job: StageJob) -> StageResult:
    """Train one stage; the best adapter (by validation loss, else the last) lands in job.adapter_dir."""
    try:
        import trl  # noqa: F401
    except ImportError:
        raise DatakitError(f"the hf backend needs trl and peft; {INSTALL}") from None
    _quiet_libraries()
    trainer, extra = build_trainer(job)
    zero = trainer.is_world_process_zero()
    if extra["truncated_rows"] and zero:
        log.warning("%d rows are longer than max_seq_len=%d and will be cut (%s)", extra["truncated_rows"],
                    job.stage.train.max_seq_len, ", ".join(f"{k} {v}" for k, v in extra["truncated_by_split"].items()))
        job.metrics.write(step=0, stage=job.stage.stage, warning="truncated_rows",
                          max_seq_len=job.stage.train.max_seq_len, **extra)
    resume = find_checkpoint(job.checkpoint_dir)
    if resume is None and zero:  # a best adapter left by an earlier, unrelated run must not win
        shutil.rmtree(job.out_dir / "best-adapter", ignore_errors=True)
    out, peak = _train_measured(trainer, job, resume)
    state, best_info = trainer.state, save_final(trainer, job)
    runtime = out.metrics.get("train_runtime") or 0
    steps_this_run = state.global_step - (resume[1] if resume else 0)
    tokens = int(state.num_input_tokens_seen or 0)
    # this session's rate: tokens counted before the checkpoint were not trained in this runtime
    before = json.loads((resume[0] / "trainer_state.json").read_text()).get("num_input_tokens_seen", 0) if resume else 0
    return StageResult(
        adapter_dir=job.adapter_dir, steps=state.global_step,
        best_val_loss=best_info["val_loss"] if best_info else None, best_step=best_info["step"] if best_info else None,
        stopped_early=_early_stopped(trainer),
        resumed_from_step=resume[1] if resume else None, train_tokens=tokens,
        tokens_per_s=round((tokens - before) / runtime, 1) if runtime and steps_this_run > 0 else None,
        extra={**extra, "world_size": trainer.args.world_size, "fsdp": bool(trainer.is_fsdp_enabled),
               "train_loss_mean": out.training_loss, "peak_memory_bytes": peak},
    )


def _train_measured(trainer: Any, job: StageJob, resume: tuple[Path, int] | None) -> tuple[Any, int | None]:
    """trainer.train(), with the peak bytes it allocated: CUDA counts its own; on a CPU only when the job asks
    (job.track_memory), since counting costs time."""
    import torch

    where = str(resume[0]) if resume else None
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        out = trainer.train(resume_from_checkpoint=where)
        return out, int(torch.cuda.max_memory_allocated())
    if not job.track_memory:
        return trainer.train(resume_from_checkpoint=where), None
    from datakit.train.memory_probe import TorchPeak

    model = trainer.model
    with TorchPeak([*model.parameters(), *model.buffers()]) as probe:
        out = trainer.train(resume_from_checkpoint=where)
    return out, probe.peak


def save_final(trainer: Any, job: StageJob) -> dict | None:
    """Write the best adapter (the last with final_adapter: last, or with no validation) to job.adapter_dir; returns the
    best's step and val_loss (reported either way)."""
    from datakit.train.hf_callbacks import save_adapter

    best = job.out_dir / "best-adapter"
    info = json.loads((best / "best.json").read_text()) if (best / "best.json").is_file() else None
    want_last = job.stage.train.final_adapter == "last"
    if trainer.is_world_process_zero() and job.adapter_dir.exists():
        shutil.rmtree(job.adapter_dir)
    if trainer.is_fsdp_enabled:
        # Sharded weights: every rank takes part in gathering them; the best is loaded when
        # load_best_model_at_end could be on (save_every a multiple of eval_every).
        trainer.save_model(str(job.adapter_dir))  # the last weights unless load_best_model_at_end loaded the best
        st = trainer.state
        info = {"step": st.best_global_step, "val_loss": st.best_metric} if st.best_metric is not None else None
    elif trainer.is_world_process_zero():
        if info is not None and not want_last:
            shutil.copytree(best, job.adapter_dir, ignore=shutil.ignore_patterns("best.json"))
        else:
            save_adapter(trainer.model, job.adapter_dir)
    if trainer.is_world_process_zero():
        trainer.processing_class.save_pretrained(str(job.adapter_dir))
    return info


def _early_stopped(trainer: Any) -> bool:
    from transformers import EarlyStoppingCallback

    return any(isinstance(c, EarlyStoppingCallback) and c.early_stopping_patience_counter >= c.early_stopping_patience
               for c in trainer.callback_handler.callbacks)


# ---- script entry (torchrun) ------------------------------------------------------------------

def job_to_json(job: StageJob, path: Path) -> Path:
    """The StageJob as JSON so another process (torchrun) can rebuild it."""
    data = {"stage": job.stage.model_dump(), "base_model": str(job.base_model), "data_dir": str(job.data_dir),
            "out_dir": str(job.out_dir), "adapter_in": str(job.adapter_in) if job.adapter_in else None,
            "seed": job.seed, "trust_remote_code": job.trust_remote_code}
    path.write_text(json.dumps(data, indent=2))
    return path


def job_from_json(path: Path) -> StageJob:
    d = json.loads(path.read_text())
    return StageJob(stage=StageSpec.model_validate(d["stage"]), base_model=Path(d["base_model"]),
                    data_dir=Path(d["data_dir"]), out_dir=Path(d["out_dir"]),
                    adapter_in=Path(d["adapter_in"]) if d.get("adapter_in") else None, seed=d.get("seed", 0),
                    trust_remote_code=bool(d.get("trust_remote_code", False)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datakit.train.hf_backend", description=__doc__.splitlines()[0])
    parser.add_argument("--job", type=Path, required=True, help="JOB.json written by job_to_json")
    job = job_from_json(parser.parse_args(argv).job)
    result = run_stage(job)
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_rank() == 0:
        payload = {k: (str(v) if isinstance(v, Path) else v) for k, v in result.__dict__.items()}
        (job.out_dir / "result.json").write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
