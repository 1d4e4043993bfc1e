"""Will it fit? Peak training memory of one stage, estimated before anything loads.

    est = estimate_stage(Path("models/qwen"), stage_spec, backend="hf")
    est.total_bytes, est.parts, est.fits, est.advice

Weights come from the safetensors headers (exact, quantized or not); trainable parameters, gradients and
Adam moments from the method (LoRA/DoRA targets and rank, or every weight); activations from the batch shape
(batch_size x max_seq_len, the worst batch) through a per-backend model whose coefficients were fitted to peaks
measured on real mlx-lm and TRL runs (`benchmarks/memory_calibration.py`; `tests/test_train_memory.py` checks
fresh shapes against measured peaks). Nothing here imports torch or mlx.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from datakit.errors import DatakitError
from datakit.train.recipe import StageSpec

DTYPE_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2, "U16": 2,
               "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
# TRL's SFT loss projects the LM head in [min(tokens, 4096), 32768] fp32 tiles (trl/kernels/chunked_logprob.py),
# whatever the vocabulary: a fixed buffer that dominates small models.
TRL_TILE = (4096, 32768)

# Activation memory = sum of coefficient x term, each term in bytes (elements x activation dtype):
#   per_hidden: tokens x hidden x layers          per_mlp: tokens x intermediate x layers
#   per_score: sequences x heads x seq^2 x layers per_logit: tokens x vocab
#   per_dora: adapted projection weights x layers (DoRA builds W + BA to take its norm)
#   per_checkpoint: tokens x hidden x all layers, only with gradient checkpointing (the saved layer inputs;
#                   the per-layer terms then count one layer, the one being recomputed)
#   per_embed: tokens x hidden, once (embeddings, final norm, the head's input)
#   per_trainable: trainable parameters (the optimizer's transient copies while it updates them)
#   const: 1 MiB (allocator and framework overhead)
# Fitted per backend and method family (adapter: lora/dora; full) by benchmarks/memory_calibration.py.
TERMS = ("per_hidden", "per_mlp", "per_score", "per_logit", "per_dora", "per_checkpoint", "per_embed", "per_trainable",
         "const")
COEFFS: dict[str, dict[str, float]] = {  # benchmarks/results/memory_calibration.json: 128 measured peaks
    "hf/adapter": {"per_hidden": 12.183, "per_mlp": 5.849, "per_score": 0.286, "per_logit": 7.036, "per_dora": 2.707},
    "hf/full": {"per_mlp": 2.024, "per_score": 0.768, "per_logit": 6.79},
    "mlx/adapter": {"per_mlp": 8.855, "per_score": 1.922, "per_logit": 3.599, "per_dora": 1.474, "per_checkpoint": 2.731,
                    "per_embed": 34.02, "per_trainable": 4.603},
    "mlx/full": {"per_mlp": 1.32, "per_score": 2.505, "per_logit": 2.787, "per_checkpoint": 1.382, "per_embed": 45.521,
                 "per_trainable": 1.574},
}  # terms left out are 0


class ModelShape(BaseModel):
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    params: int = Field(description="elements over all tensors (packed quantized tensors count as stored)")
    weight_bytes: int = Field(description="bytes as stored in the safetensors files")
    stored_dtype: str = Field(description="the dtype most weights are stored in")
    quantized: bool = False
    linear_shapes: dict[str, tuple[int, int]] = Field(default_factory=dict,
                                                      description="projection leaf name -> (in, out) features")


class MemoryEstimate(BaseModel):
    backend: str
    device: str
    method: str
    batch_size: int
    max_seq_len: int
    gradient_checkpointing: bool
    parts: dict[str, int] = Field(description="bytes: weights, trainable, gradients, optimizer, activations, buffers")
    total_bytes: int
    trainable_params: int
    free_bytes: int | None = Field(None, description="free memory on the device when one is visible")
    fits: bool | None = None
    advice: list[str] = Field(default_factory=list)


def _safetensors_headers(model_dir: Path) -> dict[str, tuple[str, list[int]]]:
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise DatakitError(f"{model_dir}: no *.safetensors weights to size; memory estimates read their headers")
    out: dict[str, tuple[str, list[int]]] = {}
    for f in files:
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        header.pop("__metadata__", None)
        out.update({k: (v["dtype"], list(v["shape"])) for k, v in header.items()})
    return out


def model_shape(model_dir: Path) -> ModelShape:
    """The sizes that decide memory, from config.json and the weight headers; reads no tensor data."""
    path = model_dir / "config.json"
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DatakitError(f"{path}: cannot read the model config ({e})") from None
    cfg = {**cfg.get("text_config", {}), **cfg}  # multimodal configs nest the language model's sizes
    try:
        hidden, layers = int(cfg["hidden_size"]), int(cfg["num_hidden_layers"])
        heads = int(cfg["num_attention_heads"])
    except KeyError as e:
        raise DatakitError(f"{path}: no {e.args[0]}; cannot size this model's activations") from None
    tensors = _safetensors_headers(model_dir)
    by_dtype: dict[str, int] = {}
    params = weight_bytes = 0
    linear: dict[str, tuple[int, int]] = {}
    for name, (dtype, shape) in tensors.items():
        n = math.prod(shape)
        params += n
        weight_bytes += n * DTYPE_BYTES.get(dtype, 4)
        by_dtype[dtype] = by_dtype.get(dtype, 0) + n
        parts = name.split(".")
        if name.endswith(".weight") and len(shape) == 2 and ".layers.0." in f".{name}" and "proj" in parts[-2]:
            linear[parts[-2]] = (shape[1], shape[0])  # torch layout: (out, in)
    quantized = "quantization" in cfg or "quantization_config" in cfg
    return ModelShape(hidden=hidden, intermediate=int(cfg.get("intermediate_size", 4 * hidden)), layers=layers,
                      heads=heads, kv_heads=int(cfg.get("num_key_value_heads", heads)),
                      vocab=int(cfg.get("vocab_size", 0)), params=params, weight_bytes=weight_bytes,
                      stored_dtype=max(by_dtype, key=by_dtype.get), quantized=quantized, linear_shapes=linear)


def _projections(shape: ModelShape) -> dict[str, tuple[int, int]]:
    """(in, out) features of each projection in a decoder layer."""
    head_dim = shape.hidden // shape.heads
    default = {"q_proj": (shape.hidden, shape.heads * head_dim), "k_proj": (shape.hidden, shape.kv_heads * head_dim),
               "v_proj": (shape.hidden, shape.kv_heads * head_dim), "o_proj": (shape.heads * head_dim, shape.hidden),
               "gate_proj": (shape.hidden, shape.intermediate), "up_proj": (shape.hidden, shape.intermediate),
               "down_proj": (shape.intermediate, shape.hidden)}
    if not shape.quantized:  # quantized tensors are packed: their header shapes are not the features
        default.update(shape.linear_shapes)
    return default


def _lora_params(shape: ModelShape, spec: StageSpec) -> int:
    """Trainable LoRA (and DoRA magnitude) parameters of the adapted layers."""
    lora = spec.lora
    default = _projections(shape)
    per_layer = 0
    for target in lora.target_modules:
        fin, fout = default.get(target, (shape.hidden, shape.hidden))
        per_layer += lora.rank * (fin + fout) + (fout if spec.method == "dora" else 0)
    n = per_layer * min(lora.num_layers or shape.layers, shape.layers)
    if spec.train.train_embeddings:
        n += 2 * shape.vocab * shape.hidden
    return n


def _device(backend: str) -> str:
    if backend == "hf":
        try:
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        except ImportError:
            return "cpu"
    try:
        import mlx.core as mx

        return "gpu" if mx.metal.is_available() else "cpu"
    except (ImportError, AttributeError):
        return "cpu"


def free_memory(backend: str, device: str) -> int | None:
    """Free bytes on the device the stage trains on: the GPU's, or the machine's available RAM."""
    if device == "cuda":
        import torch

        return int(torch.cuda.mem_get_info()[0])
    if device == "gpu":  # Apple silicon: unified memory, Metal's recommended working set
        import mlx.core as mx

        return int(mx.metal.device_info().get("max_recommended_working_set_size", 0)) or None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def family(backend: str, method: str) -> str:
    return f"{backend}/{'full' if method == 'full' else 'adapter'}"


def activation_terms(shape: ModelShape, spec: StageSpec, *, method: str, batch_size: int, max_seq_len: int,
                     checkpointed: bool, act_bytes: int, trainable_bytes: int) -> dict[str, float]:
    """The terms the activation coefficients multiply (see COEFFS), in bytes."""
    seqs = batch_size * (2 if spec.stage == "dpo" else 1)  # DPO scores chosen and rejected in one batch
    tokens, seq, n_layers = seqs * max_seq_len, max_seq_len, shape.layers
    per = 1 if checkpointed else n_layers
    dora = 0
    if method == "dora":
        proj = _projections(shape)
        dora = sum(i * o for t, (i, o) in proj.items() if t in spec.lora.target_modules)
        dora *= min(spec.lora.num_layers or n_layers, n_layers) if not checkpointed else 1
    return {"per_hidden": act_bytes * tokens * shape.hidden * per,
            "per_mlp": act_bytes * tokens * shape.intermediate * per,
            "per_score": act_bytes * seqs * shape.heads * seq * seq * per,
            "per_logit": act_bytes * tokens * shape.vocab,
            "per_dora": act_bytes * dora,
            "per_checkpoint": act_bytes * tokens * shape.hidden * n_layers if checkpointed else 0.0,
            "per_embed": act_bytes * tokens * shape.hidden,
            "per_trainable": float(trainable_bytes),
            "const": float(2**20)}


def estimate(shape: ModelShape, spec: StageSpec, backend: Literal["hf", "mlx"], device: str = "cpu", *,
             batch_size: int | None = None, max_seq_len: int | None = None,
             gradient_checkpointing: bool | None = None, method: str | None = None,
             coeffs: dict[str, dict[str, float]] | None = None) -> MemoryEstimate:
    """Peak bytes of one training step for this model and stage; keyword overrides try alternatives."""
    t = spec.train
    method = method or spec.method
    b, seq = batch_size or t.batch_size, max_seq_len or t.max_seq_len
    gc = t.gradient_checkpointing if gradient_checkpointing is None else gradient_checkpointing
    if gc is None:
        gc = backend == "hf" and device == "cuda"  # the HF backend's default
    half = device == "cuda" or (backend == "mlx" and shape.stored_dtype in ("BF16", "F16", "U32"))
    act = 2 if half else 4
    # HF on CPU loads every weight as fp32; on a GPU as bf16. MLX keeps the stored dtype (and quantization).
    if backend == "hf" and spec.lora.qlora and method != "full":
        # NF4 with double quantization: ~0.52 bytes per projection weight; prepare_model_for_kbit_training casts
        # the rest (embeddings, norms, head) to fp32
        linear = shape.layers * sum(i * o for i, o in _projections(shape).values())
        weights = int(linear * 0.52) + (shape.params - linear) * 4
    elif backend == "hf":
        weights = shape.params * act if not shape.quantized else shape.weight_bytes
    else:
        weights = shape.weight_bytes
    if spec.stage == "dpo" and method == "full":
        weights *= 2  # a frozen reference copy of the policy
    if method == "full":
        trainable = shape.params
        parts = {"weights": weights, "trainable": 0, "gradients": trainable * act, "optimizer": 2 * trainable * act}
    else:
        trainable = _lora_params(shape, spec)
        parts = {"weights": weights, "trainable": 4 * trainable, "gradients": 4 * trainable,
                 "optimizer": 8 * trainable}
    terms = activation_terms(shape, spec, method=method, batch_size=b, max_seq_len=seq, checkpointed=gc, act_bytes=act,
                             trainable_bytes=parts["gradients"])
    c = (coeffs or COEFFS)[family(backend, method)]
    parts["activations"] = int(sum(c.get(k, 0.0) * v for k, v in terms.items()))
    tokens = b * seq * (2 if spec.stage == "dpo" else 1)
    if backend == "hf" and spec.stage != "dpo":
        parts["buffers"] = min(tokens, TRL_TILE[0]) * TRL_TILE[1] * 4
    total = sum(parts.values())
    return MemoryEstimate(backend=backend, device=device, method=method, batch_size=b, max_seq_len=seq,
                          gradient_checkpointing=gc, parts=parts, total_bytes=total, trainable_params=trainable)


def _advice(shape: ModelShape, spec: StageSpec, backend: Literal["hf", "mlx"], device: str, free: int) -> list[str]:
    """Changes that bring the stage under `free`, each with its own estimate; the cheapest first."""
    t, out = spec.train, []

    def tried(label: str, **kw: object) -> None:
        e = estimate(shape, spec, backend, device, **kw)  # type: ignore[arg-type]
        if e.total_bytes <= free:
            out.append(f"{label}: {gib(e.total_bytes)}")

    if t.batch_size > 1:
        half = max(1, t.batch_size // 2)
        tried(f"train.batch_size: {half} with train.grad_accum: {t.grad_accum * (t.batch_size // half)} "
              "(same effective batch)", batch_size=half)
    if not (t.gradient_checkpointing or (t.gradient_checkpointing is None and device == "cuda" and backend == "hf")):
        tried("train.gradient_checkpointing: true", gradient_checkpointing=True)
    if t.max_seq_len > 256:
        tried(f"train.max_seq_len: {t.max_seq_len // 2} (longer rows are cut)", max_seq_len=t.max_seq_len // 2)
    if spec.method == "full":
        tried("method: lora", method="lora")
    elif not spec.lora.qlora and not shape.quantized:
        out.append("lora.qlora: true (4-bit base weights: about a quarter of the weights' memory)")
    return out


def gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def estimate_stage(base_model: Path, spec: StageSpec, backend: Literal["hf", "mlx"], *, device: str | None = None,
                   free_bytes: int | None = None) -> MemoryEstimate:
    """The estimate on the device this machine would train on (or `device`: plan for another machine),
    compared with its free memory (or `free_bytes`: the memory of the machine you plan for)."""
    shape = model_shape(base_model)
    device = device or _device(backend)
    est = estimate(shape, spec, backend, device)
    free = free_bytes or (free_memory(backend, device) if device == _device(backend) else None)
    if free:
        est.free_bytes, est.fits = free, est.total_bytes <= free
        if not est.fits:
            est.advice = _advice(shape, spec, backend, device, free)
    return est


def format_estimate(e: MemoryEstimate) -> str:
    """One line (plus advice lines): the total, its parts, and the verdict against free memory."""
    parts = ", ".join(f"{k} {gib(v)}" for k, v in e.parts.items() if v)
    gc = ", gradient checkpointing" if e.gradient_checkpointing else ""
    line = f"~{gib(e.total_bytes)} peak on {e.device} ({e.method}, batch {e.batch_size} x {e.max_seq_len}{gc}: {parts})"
    if e.free_bytes is not None:
        line += f"; {gib(e.free_bytes)} free: " + ("fits" if e.fits else "does NOT fit")
    if e.advice:
        line += "\n      try: " + "\n      or:  ".join(e.advice)
    elif e.fits is False:
        line += "\n      no single change fits: use a smaller model, a larger device, or several changes at once"
    return line
