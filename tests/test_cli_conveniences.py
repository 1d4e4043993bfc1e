"""The small things a new user reaches for first (issue 21): --version, shell completion, --json on every read
command, --registry after the subcommand, export formats named in full, help on every parameter, and a demo
rerun that keeps the previous run."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import typer
import typer.main
from typer.testing import CliRunner

from datakit.cli import app
from datakit.cli.argv import _owns, hoist_registry
from datakit.cli.common import kv
from tests.conftest import chat, write_jsonl

# Commands without --json, and why: each prints no result a script could read.
NO_JSON = {("ui",): "serves the web app until stopped"}


def _leaves(cmd, path=()):
    """(path, command) for every runnable command under `cmd`."""
    if hasattr(cmd, "commands"):
        for name, sub in cmd.commands.items():
            yield from _leaves(sub, (*path, name))
    else:
        yield path, cmd


def _faq(cli, tmp_path: Path, registry: Path | None = None) -> None:
    write_jsonl(tmp_path / "a.jsonl", [chat("q1", "a1"), chat("q2", "a2")])
    write_jsonl(tmp_path / "b.jsonl", [chat("q1", "a1"), chat("q3", "a3")])
    for f in ("a.jsonl", "b.jsonl"):
        assert cli("ingest", str(tmp_path / f), "--name", "faq", "--kind", "sft", registry=registry).returncode == 0


def test_version_prints_the_installed_version_and_exits_0(cli):
    p = cli("--version")
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"datakit {version('datakit')}\n"


def test_shell_completion_is_offered(cli):
    p = cli("--help")
    assert "--install-completion" in p.stdout and "--show-completion" in p.stdout
    # typer detects the shell from the parent processes (under `make`, sh, which it does not support): run the
    # command from bash, as a user installing completion for bash would (`; exit` keeps bash from exec-ing it)
    script = subprocess.run(["bash", "-c", f"{shlex.quote(sys.executable)} -m datakit.cli --show-completion; exit $?"],
                            capture_output=True, text=True, timeout=60)
    # named after the program as run: `datakit` when installed, `python -m datakit.cli` here
    assert script.returncode == 0 and "complete -o default -F" in script.stdout, script.stderr


def test_registry_tag_and_gc_take_json(cli, tmp_path):
    _faq(cli, tmp_path)
    t = cli("registry", "tag", "faq@v1", "baseline", "--json", check_json=True).json
    assert t == {"name": "faq", "tag": "baseline", "version": "v1", "ref": "faq@v1", "previous": None, "moved": False}
    t = cli("registry", "tag", "faq@v2", "baseline", "--json", check_json=True).json
    assert (t["version"], t["previous"], t["moved"]) == ("v2", "v1", True)
    for extra in ((), ("--dry-run",)):
        g = cli("registry", "gc", *extra, "--json", check_json=True).json
        assert g == {"dry_run": bool(extra), "removed": [], "count": 0}


def test_registry_may_follow_the_subcommand(cli, tmp_path):
    other = tmp_path / "other"
    _faq(cli, tmp_path, registry=other)
    for argv in (("registry", "ls", "--registry", str(other), "--json"),
                 ("registry", "ls", "--json", f"--registry={other}")):
        p = cli(*argv, check_json=True)  # the fixture's own registry (DATAKIT_REGISTRY) is empty
        assert [x["name"] for x in p.json] == ["faq"], argv
    assert [x["name"] for x in cli("registry", "ls", "--json", check_json=True).json] == []


def test_registry_hoisting_leaves_alone_what_it_must():
    after_dashes = ["d", "ingest", "f", "--", "--registry", "x"]
    assert hoist_registry(list(after_dashes)) == after_dashes
    assert hoist_registry(["d", "registry", "ls", "--registry"]) == ["d", "registry", "ls", "--registry"]
    assert hoist_registry(["d", "--debug", "registry", "ls", "--registry", "a"]) == \
        ["d", "--debug", "--registry", "a", "registry", "ls"]
    # a command with a --registry option of its own keeps it: the check that guards the hoisting
    own = typer.Typer()

    @own.command()
    def pull(registry: str = typer.Option("", "--registry", help="The registry to pull from.")) -> None:
        """A command whose --registry means something else."""

    @own.command()
    def other() -> None:
        """A second command, so that `own` is a group."""

    group = typer.main.get_command(own)
    assert _owns(group.commands["pull"], "--registry") and _owns(group, "--registry")
    assert not any(_owns(cmd, "--registry") for _, cmd in _leaves(typer.main.get_command(app)))


def test_an_unknown_export_format_names_every_valid_one(cli, tmp_path):
    from datakit.io.export import export_formats

    _faq(cli, tmp_path)
    p = cli("export", "faq", "--format", "nope", "--out", str(tmp_path / "x.jsonl"))
    assert p.returncode == 2
    message = " ".join(p.stderr.split())  # rich wraps long lines
    assert f"unknown export format 'nope'; use one of {', '.join(export_formats())}" in message
    assert {"jsonl", "parquet", "mlx", "hf", "lm-eval", "argilla", "label-studio"} <= set(export_formats())
    fmt_help = next(p for _, c in _leaves(typer.main.get_command(app)) if c.name == "export" for p in c.params
                    if p.name == "fmt").help
    assert all(f in fmt_help for f in export_formats()), "export --format help misses a format"


def test_every_parameter_has_help_every_read_command_json_and_flags_no_type():
    runner = CliRunner()
    leaves = list(_leaves(typer.main.get_command(app)))
    assert len(leaves) > 25
    for path, cmd in leaves:
        for p in cmd.params:
            assert (getattr(p, "help", None) or "").strip(), f"datakit {' '.join(path)}: {p.name} has no help text"
        has_json = any("--json" in getattr(p, "opts", ()) for p in cmd.params)
        assert has_json or path in NO_JSON, f"datakit {' '.join(path)} has no --json (or add it to NO_JSON with why)"
        res = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert res.exit_code == 0 and "<bool>" not in res.output, f"datakit {' '.join(path)} --help shows <bool>"
    assert set(NO_JSON) <= {p for p, _ in leaves}, "NO_JSON names a command that no longer exists"


def test_a_demo_rerun_keeps_the_previous_run(tmp_path):
    from datakit.demo.loop import keep_previous_run

    runs = tmp_path / "runs" / "demo"
    assert keep_previous_run(runs) is None  # nothing yet
    for n in ("1", "2"):
        runs.mkdir(parents=True)
        (runs / "report.txt").write_text(n)
        prev = keep_previous_run(runs)
        assert prev == tmp_path / "runs" / "demo.prev" and not runs.exists()
        assert (prev / "report.txt").read_text() == n  # the older .prev was replaced
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["demo.prev"]


def test_demo_json_names_the_report_verdicts_and_timings(tmp_path):
    from datakit.cli.demo import demo_result

    (tmp_path / "report.json").write_text(json.dumps({"ok": False, "verdict": "fail",
                                                      "candidate_verdicts": {"mixed": "fail"},
                                                      "verdicts": {"mixed": {"general.accuracy": "fail"}}, "models": {}}))
    (tmp_path / "timings.json").write_text(json.dumps({"total": 12.5}))
    assert demo_result(tmp_path) == {"report": str(tmp_path), "ok": False, "verdict": "fail",
                                     "candidate_verdicts": {"mixed": "fail"}, "timings": {"total": 12.5},
                                     "verdicts": {"mixed": {"general.accuracy": "fail"}}}


def test_demo_ingest_only_json_keeps_stdout_for_the_json(cli, external):
    p = cli("demo", "--ingest-only", "--data", str(external), "--json", check_json=True)
    assert p.returncode == 0, p.stderr
    assert {x["name"] for x in p.json} >= {"c4", "wiki", "dpo-en"}
    assert "c4_demo.jsonl" in p.stderr  # the step chatter went to stderr


def test_human_lines_print_dicts_as_key_value_text():
    assert kv({"en": 3, "ko": 2}) == "en=3, ko=2"
    assert kv({"loss": 0.123456789}) == "loss=0.1235"
    assert kv({}) == "none"
