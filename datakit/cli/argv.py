"""Global options written after the subcommand: `datakit registry ls --registry PATH` means what
`datakit --registry PATH registry ls` means (click accepts a group's options only before the subcommand)."""

from __future__ import annotations

from typing import Any

HOISTED = "--registry"  # a root option that takes a value


def _owns(cmd: Any, opt: str) -> bool:
    """Whether `cmd` (or, for a group, any command under it) has an option spelled `opt` of its own."""
    if any(opt in getattr(p, "opts", ()) or opt in getattr(p, "secondary_opts", ()) for p in cmd.params):
        return True
    return any(_owns(sub, opt) for sub in getattr(cmd, "commands", {}).values())


def _subcommand_at(argv: list[str]) -> int | None:
    """Index of the first subcommand word, past the root options (and the value of a root --registry)."""
    i = 1
    while i < len(argv):
        word = argv[i]
        if word == "--":
            return None
        if not word.startswith("-"):
            return i
        i += 2 if word == HOISTED else 1
    return None


def hoist_registry(argv: list[str]) -> list[str]:
    """argv with every `--registry X` / `--registry=X` after the subcommand moved in front of it (the root option;
    the last one still wins, as click takes the last of a repeated option). Left alone: anything after `--`,
    a `--registry` with no value, and any line whose subcommand has a `--registry` option of its own."""
    start = _subcommand_at(argv)
    if start is None or not any(a == HOISTED or a.startswith(HOISTED + "=") for a in argv[start:]):
        return argv  # the common case: nothing to move, and the command tree is not built
    import typer.main

    from datakit.cli.common import app

    cmd: Any = typer.main.get_command(app)
    i = start
    while i < len(argv) and argv[i] in getattr(cmd, "commands", {}):
        cmd = cmd.commands[argv[i]]
        i += 1
    if _owns(cmd, HOISTED):
        return argv
    moved: list[str] = []
    rest = argv[:i]
    while i < len(argv):
        word = argv[i]
        if word == "--":
            rest += argv[i:]
            break
        if word == HOISTED and i + 1 < len(argv):
            moved += [HOISTED, argv[i + 1]]
            i += 2
            continue
        if word.startswith(HOISTED + "="):
            moved += [HOISTED, word.split("=", 1)[1]]
        else:
            rest.append(word)
        i += 1
    return rest[:start] + moved + rest[start:]
