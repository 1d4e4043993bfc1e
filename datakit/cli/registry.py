"""`datakit registry ...`: inspect and maintain the dataset registry."""

from __future__ import annotations

from typing import Annotated, Optional

import orjson
import typer
from rich.table import Table

from datakit.cli.common import JsonOpt, RefArg, emit_json, out, reg, registry_app, registry_root
from datakit.errors import CheckFailed


@registry_app.command("ls")
def registry_ls(as_json: JsonOpt = False) -> None:
    """List datasets with their latest version."""
    from datakit.registry.catalog import catalog

    r = reg()
    rows = catalog(r)
    if as_json:
        emit_json(rows)
        return
    t = Table(title=f"registry {r.root}")
    t.add_column("name", no_wrap=True, min_width=max([len(x["name"]) for x in rows] + [4]))
    for col in ("latest", "kind", "rows", "versions", "tags", "hash"):
        t.add_column(col, no_wrap=True)
    for x in rows:
        t.add_row(x["name"], x["latest"], x["kind"], str(x["rows"]), str(x["versions"]), ",".join(x["tags"]), x["content_hash"][:10])
    out.print(t)


@registry_app.command("show")
def registry_show(ref: RefArg, rows: Annotated[int, typer.Option(help="Also print the first N rows (0: none).")] = 0,
                  as_json: JsonOpt = False) -> None:
    """Show a version's manifest: kind, rows, hash, files, lineage, op, stats."""
    from datakit.registry.catalog import describe

    d = describe(reg(), ref, rows=rows)
    if as_json:
        emit_json(d)
        return
    out.print(f"[bold]{d['ref']}[/]  kind {d['kind']}  rows {d['rows']}  schema v{d['schema_version']}")
    out.print(f"content hash {d['content_hash']}\ncreated {d['created']}  op {d['op']}")
    for p in d["parents"]:
        out.print(f"parent {p['ref']} ({p['content_hash'][:12]})")
    out.print(f"params {orjson.dumps(d['params']).decode()}\nstats {orjson.dumps(d['stats']).decode()}")
    for f, e in d["files"].items():
        out.print(f"  {f}  {e['bytes']} bytes  sha256 {e['sha256'][:16]}")
    for rec in d["sample"]:
        out.print(orjson.dumps(rec).decode())


@registry_app.command("log")
def registry_log(name: Annotated[str, typer.Argument(help="Dataset name (no @version).", show_default=False)],
                 as_json: JsonOpt = False) -> None:
    """Versions of a dataset, oldest first, with their op and parents."""
    from datakit.registry.catalog import history

    entries = history(reg(), name)
    if as_json:
        emit_json(entries)
        return
    for e in entries:
        parents = ", ".join(p["ref"] for p in e["parents"]) or "-"
        tag = f" [{', '.join(e['tags'])}]" if e["tags"] else ""
        out.print(f"{e['ref']}{tag}  {e['created'][:19]}  {e['op']}  {e['rows']} rows  {e['content_hash'][:12]}  parents: {parents}")


@registry_app.command("diff")
def registry_diff(a: Annotated[str, typer.Argument(help="The version compared from: name, name@v1, name@TAG "
                                                        "or name@HASH.", show_default=False)],
                  b: Annotated[str, typer.Argument(help="The version compared to: rows added and removed going from A "
                                                        "to B.", show_default=False)],
                  examples: Annotated[int, typer.Option(help="Added and removed rows to print, each side.")] = 5,
                  as_json: JsonOpt = False) -> None:
    """Rows added and removed between two versions."""
    from datakit.registry.verify import diff

    d = diff(reg(), a, b, examples=examples)
    if as_json:
        emit_json(d)
        return
    out.print(f"{d['a']} ({d['rows_a']} rows) -> {d['b']} ({d['rows_b']} rows): "
              f"+{d['added']} added, -{d['removed']} removed, {d['unchanged']} unchanged")
    for sign, key in (("+", "added_examples"), ("-", "removed_examples")):
        for rec in d[key]:
            out.print(f"{sign} {orjson.dumps(rec).decode()[:200]}")


@registry_app.command("verify")
def registry_verify(ref: Annotated[Optional[str], typer.Argument(help="One version to check: name (its latest), "
                                                                  "name@v2, name@TAG or name@HASH (default: every "
                                                                  "version of every dataset).")] = None,
                    as_json: JsonOpt = False) -> None:
    """Recompute every checksum, row id and content hash; exit 1 naming each mismatch."""
    from datakit.registry.verify import verify

    checked, problems = verify(reg(), ref)
    if as_json:
        emit_json({"checked": checked, "ok": not problems, "problems": [p.model_dump() for p in problems]})
    else:
        for p in problems:
            out.print(f"[red]MISMATCH[/] {p.ref}: {p.path}: {p.problem}")
        out.print(f"verified {checked} version(s): {'ok' if not problems else f'{len(problems)} problem(s)'}")
    if problems:
        raise typer.Exit(CheckFailed.exit_code)


@registry_app.command("tag")
def registry_tag(ref: RefArg,
                 tag: Annotated[str, typer.Argument(help="Tag name, e.g. baseline (not a version number such as v2).",
                                                    show_default=False)],
                 as_json: JsonOpt = False) -> None:
    """Point TAG at a version (moves it if it exists)."""
    m, before = reg().tag(ref, tag)
    if as_json:
        emit_json({"name": m.name, "tag": tag, "version": m.version, "ref": m.ref, "previous": before,
                   "moved": before is not None and before != m.version})
        return
    moved = f" (was {before})" if before and before != m.version else ""
    out.print(f"{m.name}@{tag} -> {m.version}{moved}")


@registry_app.command("gc")
def registry_gc(dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be removed.")] = False,
                grace_minutes: Annotated[float, typer.Option(help="Keep unpublished parts younger than this many "
                                                             "minutes (a commit may still be writing them from "
                                                             "another machine).")] = 180,
                as_json: JsonOpt = False) -> None:
    """Remove leftovers of interrupted commits (never a live one)."""
    from datakit.registry.verify import gc

    removed = gc(reg(), dry_run=dry_run, grace_s=grace_minutes * 60)
    if as_json:
        emit_json({"dry_run": dry_run, "removed": removed, "count": len(removed)})
        return
    for p in removed:
        out.print(("would remove " if dry_run else "removed ") + p)
    out.print(f"{len(removed)} leftover(s)")


@registry_app.command("repair")
def registry_repair(yes: Annotated[bool, typer.Option("--yes", help="Apply the fixes (default: only list them).")] = False,
                    as_json: JsonOpt = False) -> None:
    """Safe fixes for what verify finds: quarantine damaged versions, drop dangling tags. Deletes nothing."""
    from datakit.registry.repair import apply, plan

    r = reg()
    fixes = plan(r)
    if yes:
        apply(r, fixes)
    if as_json:
        emit_json({"applied": yes, "fixes": [f.model_dump() for f in fixes]})
        return
    for f in fixes:
        out.print(f"{'fixed' if yes else 'would fix'}: {f.action} {f.target} ({f.why})", markup=False)
    out.print(f"{len(fixes)} fix(es)" + ("" if yes or not fixes else "; run with --yes to apply"))


@registry_app.command("quarantine")
def registry_quarantine(ref: RefArg, limit: Annotated[int, typer.Option(help="Rejected rows to list (the total is "
                                                                          "always counted).")] = 20,
                        as_json: JsonOpt = False) -> None:
    """Rows that a version's ingest rejected, with file, line and reason."""
    from datakit.registry.catalog import quarantine

    q = quarantine(reg(), ref, limit=limit)
    if as_json:
        emit_json(q)
        return
    for x in q["rows"]:
        pos = f"line {x['line']}" if x["line"] is not None else f"row {x['row']}"
        out.print(f"{x['file']}:{pos}: {x['reason']}\n    {x['raw'][:160]}")
    out.print(f"{q['total']} rejected row(s)")


def _copy(src_root: str | None, dst_root: str | None, ref: str | None, every: bool, as_json: bool, verb: str) -> None:
    from datakit.cli.common import byte_progress
    from datakit.registry.remotes import copy_versions, plan_bytes, select, summary
    from datakit.registry.store import Registry

    src, dst = Registry(src_root), Registry(dst_root)
    todo = select(src, ref, every=every)
    files = sum(len(m.files) for m in todo)
    with byte_progress(plan_bytes(src, todo), f"{verb} {len(todo)} version(s), {files} files") as advance:
        results = copy_versions(src, dst, todo, advance=advance)
    s = summary(results)
    if as_json:
        emit_json(s)
        return
    for r in results:
        out.print(f"{r.status:8s} {r.ref}" + (f" ({r.files_copied} files, {r.bytes_copied:,} bytes)" if r.files_copied else ""))
    out.print(f"{s['copied']} copied, {s['present']} already there: {src.root} -> {dst.root}")


_Args = Annotated[list[str], typer.Argument(help="REF REMOTE: a dataset (all its versions) or NAME@VERSION (that one and "
                                             "every earlier version), then the other registry (a folder or an "
                                             "s3://, gs://, az:// URL); with --all only REMOTE.", show_default=False)]
_AllOpt = Annotated[bool, typer.Option("--all", help="Every version of every dataset.")]


def _ref_remote(args: list[str], every: bool) -> tuple[str | None, str]:
    if len(args) == (1 if every else 2):
        return (None, args[0]) if every else (args[0], args[1])
    raise typer.BadParameter("give REF REMOTE (e.g. faq s3://team-bucket/registry), or --all REMOTE")


@registry_app.command("push")
def registry_push(args: _Args, every: _AllOpt = False, as_json: JsonOpt = False) -> None:
    """Copy versions from this registry to another (only missing files travel, each verified)."""
    ref, remote = _ref_remote(args, every)
    _copy(registry_root(), remote, ref, every, as_json, "push")


@registry_app.command("pull")
def registry_pull(args: _Args, every: _AllOpt = False, as_json: JsonOpt = False) -> None:
    """Copy versions from another registry into this one (only missing files travel, each verified)."""
    ref, remote = _ref_remote(args, every)
    _copy(remote, registry_root(), ref, every, as_json, "pull")
