"""One loader for every YAML spec (recipe, mixture, suite, gate, identity): all problems at once,
each with the file, the field, the value given and where the schema describes it."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from datakit.errors import DatakitError

M = TypeVar("M", bound=BaseModel)


def load_spec_file(path: Path, model: type[M], what: str, schema: str, overrides: dict | None = None) -> M:
    """Read `path` as YAML into `model`; a DatakitError names the file and every broken field.
    `overrides` (CLI flags; None values skipped) replace top-level fields before validation."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatakitError(f"{path}: no such {what} file; check the path") from None
    except OSError as e:
        raise DatakitError(f"{path}: cannot read the {what} ({e.strerror}); check the path") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise DatakitError(f"{where}: not valid YAML ({getattr(e, 'problem', e)}); fix the syntax there") from None
    if not isinstance(data, dict):
        raise DatakitError(f"{path}: a {what} is a YAML mapping of fields, got {type(data).__name__}")
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return model.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = str(err["ctx"]["error"]) if "error" in err.get("ctx", {}) else err["msg"]
            got = "" if err["type"] == "missing" else f" (got {err['input']!r:.60})"
            lines += [f"  {loc}: {m}{got}" for m in msg.split("; ")]
        raise DatakitError(f"{path}: {len(lines)} problem(s) in the {what}:\n" + "\n".join(lines)
                           + f"\nevery field is described in schemas/{schema}") from None
