"""The `datakit` command: a thin layer over the library, one module per command group.

Exit codes: 0 ok; 1 a check found a problem; 2 usage or input error. Read commands take --json.
Heavy libraries are imported inside the commands that need them, so `datakit --help` stays fast.
"""

from __future__ import annotations

import sys

from datakit.cli.common import app, err
from datakit.errors import DatakitError

# Importing a command module registers its commands on `app`, in the order `datakit --help` lists them.
# isort: off
from datakit.cli import ingest_export, registry, build, ops, generate, lint, train  # noqa: F401
from datakit.cli import eval as _eval  # noqa: F401  (bound as _eval: `eval` would shadow the builtin)
from datakit.cli import demo  # noqa: F401
# isort: on

__all__ = ["app", "main"]


def main() -> None:
    try:
        app()
    except DatakitError as e:
        err.print(f"[red]error:[/] {e}")
        sys.exit(e.exit_code)
