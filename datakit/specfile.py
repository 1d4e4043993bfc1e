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
    for key, value in (overrides or {}).items():
        if value is not None:  # an unset CLI flag
            _set_path(data, key, value, path)
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


DELETE = object()  # an override that removes a field


def _set_path(data: dict, key: str, value: object, path: Path) -> None:
    """Set a dotted key (`stages.1.train.epochs`) in the loaded YAML; list items by index."""
    node: object = data
    parts = key.split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise DatakitError(f"{path}: override {key}: {'.'.join(parts[:i])} has {len(node)} items; "
                                   f"{part!r} is not an index into it")
            if last:
                node[int(part)] = None if value is DELETE else value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last and value is DELETE:
                node.pop(part, None)
            elif last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise DatakitError(f"{path}: override {key}: {'.'.join(parts[:i])} is a value, not a mapping or list")


def parse_overrides(pairs: list[str]) -> dict[str, object]:
    """`KEY=VALUE` flags into overrides; values are read as YAML scalars (`8` is an int, `1e-4` a float,
    `null` removes the field)."""
    out: dict[str, object] = {}
    for pair in pairs:
        key, eq, raw = pair.partition("=")
        if not eq or not key.strip():
            raise DatakitError(f"--set {pair!r}: write KEY=VALUE, e.g. --set stages.1.train.epochs=8")
        value = yaml.safe_load(raw)
        if value is None:  # `--set stages.1.train.epochs=null` removes the field (to switch epochs to iters)
            value = DELETE
        elif isinstance(value, str) and _FLOAT.match(value):
            value = float(value)  # YAML 1.1 reads 1e-4 as a string
        out[key.strip()] = value
    return out


_FLOAT = __import__("re").compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")
