"""What every command module shares: the app, the registry option, output helpers.

Nothing heavy is imported at module level (not even polars), so `datakit --help` stays fast.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, Callable, Iterator, Optional

import orjson
import typer
import typer.core
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

if TYPE_CHECKING:
    from datakit.registry.store import Registry

app = typer.Typer(help="Versioned datasets, builders, training hand-off and regression evals for LLM fine-tuning.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=True)
registry_app = typer.Typer(help="Inspect and maintain the dataset registry.", no_args_is_help=True)
app.add_typer(registry_app, name="registry")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)
_state: dict[str, Any] = {"registry": None}

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
RefArg = Annotated[str, typer.Argument(help="Dataset version: name (its latest), name@v2, name@TAG or name@HASH.",
                                       show_default=False)]

_typed_display = typer.core.TyperOption.display_type_rich


def _flag_display(self: typer.core.TyperOption, ctx: Any) -> str | None:
    """Typer's rich help prints a flag as `--dry-run <bool>`, as if it took a value; a flag takes none (click's
    plain help omits it too), so show the type only for options that take one."""
    return None if self.is_flag and not self.count else _typed_display(self, ctx)


typer.core.TyperOption.display_type_rich = _flag_display  # type: ignore[method-assign]


def version() -> str:
    """The installed distribution's version (the package's own __version__ when run from a source tree)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("datakit")
    except PackageNotFoundError:
        import datakit

        return getattr(datakit, "__version__", "unknown")


def _print_version(value: bool) -> None:
    if value:
        out.print(f"datakit {version()}", markup=False)
        raise typer.Exit()


@app.callback()
def _root(
    registry: Annotated[Optional[str], typer.Option("--registry", help="Registry root: a folder or a bucket URL such as s3://bucket/prefix, gs://..., az://... (default: $DATAKIT_REGISTRY or ./registry).")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show the Python traceback of a failure (also DATAKIT_DEBUG=1).")] = False,
    verify_reads: Annotated[bool, typer.Option("--verify-reads", help="Hash every data part on every read (default: once per change of the file; also DATAKIT_VERIFY_READS=1).")] = False,
    show_version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                               help="Print `datakit VERSION` and exit.")] = False,
) -> None:
    _state["registry"] = registry


def registry_root() -> str | None:
    """The --registry given to this invocation, if any."""
    return _state["registry"]


def reg() -> Registry:
    from datakit.registry.store import Registry

    return Registry(_state["registry"])


def emit_json(obj: Any) -> None:
    sys.stdout.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")


def kv(d: dict[str, Any], empty: str = "none") -> str:
    """A flat dict as `key=value, key=value` for a human line (a dict's repr is noise there); floats to 4 digits."""
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in d.items()) or empty


def committed(created: bool) -> str:
    """The verb every writing command prints before the new ref."""
    return "committed" if created else "unchanged:"


def print_commit(m: Any, created: bool, stats: dict[str, Any], as_json: bool, detail: Callable[[], str]) -> None:
    """What a command that commits one version prints: JSON (ref, created, hash, stats), or one line naming the
    ref with `detail()` in brackets (called only then: it may index stats a JSON reader does not need)."""
    if as_json:
        emit_json({"ref": m.ref, "created": created, "content_hash": m.content_hash, "stats": stats})
    else:
        out.print(f"{committed(created)} [bold]{m.ref}[/] ({detail()})")


@contextmanager
def byte_progress(total: int, label: str) -> Iterator[Any]:
    """A transient progress bar on stderr (shown only on a terminal)."""
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=err, transient=True, disable=not err.is_terminal) as p:
        task = p.add_task(label, total=total)
        yield lambda n: p.advance(task, n)


@contextmanager
def step_progress(label: str, every_s: float = 10.0) -> Iterator[Callable[[str, int, int], None]]:
    """A callback (step, done, total) for an op with several counted steps: a transient bar per step on a
    terminal; elsewhere (a log, CI) a plain line on stderr at most every `every_s` seconds and at each step's end."""
    if err.is_terminal:
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeRemainingColumn(), console=err, transient=True) as p:
            tasks: dict[str, Any] = {}

            def on_terminal(step: str, done: int, total: int) -> None:
                if step not in tasks:
                    tasks[step] = p.add_task(f"{label}: {step}", total=total)
                p.update(tasks[step], completed=done, total=total)

            yield on_terminal
        return
    from datakit.progress import PlainLines  # the same plain lines training and evals print

    steps: dict[str, PlainLines] = {}

    def plain(step: str, done: int, total: int) -> None:
        if step not in steps:
            steps[step] = PlainLines(err, f"{label}: {step}", total, "", every_s)
        steps[step].total = total
        steps[step].update(done)

    yield plain


@contextmanager
def working(label: str) -> Iterator[None]:
    """A spinner on stderr for work with no natural progress count (shown only on a terminal)."""
    if err.is_terminal:
        with err.status(label):
            yield
    else:
        yield
