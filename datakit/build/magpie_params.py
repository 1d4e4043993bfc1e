"""The settings of `datakit synth magpie`, in a module of their own so the CLI reads defaults and help without
importing the generation stack."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class MagpieParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int = Field(ge=1, description="instructions to ask for (rows out are fewer: the gates drop some)")
    template: str | None = Field(None, description="a built-in family (llama3, chatml, gemma, mistral, phi3) or a "
                                                   "template file")
    template_from: str | None = Field(None, description="a local tokenizer or model folder holding the chat template")
    pre_query: str | None = Field(None, description="the prefix, verbatim; wins over any template")
    system: str | None = Field(None, description="system prompt, rendered into the prefix and kept in every row")
    max_tokens_instruction: int = Field(128, ge=1)
    max_tokens_answer: int = Field(512, ge=1)
    temperature: float = Field(1.0, ge=0, description="instruction sampling; high, so instructions vary")
    top_p: float = Field(1.0, gt=0, le=1)
    answer_temperature: float = Field(0.0, ge=0)
    lang: str | None = Field(None, description="keep only instructions and answers guessed as this language")
    min_chars: int = Field(10, ge=0, description="shortest instruction kept")
    max_chars: int = Field(2000, ge=1, description="longest instruction kept")
    max_repetition: float = Field(0.5, ge=0, le=1, description="largest share of repeated 4-grams kept")
    seed: int = 0
    reward: str | None = Field(None, description="hf:PATH of a sequence-classification reward model (one output)")
    min_reward: float | None = None
