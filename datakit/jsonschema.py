"""JSON Schema files in `schemas/`, generated from the pydantic models (a test fails on drift).

Regenerate with `python -m datakit.jsonschema` after changing a model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from datakit.schemas import JSON_SCHEMA_MODELS

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"


def render() -> dict[str, str]:
    """File name -> JSON text for every model, stable across runs."""
    from datakit.build.identity import IdentitySpec
    from datakit.evals.gate import GateSpec
    from datakit.evals.suite import SuiteSpec
    from datakit.ops.mix_spec import MixtureSpec
    from datakit.train.recipe import RecipeSpec

    models = {**JSON_SCHEMA_MODELS, "mixture": MixtureSpec, "recipe": RecipeSpec, "gate": GateSpec, "suite": SuiteSpec, "identity": IdentitySpec}
    return {
        f"{name}.schema.json": json.dumps(model.model_json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        for name, model in models.items()
    }


def write(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for fname, text in render().items():
        p = directory / fname
        p.write_text(text, encoding="utf-8")
        written.append(p)
    return written


if __name__ == "__main__":
    for p in write(Path(sys.argv[1]) if len(sys.argv) > 1 else SCHEMA_DIR):
        print(p)
