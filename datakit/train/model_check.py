"""Model folder integrity, checked before any weight is loaded (FIELD_NOTES 5).

A folder missing shards, or an MLX 4-bit export handed to transformers, otherwise fails deep
inside loading. Everything here reads JSON and safetensors headers; nothing loads the model.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

MAX_ROWS = 20  # row indexes a finding keeps; the message carries the full count
INDEX = "model.safetensors.index.json"
# quant_method values mlx-lm (0.32) converts at load; anything else (bitsandbytes, ...) it cannot read.
MLX_CONVERTS = {"awq", "gptq", "bitnet", "mxfp4", "mxfp8", "fp8", "compressed-tensors", "modelopt"}
EMBED_SUFFIXES = ("embed_tokens.weight", "wte.weight", "word_embeddings.weight", "tok_embeddings.weight")


class Finding(BaseModel):
    level: Literal["error", "warning", "info"]
    check: str
    message: str
    rows: list[int] = Field(default_factory=list, description=f"row indexes involved (first {MAX_ROWS})")

    @field_validator("rows")
    @classmethod
    def _cap(cls, v: list[int]) -> list[int]:
        return v[:MAX_ROWS]


def read_json(path: Path, check: str) -> tuple[Any, Finding | None]:
    """A JSON file's content, or an error finding naming the file and the parse error."""
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except FileNotFoundError:
        return None, Finding(level="error", check=check, message=f"{path}: no such file")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return None, Finding(level="error", check=check, message=f"{path}: not valid JSON ({e}); fix or re-download it")


def eos_ids(value: Any) -> list[int]:
    """`eos_token_id` as a list (configs write an int, a list, or null)."""
    if value is None:
        return []
    return [value] if isinstance(value, int) else [int(v) for v in value]


def check_model_dir(path: Path, backend: Literal["hf", "mlx"], *, kind: str | None = None) -> list[Finding]:
    """Folder, config.json, weight shards, quantization format vs backend, tokenizer and template.

    `kind`: the dataset kind; a missing chat template is an error for chat kinds, a warning when
    unknown (None), and not checked for cpt.
    """
    path = Path(path)
    if not path.is_dir():
        return [Finding(level="error", check="model_dir",
                        message=f"{path}: no such model folder; give a local folder with config.json and weights")]
    findings: list[Finding] = []
    config, err = read_json(path / "config.json", "model_dir")
    if err:
        findings.append(err)
    elif not isinstance(config, dict):
        findings.append(Finding(level="error", check="model_dir",
                                message=f"{path / 'config.json'}: expected a JSON object, got {type(config).__name__}"))
    else:
        findings += _quantization(path, config, backend)
    findings += _weights(path)
    findings += _tokenizer_files(path, kind)
    return findings


def _weights(path: Path) -> list[Finding]:
    index = path / INDEX
    if index.exists():
        data, err = read_json(index, "weights")
        if err:
            return [err]
        weight_map = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            return [Finding(level="error", check="weights", message=f"{index}: no weight_map; re-download the model")]
        held: dict[str, int] = {}
        for shard in weight_map.values():
            held[shard] = held.get(shard, 0) + 1
        missing = sorted(s for s in held if not (path / s).is_file())
        if missing:
            listed = ", ".join(f"{s} ({held[s]} tensors)" for s in missing)
            return [Finding(level="error", check="weights", message=(
                f"{path}: {len(missing)} of {len(held)} shards named in {INDEX} are missing: {listed}; "
                "download the missing files (an interrupted download or a partial copy leaves this)"))]
        return []
    if any(path.glob("*.safetensors")):
        return []
    if any(path.glob("pytorch_model*.bin")):
        return [Finding(level="warning", check="weights", message=(
            f"{path}: only pickle weights (pytorch_model*.bin); they are not loaded unless you turn it on. "
            "Convert them to safetensors, or use a safetensors copy of the model"))]
    return [Finding(level="error", check="weights",
                    message=f"{path}: no *.safetensors weights and no {INDEX}; this is not a complete model folder")]


def _quantization(path: Path, config: dict, backend: str) -> list[Finding]:
    cfg = path / "config.json"
    mlx_block = config.get("quantization")
    qc = config.get("quantization_config")
    method = qc.get("quant_method") if isinstance(qc, dict) else None
    # mlx-lm writes its block twice, as `quantization` and as a `quantization_config` with no quant_method.
    if isinstance(mlx_block, dict) or (isinstance(qc, dict) and method is None and "bits" in qc):
        block = mlx_block if isinstance(mlx_block, dict) else qc
        if backend == "hf":
            desc = {k: block[k] for k in ("bits", "group_size") if k in block}
            return [Finding(level="error", check="quantization", message=(
                f"{cfg}: this is an MLX-quantized export (quantization {desc}), which transformers cannot load; "
                "use backend mlx or the original (unquantized) weights"))]
        return [Finding(level="info", check="quantization",
                        message=f"{cfg}: MLX-quantized weights ({block.get('bits')}-bit); LoRA on them is QLoRA")]
    if isinstance(qc, dict):
        if backend == "mlx" and method not in MLX_CONVERTS:
            return [Finding(level="error", check="quantization", message=(
                f"{cfg}: quantization_config quant_method={method!r} is a transformers format mlx-lm cannot load; "
                "use backend hf, or the original weights (mlx_lm.convert -q makes an MLX 4-bit copy)"))]
        if backend == "mlx":
            return [Finding(level="warning", check="quantization", message=(
                f"{cfg}: quant_method={method!r}; recent mlx-lm converts it at load, older versions fail. "
                "An mlx_lm.convert copy of the original weights is the safer base"))]
        return [Finding(level="info", check="quantization",
                        message=f"{cfg}: {method}-quantized weights; transformers needs the matching package installed")]
    return []


def has_chat_template(path: Path) -> bool:
    if (path / "chat_template.jinja").is_file() or (path / "chat_template.json").is_file():
        return True
    data, err = read_json(path / "tokenizer_config.json", "tokenizer")
    return not err and isinstance(data, dict) and bool(data.get("chat_template"))


def _tokenizer_files(path: Path, kind: str | None) -> list[Finding]:
    out = []
    has_vocab = ((path / "tokenizer.json").is_file() or (path / "tokenizer.model").is_file()
                 or ((path / "vocab.json").is_file() and (path / "merges.txt").is_file()))
    if not has_vocab:
        out.append(Finding(level="error", check="tokenizer", message=(
            f"{path}: no tokenizer.json or tokenizer.model; copy the tokenizer files from the base model")))
    if kind != "cpt" and not has_chat_template(path):
        out.append(Finding(level="error" if kind else "warning", check="chat_template", message=(
            f"{path}: no chat template (tokenizer_config.json chat_template or chat_template.jinja); "
            f"{kind or 'chat'} rows cannot be rendered. Copy the template from the instruct model of this family")))
    return out


# ---- embeddings: is a token's row trained? -------------------------------------------------

SAMPLE_ROWS = 4096


def _embedding_tensor(path: Path) -> tuple[Path, str] | None:
    from safetensors import safe_open

    index = path / INDEX
    if index.exists():
        data, err = read_json(index, "weights")
        names = list((data or {}).get("weight_map", {}).items()) if not err else []
        candidates = [(path / shard, key) for key, shard in names]
    else:
        candidates = []
        for f in sorted(path.glob("*.safetensors")):
            with safe_open(f, framework="pt") as st:
                candidates += [(f, key) for key in st.keys()]
    for suffix in EMBED_SUFFIXES:
        for f, key in candidates:
            if key.endswith(suffix) and f.is_file():
                return f, key
    return None


def embedding_row_check(path: Path, token: str, token_id: int) -> Finding | None:
    """A warning when `token_id`'s input embedding row looks untrained: zero, equal to the mean of
    the rows, or with a norm far below the typical row (Llama 3 base ships <|eot_id|> that way)."""
    import torch
    from safetensors import safe_open

    found = _embedding_tensor(path)
    if found is None:
        return Finding(level="info", check="embeddings", message=f"{path}: no embedding tensor found; row not checked")
    file, key = found
    with safe_open(file, framework="pt") as st:
        if key.removesuffix("weight") + "scales" in st.keys():
            return Finding(level="info", check="embeddings", message=f"{file.name}:{key} is quantized; row not checked")
        sl = st.get_slice(key)
        vocab = sl.get_shape()[0]
        if token_id >= vocab:
            return Finding(level="error", check="embeddings", message=(
                f"{file.name}:{key} has {vocab} rows but {token!r} is id {token_id}; the tokenizer and weights differ"))
        row = sl[token_id:token_id + 1].float()[0]
        if vocab <= SAMPLE_ROWS:
            sample = sl[:].float()
        else:  # four evenly spread blocks: enough for a median norm without reading a 1 GB matrix
            step, block = vocab // 4, SAMPLE_ROWS // 4
            sample = torch.cat([sl[i * step:i * step + block].float() for i in range(4)])
    norm, median = float(row.norm()), float(sample.norm(dim=1).median())
    why = None
    if norm == 0:
        why = "is all zeros"
    elif vocab <= SAMPLE_ROWS and torch.allclose(row, sample.mean(0), atol=1e-6, rtol=1e-4):
        why = "equals the mean of all rows"
    elif median > 0 and norm < 0.25 * median:
        why = f"has norm {norm:.4g}, {norm / median:.0%} of the median row norm {median:.4g}"
    if why is None:
        return None
    return Finding(level="warning", check="embeddings", message=(
        f"the end-of-turn token {token!r} (id {token_id}) looks untrained: its embedding row {why}. "
        "LoRA alone cannot teach it; set train.train_embeddings: true"))


FINGERPRINT_JSON = ("config.json", "model.safetensors.index.json", "generation_config.json", "tokenizer_config.json")
FINGERPRINT_FILES = ("*.safetensors", "*.bin", "*.npz", "*.gguf", "tokenizer.json", "tokenizer.model")


def model_fingerprint(path: Path) -> dict[str, str]:
    """What identifies a base model folder in lineage: its configs (sha256 of the parsed JSON, so key order and
    whitespace do not count) and every weight and tokenizer file's bytes (xxh3-128, streamed: GBs of weights in
    seconds). Two folders with the same config but other weights get different fingerprints."""
    import xxhash

    out = {}
    for name in FINGERPRINT_JSON:
        p = path / name
        if p.exists():
            out[name] = hashlib.sha256(json.dumps(json.loads(p.read_text()), sort_keys=True).encode()).hexdigest()
    for p in sorted({f for pattern in FINGERPRINT_FILES for f in path.glob(pattern) if f.is_file()}):
        h = xxhash.xxh3_128()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(8 << 20), b""):
                h.update(block)
        out[p.name] = f"xxh3_128:{h.hexdigest()}"
    return out
