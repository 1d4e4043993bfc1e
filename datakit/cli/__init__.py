"""The `datakit` command: a thin layer over the library, one module per command group.

Exit codes: 0 ok; 1 a check found a problem; 2 usage or input error. Read commands take --json.
Heavy libraries are imported inside the commands that need them, so `datakit --help` stays fast.
"""

from __future__ import annotations

import os
import sys

from rich.markup import escape

from datakit.cli.common import app, err
from datakit.cli.faults import describe
from datakit.errors import DatakitError
from datakit.secrets import scrub

# Importing a command module registers its commands on `app`, in the order `datakit --help` lists them.
# isort: off
from datakit.cli import ingest_export, registry, build, ops, generate, lint, train  # noqa: F401
from datakit.cli import eval as _eval  # noqa: F401  (bound as _eval: `eval` would shadow the builtin)
from datakit.cli import runs, ui  # noqa: F401
from datakit.cli import demo  # noqa: F401
# isort: on

__all__ = ["app", "main"]


def main() -> None:
    """The error boundary: no fault of the input or the environment ends in a traceback (`--debug` shows it)."""
    debug = "--debug" in sys.argv or os.environ.get("DATAKIT_DEBUG") == "1"
    if "--debug" in sys.argv:
        sys.argv.remove("--debug")
    if "--verify-reads" in sys.argv:  # global, accepted anywhere on the line: hash every part read, not once per change
        sys.argv.remove("--verify-reads")
        os.environ["DATAKIT_VERIFY_READS"] = "1"
    from datakit.cli.argv import hoist_registry  # global too: `--registry PATH` may follow the subcommand

    sys.argv[:] = hoist_registry(sys.argv)
    try:
        app()
    except KeyboardInterrupt:
        err.print("[red]interrupted[/]: nothing partial was published; rerun to finish")
        sys.exit(130)
    except Exception as e:
        message, code = describe(e)
        if debug and not isinstance(e, DatakitError):
            import traceback

            err.print(escape(scrub(traceback.format_exc())), highlight=False, soft_wrap=True)  # keys scrubbed here too
        err.print(f"[red]error:[/] {escape(scrub(message))}", highlight=False, soft_wrap=True)
        sys.exit(code)
