"""Dataset, tag and run names: one rule, importable without polars (training processes on a GPU box
import recipes, not the registry)."""

from __future__ import annotations

import re

from datakit.errors import DatakitError

NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")


def check_name(name: str, what: str = "dataset name") -> str:
    if not NAME_RE.fullmatch(name) or ".." in name:  # fullmatch: `$` would accept a trailing newline
        raise DatakitError(
            f"invalid {what} {name!r}: use lowercase letters, digits, '-', '_' and '.' "
            "(no slashes, spaces or '..'), starting with a letter or digit, e.g. 'acme-sft'"
        )
    return name
