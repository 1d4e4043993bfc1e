"""Training recipes: one YAML per experiment, loaded into typed models, every error reported at once.

    datakit train recipes/acme-sft.yaml [--dry-run]
A recipe runs its `stages` in order (cpt -> sft -> dpo); each stage starts from the adapter the
previous stage produced unless it names another `resume_adapter`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from datakit.registry.names import check_name
from datakit.specfile import load_spec_file

ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoraSpec(_Spec):
    rank: int = Field(8, ge=1)
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: list(ALL_PROJECTIONS),
                                      description="projection names; FIELD_NOTES 4: all attention and MLP projections")
    num_layers: int | None = Field(None, ge=1, description="adapt only the last N decoder layers; omit for all")
    qlora: bool = Field(False, description="4-bit base weights (HF needs bitsandbytes and a GPU; MLX a quantized model)")
    rslora: bool = Field(False, description="rank-stabilized scaling alpha / sqrt(rank) instead of alpha / rank "
                                            "(both backends)")


class EarlyStopping(_Spec):
    patience: int = Field(3, ge=1, description="validation reports without improvement before stopping")
    min_delta: float = Field(0.0, ge=0, description="smallest drop in validation loss that counts as improvement")


class TrainSpec(_Spec):
    iters: int | None = Field(None, ge=1, description="optimizer steps; give iters or epochs")
    epochs: float | None = Field(None, gt=0)
    batch_size: int = Field(4, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(1e-4, gt=0)
    schedule: Literal["constant", "cosine", "linear"] = "cosine"
    warmup: float = Field(0.03, ge=0, lt=1, description="fraction of steps spent warming up")
    max_seq_len: int = Field(1024, ge=8)
    eval_every: int = Field(20, ge=1, description="steps between validation-loss reports")
    save_every: int = Field(50, ge=1, description="steps between checkpoints")
    keep_last: int = Field(2, ge=1, description="checkpoints kept (the best by validation loss is kept too)")
    early_stopping: EarlyStopping | None = None
    final_adapter: Literal["best", "last"] = Field("best", description=(
        "the adapter a stage hands on: the best by validation loss, or the last weights (knowledge injection: "
        "held-out facts cannot improve, so the best would be the least trained; validation is then a memorization "
        "watch, FIELD_NOTES 3)"))
    max_grad_norm: float = Field(1.0, ge=0, description="clip the global gradient norm at this value, on both "
                                                       "backends (0: no clipping)")
    group_by_length: bool = Field(False, description="batch rows of similar length together (both backends; "
                                                     "faster, less random): see datakit/train/plan.py")
    gradient_checkpointing: bool | None = Field(None, description=(
        "recompute each layer's activations in the backward pass: far less activation memory, ~30% slower; "
        "omitted: on for hf on a GPU, off elsewhere"))
    packing: bool = Field(False, description="pack short rows into full sequences (HF backend)")
    dpo_beta: float = Field(0.1, gt=0, description="DPO and KTO temperature (beta)")
    train_embeddings: bool = Field(False, description=(
        "also train embedding and output rows (needed when the end-of-turn token was never trained; LoRA alone cannot)"))

    @model_validator(mode="after")
    def _length(self) -> TrainSpec:
        if (self.iters is None) == (self.epochs is None):
            raise ValueError("give exactly one of iters or epochs")
        if self.final_adapter == "last" and self.early_stopping is not None:
            raise ValueError("final_adapter: last and early_stopping contradict each other; drop one")
        return self


class StageSpec(_Spec):
    stage: Literal["cpt", "sft", "dpo", "kto"] = Field(description=(
        "kto: unpaired preference (kind kto) with TRL's KTOTrainer, hf backend only"))
    data: str = Field(description="registry ref (name@v2) or a mixture YAML path")
    method: Literal["lora", "dora", "full"] = Field("lora", description=(
        "lora; dora (a learned magnitude per output row; peft use_dora, mlx-lm dora); or full fine-tuning of every "
        "weight, which writes a whole model folder (model/) that the next stage starts from"))
    lora: LoraSpec = Field(default_factory=LoraSpec)
    train: TrainSpec
    resume_adapter: str | None = Field(None, description=(
        "adapter folder to start from; omitted: the previous stage's adapter (none for the first stage)"))

    @model_validator(mode="after")
    def _method(self) -> StageSpec:
        if self.method == "full" and (self.lora.qlora or self.resume_adapter):
            raise ValueError("method: full trains every weight of a model: it takes no lora.qlora and no "
                             "resume_adapter (start it from a model folder: base_model, or a previous full stage)")
        return self


class RecipeSpec(_Spec):
    name: str = Field(description="run folders go to <output_dir>/<name>/<run-id>/")
    backend: Literal["mlx", "hf"]
    base_model: str = Field(description="local model folder (or a hub id already in the local cache)")
    seed: int = 0
    output_dir: str = "runs"
    trust_remote_code: bool = Field(False, description="let transformers run the model folder's own Python code "
                                    "(auto_map); never on unless you turn it on; hf only")
    stages: list[StageSpec] = Field(min_length=1)

    _name = field_validator("name")(check_name)

    @model_validator(mode="after")
    def _order(self) -> RecipeSpec:
        rank = {"cpt": 0, "sft": 1, "dpo": 2, "kto": 2}
        order = [rank[s.stage] for s in self.stages]
        if order != sorted(order):
            raise ValueError(f"stages run cpt -> sft -> dpo/kto; got {' -> '.join(s.stage for s in self.stages)}")
        if self.trust_remote_code and self.backend == "mlx":  # accepted and ignored would be a silent lie
            raise ValueError("trust_remote_code: mlx-lm never runs a model folder's own code; remove the line, or "
                             "use backend: hf for a model that needs its own code")
        return self


def load_recipe(path: Path, overrides: dict | None = None) -> RecipeSpec:
    """YAML into a RecipeSpec; every problem in one message that names the file and field.
    `overrides` are CLI flags (backend, base_model) that beat the YAML."""
    return load_spec_file(path, RecipeSpec, "recipe", "recipe.schema.json", overrides)

