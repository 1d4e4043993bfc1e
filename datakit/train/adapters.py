"""LoRA adapters across backends: read a peft or an mlx-lm adapter folder into one canonical form, and write an
mlx-lm adapter from it, so a run on one backend can be compared with (or continue on) the other.

Canonical form: `{"layers.{i}.{module path}": (A, B)}` in peft's orientation, A (rank x in), B (out x rank);
mlx-lm stores lora_a = A.T and lora_b = B.T. peft's scaling and mlx-lm's `scale` are both alpha / rank.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from datakit.errors import DatakitError

_PEFT = re.compile(r"(?:base_model\.model\.)?model\.(layers\.\d+\..+)\.lora_([AB])(?:\.default)?\.weight$")
_MLX = re.compile(r"model\.(layers\.\d+\..+)\.lora_([ab])$")


def read_lora(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
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
            parts.setdefault(m[1], {})[m[2].upper()] = value.T if transpose else value
    missing = [k for k, v in parts.items() if set(v) != {"A", "B"}]
    if missing or not parts:
        raise DatakitError(f"{folder}: no complete LoRA pairs (A and B) for {missing or 'any module'}")
    return {k: (v["A"].astype(np.float32), v["B"].astype(np.float32)) for k, v in sorted(parts.items())}


def _load_mlx(path: Path) -> dict[str, np.ndarray]:
    import mlx.core as mx

    return {k: np.array(v.astype(mx.float32)) for k, v in mx.load(str(path)).items()}


def write_mlx_lora(pairs: dict[str, tuple[np.ndarray, np.ndarray]], folder: Path, config: dict) -> Path:
    """An mlx-lm adapter folder (adapters.safetensors + adapter_config.json) from canonical pairs."""
    import mlx.core as mx

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, (a, b) in pairs.items():
        tensors[f"model.{name}.lora_a"] = mx.array(np.ascontiguousarray(a.T))
        tensors[f"model.{name}.lora_b"] = mx.array(np.ascontiguousarray(b.T))
    mx.save_safetensors(str(folder / "adapters.safetensors"), tensors)
    (folder / "adapter_config.json").write_text(json.dumps({**config, "extra_weights": []}, indent=2))
    return folder


def lora_cosine(a: dict[str, tuple[np.ndarray, np.ndarray]], b: dict[str, tuple[np.ndarray, np.ndarray]]) -> float:
    """Cosine similarity of two adapters' weight updates (B @ A of every module, flattened together)."""
    if set(a) != set(b):
        raise DatakitError(f"the adapters adapt different modules: {sorted(set(a) ^ set(b))[:5]}")
    x = np.concatenate([(a[k][1] @ a[k][0]).ravel() for k in a])
    y = np.concatenate([(b[k][1] @ b[k][0]).ravel() for k in a])
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))
