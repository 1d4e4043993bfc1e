"""LoRA adapters across backends: read a peft or an mlx-lm adapter folder into one canonical form, and write an
mlx-lm adapter from it, so a run on one backend can be compared with (or continue on) the other.

Canonical form: `{"layers.{i}.{module path}": (A, B, m)}` in peft's orientation, A (rank x in), B (out x rank),
m the DoRA magnitude per output row (None for LoRA); mlx-lm stores lora_a = A.T, lora_b = B.T and m as is.
peft's scaling and mlx-lm's `scale` are both alpha / rank (alpha / sqrt(rank) with rsLoRA).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from datakit.errors import DatakitError
from datakit.train.recipe import StageSpec

_PEFT = re.compile(r"(?:base_model\.model\.)?model\.(layers\.\d+\..+)\.(lora_A|lora_B|lora_magnitude_vector)"
                   r"(?:\.default)?(?:\.weight)?$")
_MLX = re.compile(r"model\.(layers\.\d+\..+)\.(lora_a|lora_b|m)$")
_PART = {"lora_A": "A", "lora_B": "B", "lora_magnitude_vector": "m", "lora_a": "A", "lora_b": "B", "m": "m"}
Lora = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]


def read_lora(folder: Path) -> dict[str, Lora]:
    """A peft (adapter_model.safetensors) or mlx-lm (adapters.safetensors) adapter as canonical (A, B) pairs."""
    from safetensors.numpy import load_file

    if (folder / "adapter_model.safetensors").is_file():
        tensors, pattern, transpose = load_file(str(folder / "adapter_model.safetensors")), _PEFT, False
    elif (folder / "adapters.safetensors").is_file():
        tensors, pattern, transpose = _load_mlx(folder / "adapters.safetensors"), _MLX, True
    else:
        raise DatakitError(f"{folder}: neither a peft adapter (adapter_model.safetensors) nor an mlx-lm adapter "
                           "(adapters.safetensors)")
    parts: dict[str, dict[str, np.ndarray]] = {}
    for key, value in tensors.items():
        if m := pattern.match(key):
            part = _PART[m[2]]
            parts.setdefault(m[1], {})[part] = value.T if transpose and part != "m" else value
    missing = [k for k, v in parts.items() if not {"A", "B"} <= set(v)]
    if missing or not parts:
        raise DatakitError(f"{folder}: no complete LoRA pairs (A and B) for {missing or 'any module'}")
    f32 = lambda x: None if x is None else x.astype(np.float32)  # noqa: E731
    return {k: (f32(v["A"]), f32(v["B"]), f32(v.get("m"))) for k, v in sorted(parts.items())}


def _load_mlx(path: Path) -> dict[str, np.ndarray]:
    import mlx.core as mx

    return {k: np.array(v.astype(mx.float32)) for k, v in mx.load(str(path)).items()}


def write_mlx_lora(pairs: dict[str, Lora], folder: Path, config: dict) -> Path:
    """An mlx-lm adapter folder (adapters.safetensors + adapter_config.json) from canonical pairs."""
    import mlx.core as mx

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, (a, b, m) in pairs.items():
        tensors[f"model.{name}.lora_a"] = mx.array(np.ascontiguousarray(a.T))
        tensors[f"model.{name}.lora_b"] = mx.array(np.ascontiguousarray(b.T))
        if m is not None:
            tensors[f"model.{name}.m"] = mx.array(m)
    mx.save_safetensors(str(folder / "adapters.safetensors"), tensors)
    (folder / "adapter_config.json").write_text(json.dumps({**config, "extra_weights": []}, indent=2))
    return folder


def lora_cosine(a: dict[str, Lora], b: dict[str, Lora], start: dict[str, Lora] | None = None) -> float:
    """Cosine similarity of two adapters' weight updates (B @ A of every module, and DoRA magnitudes, flattened
    together); with `start`, of how far each moved from it."""
    if set(a) != set(b):
        raise DatakitError(f"the adapters adapt different modules: {sorted(set(a) ^ set(b))[:5]}")

    def flat(x: dict[str, Lora]) -> np.ndarray:
        return np.concatenate([np.concatenate([(x[k][1] @ x[k][0]).ravel(), x[k][2] if x[k][2] is not None else []])
                               for k in a])

    x, y = flat(a), flat(b)
    if start is not None:
        x, y = x - flat(start), y - flat(start)
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


def shared_init(base: Path, stage: StageSpec, hf_dir: Path, mlx_dir: Path, *, b_std: float = 0.01,
                seed: int = 0) -> None:
    """One adapter init for both backends: peft's for `stage` (LoRA or DoRA, with B drawn at `b_std` so the very
    first step moves A and B), and the same tensors as an mlx-lm adapter. Chain a stage from each to compare
    the backends on identical starting weights."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from datakit.train.hf_backend import lora_config
    from datakit.train.mlx_checkpoint import adapter_config

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    layers = model.config.num_hidden_layers
    peft = get_peft_model(model, lora_config(stage, layers))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, b_std)
    peft.save_pretrained(hf_dir)
    pairs = read_lora(hf_dir)
    keys = sorted({k.split(".", 2)[2] for k in pairs})
    write_mlx_lora(pairs, mlx_dir, adapter_config(stage.lora, num_layers=stage.lora.num_layers or layers, keys=keys,
                                                  method=stage.method))
