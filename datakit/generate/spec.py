"""Generator specs (DESIGN): `openai:MODEL@BASE_URL` (key from OPENAI_API_KEY), `hf:PATH`, `mlx:PATH`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from datakit.errors import DatakitError

FORMS = "openai:MODEL@BASE_URL (e.g. openai:default_model@http://127.0.0.1:8080/v1), hf:PATH or mlx:PATH"


class GeneratorSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    backend: Literal["openai", "hf", "mlx"]
    model: str
    base_url: str | None = None

    def __str__(self) -> str:
        return f"openai:{self.model}@{self.base_url}" if self.backend == "openai" else f"{self.backend}:{self.model}"


def parse_spec(text: str) -> GeneratorSpec:
    """A generator spec string as a typed spec; a malformed one names the forms it could take."""
    backend, colon, rest = str(text).strip().partition(":")
    if not colon or backend not in ("openai", "hf", "mlx"):
        raise DatakitError(f"generator spec {text!r}: unknown backend {backend!r}; write {FORMS}")
    if backend in ("hf", "mlx"):
        if not rest:
            raise DatakitError(f"generator spec {text!r}: {backend}: needs a model path; write {FORMS}")
        return GeneratorSpec(backend=backend, model=rest)
    model, at, base_url = rest.rpartition("@")
    if not at or not model or not base_url.startswith(("http://", "https://")):
        raise DatakitError(f"generator spec {text!r}: an openai spec needs a model and an http(s) base URL; "
                           f"write {FORMS}")
    return GeneratorSpec(backend="openai", model=model, base_url=base_url.rstrip("/"))
