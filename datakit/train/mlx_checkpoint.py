"""Adapters and checkpoints on disk for the mlx backend, and the checks mlx-lm skips when it loads them.

An adapter folder is mlx-lm's format (adapters.safetensors + adapter_config.json) plus, when embedding
rows were trained, embeddings.safetensors. A checkpoint folder `step-0000050/` adds optimizer.safetensors
and trainer_state.json; the state file is written last, so a folder without it is incomplete.
mlx-lm resumes weights only (`model.load_weights(..., strict=False)`), which silently accepts an
adapter of another rank or layer set; here every mismatch is an error that names it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from datakit.errors import DatakitError
from datakit.train.recipe import LoraSpec

EXTRA_FILE = "embeddings.safetensors"  # full embedding / lm_head rows (train_embeddings); not LoRA tensors
_LORA_LEAVES = ("lora_a", "lora_b", "m")  # m: DoRA's magnitude, saved with the LoRA tensors as mlx-lm expects


def lora_scale(lora: LoraSpec) -> float:
    """alpha / rank, or alpha / sqrt(rank) with rslora (peft's use_rslora)."""
    return lora.alpha / (lora.rank ** 0.5 if lora.rslora else lora.rank)


def adapter_config(lora: LoraSpec, *, num_layers: int, keys: list[str], method: str = "lora") -> dict:
    """mlx-lm's adapter_config.json keys (fine_tune_type lora or dora; `scale` as lora_scale)."""
    return {"fine_tune_type": method, "num_layers": num_layers,
            "lora_parameters": {"rank": lora.rank, "scale": lora_scale(lora), "dropout": lora.dropout,
                                "keys": keys}}


def _weights(model: Any, config: dict) -> tuple[dict, dict]:
    """(LoRA tensors, other tensors to save): trainable non-LoRA ones and those inherited from adapter_in."""
    from mlx.utils import tree_flatten

    trainable = dict(tree_flatten(model.trainable_parameters()))
    if config.get("fine_tune_type") == "full":  # every weight, in the one file checkpoints restore from
        return trainable, {}
    lora = {k: v for k, v in trainable.items() if k.rsplit(".", 1)[-1] in _LORA_LEAVES}
    names = (set(trainable) - set(lora)) | set(config.get("extra_weights", []))
    params = dict(tree_flatten(model.parameters())) if names else {}
    return lora, {k: params[k] for k in sorted(names)}


def save_adapter(folder: Path, model: Any, config: dict) -> None:
    """Write the adapter to `folder` atomically (a temp folder renamed into place)."""
    import mlx.core as mx

    lora, extra = _weights(model, config)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    mx.save_safetensors(str(tmp / "adapters.safetensors"), lora)
    if extra:
        mx.save_safetensors(str(tmp / EXTRA_FILE), extra)
    (tmp / "adapter_config.json").write_text(json.dumps({**config, "extra_weights": sorted(extra)}, indent=2))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


MODEL_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "chat_template.jinja", "tokenizer.model")


def save_full_model(folder: Path, model: Any, base_model: Path) -> None:
    """A fully fine-tuned model as a model folder (weights, config and tokenizer from the base) that mlx-lm and
    transformers both load."""
    from mlx_lm.utils import save_model

    folder.mkdir(parents=True, exist_ok=True)
    save_model(folder, model)
    for name in MODEL_FILES:
        if (base_model / name).is_file():
            shutil.copy2(base_model / name, folder / name)


def save_checkpoint(ckpt_dir: Path, step: int, model: Any, optimizer: Any, config: dict, state: dict,
                    *, keep_last: int) -> Path:
    """Adapter + optimizer state + trainer state (step, best loss, patience, seed); keeps the newest `keep_last`."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    tmp = ckpt_dir / f".step-{step:07d}.tmp"
    save_adapter(tmp, model, config)
    mx.save_safetensors(str(tmp / "optimizer.safetensors"), dict(tree_flatten(optimizer.state)))
    (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2))
    final = ckpt_dir / f"step-{step:07d}"
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in sorted(ckpt_dir.glob("step-*"))[:-keep_last]:
        shutil.rmtree(old)
    return final


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    done = sorted(p for p in ckpt_dir.glob("step-*") if (p / "trainer_state.json").exists())
    return done[-1] if done else None


def check_compatible(adapter_dir: Path, config: dict) -> list[str]:
    """Raise if the adapter at `adapter_dir` was trained with other LoRA settings than `config`;
    returns the names of its non-LoRA tensors (carried into this stage's adapter)."""
    path = adapter_dir / "adapter_config.json"
    if not path.exists():
        raise DatakitError(f"{adapter_dir}: no adapter_config.json; is this an mlx adapter folder?")
    theirs = json.loads(path.read_text())
    tl, ol = theirs.get("lora_parameters") or {}, config["lora_parameters"]
    problems = []
    if theirs.get("fine_tune_type", "lora") != config.get("fine_tune_type", "lora"):
        problems.append(f"fine_tune_type: adapter has {theirs.get('fine_tune_type')!r}, this stage has "
                        f"{config.get('fine_tune_type', 'lora')!r} (method)")
    for label, a, b in [("rank", tl.get("rank"), ol["rank"]), ("num_layers", theirs.get("num_layers"), config["num_layers"]),
                        ("scale (alpha / rank)", tl.get("scale"), ol["scale"]),
                        ("keys", sorted(tl.get("keys") or []), sorted(ol["keys"]))]:
        if a != b:
            problems.append(f"{label}: adapter has {a}, this stage has {b}")
    if problems:
        raise DatakitError(f"{adapter_dir}: adapter does not match this stage's LoRA settings: " + "; ".join(problems)
                           + ". Set the stage's lora block to the adapter's values, or start from another adapter")
    return list(theirs.get("extra_weights", []))


def load_weights_checked(model: Any, adapter_dir: Path) -> None:
    """Load adapter tensors after checking every name and shape against the model, both ways."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    weights = dict(mx.load(str(adapter_dir / "adapters.safetensors")))
    if (adapter_dir / EXTRA_FILE).exists():
        weights.update(mx.load(str(adapter_dir / EXTRA_FILE)))
    params = dict(tree_flatten(model.parameters()))
    errors = [f"{k}: not in the model" for k in weights if k not in params]
    errors += [f"{k}: shape {tuple(v.shape)} vs model {tuple(params[k].shape)}"
               for k, v in weights.items() if k in params and v.shape != params[k].shape]
    errors += [f"{k}: missing from the adapter" for k in params
               if k.rsplit(".", 1)[-1] in _LORA_LEAVES and k not in weights]
    if errors:
        shown = "; ".join(errors[:5]) + (f"; and {len(errors) - 5} more" if len(errors) > 5 else "")
        raise DatakitError(f"{adapter_dir}: adapter tensors do not fit the model ({shown})")
    model.load_weights(list(weights.items()), strict=False)


def restore_checkpoint(ckpt: Path, model: Any, optimizer: Any, config: dict) -> dict:
    """Weights, optimizer state (moments, step, lr) and trainer state from `ckpt`; the optimizer must be
    initialized on the model's trainable parameters so its tree has the right shape."""
    import mlx.core as mx
    from mlx.utils import tree_map_with_path

    check_compatible(ckpt, config)
    load_weights_checked(model, ckpt)
    saved = dict(mx.load(str(ckpt / "optimizer.safetensors")))

    def take(path: str, x: Any) -> Any:
        if path not in saved:
            raise DatakitError(f"{ckpt}: optimizer state has no {path!r}; the checkpoint is from another setup, "
                               "delete the checkpoints folder to start over")
        return saved[path]

    optimizer.state = tree_map_with_path(take, optimizer.state)
    return json.loads((ckpt / "trainer_state.json").read_text())
