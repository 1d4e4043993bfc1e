"""The CLI as a user runs it: help everywhere, exit codes 0/1/2, --json on read commands."""

from __future__ import annotations

import json
from pathlib import Path

import typer.main

from datakit.cli import app
from datakit.registry.store import Registry


def _commands(group, prefix=()):
    cmd = typer.main.get_command(group) if not hasattr(group, "commands") else group
    for name, sub in cmd.commands.items():
        path = (*prefix, name)
        if hasattr(sub, "commands"):
            yield path, sub
            yield from _commands(sub, path)
        else:
            yield path, sub


def test_every_command_is_documented_and_has_help(cli):
    paths = list(_commands(app))
    assert {p for p, _ in paths} >= {("ingest",), ("export",), ("demo",), ("registry",), ("registry", "ls"),
                                      ("registry", "show"), ("registry", "log"), ("registry", "diff"),
                                      ("registry", "verify"), ("registry", "tag"), ("registry", "gc")}
    readme = (__import__("pathlib").Path(__file__).resolve().parent.parent / "README.md").read_text()
    for path, cmd in paths:
        assert (cmd.help or "").strip(), f"datakit {' '.join(path)} has no help text"
        assert path[-1] in readme, f"datakit {' '.join(path)} is not in the README"
        proc = cli(*path, "--help")
        assert proc.returncode == 0 and "Usage" in proc.stdout


def test_ingest_show_log_ls_json_and_exit_codes(cli, external, tmp_path):
    p = cli("ingest", str(external / "dpo_en_demo.json"), "--name", "dpo", "--kind", "preference", "--json", check_json=True)
    assert p.returncode == 0 and p.json["kept"] == 300 and p.json["ref"] == "dpo@v1"
    show = cli("registry", "show", "dpo@v1", "--rows", "1", "--json", check_json=True).json
    assert {"name", "version", "kind", "rows", "content_hash", "parents"} <= set(show)
    assert (show["name"], show["version"], show["kind"], show["rows"], show["parents"]) == ("dpo", "v1", "preference", 300, [])
    assert show["sample"][0]["chosen"][0]["role"] == "assistant"
    ls = cli("registry", "ls", "--json", check_json=True).json
    assert [(x["name"], x["rows"]) for x in ls] == [("dpo", 300)]
    log = cli("registry", "log", "dpo", "--json", check_json=True).json
    assert log[0]["op"] == "ingest" and log[0]["stats"]["kept"] == 300
    assert cli("registry", "verify", "--json", check_json=True).json == {"checked": 1, "ok": True, "problems": []}


def test_input_errors_exit_2_with_the_fix(cli, external, tmp_path):
    p = cli("ingest", str(external / "c4_demo.jsonl"), "--name", "Bad/Name", "--kind", "cpt")
    assert p.returncode == 2 and "invalid dataset name" in p.stderr
    p = cli("ingest", str(tmp_path / "missing.jsonl"), "--name", "x", "--kind", "cpt")
    assert p.returncode == 2 and "no such file" in p.stderr
    p = cli("registry", "show", "nothing@v1")
    assert p.returncode == 2 and "no dataset named 'nothing'" in p.stderr
    p = cli("ingest", str(external / "c4_demo.jsonl"), "--name", "x", "--kind", "bogus")
    assert p.returncode == 2 and "unknown kind" in p.stderr
    assert cli("registry", "frobnicate").returncode == 2


def test_verify_exits_1_and_names_the_broken_file(cli, external, tmp_path):
    cli("ingest", str(external / "c4_demo.jsonl"), "--name", "c4", "--kind", "cpt")
    m = Registry(tmp_path / "registry").resolve("c4@v1")
    part = Path(Registry(tmp_path / "registry").data_path(m, "data/part-00000.parquet"))
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    p = cli("registry", "verify")
    assert p.returncode == 1 and "part-00000.parquet" in p.stdout and "sha256 mismatch" in p.stdout


def test_tag_diff_gc_quarantine_and_export_commands(cli, tmp_path):
    from tests.conftest import chat, write_jsonl

    write_jsonl(tmp_path / "a.jsonl", [chat("q1", "a1"), chat("q2", "a2")])
    write_jsonl(tmp_path / "b.jsonl", [chat("q1", "a1"), chat("q3", "a3"), "{broken"])
    cli("ingest", str(tmp_path / "a.jsonl"), "--name", "faq", "--kind", "sft")
    out = cli("ingest", str(tmp_path / "b.jsonl"), "--name", "faq", "--kind", "sft").stdout
    assert "1 rejected" in out and "datakit registry quarantine faq@v2" in out
    assert cli("registry", "tag", "faq@v1", "baseline").stdout.strip() == "faq@baseline -> v1"
    d = cli("registry", "diff", "faq@baseline", "faq", "--json", check_json=True).json
    assert (d["added"], d["removed"]) == (1, 1)
    q = cli("registry", "quarantine", "faq@v2", "--json", check_json=True).json
    assert q["total"] == 1 and q["rows"][0]["line"] == 3 and q["rows"][0]["reason"].startswith("invalid JSON")
    assert cli("registry", "gc").returncode == 0
    e = cli("export", "faq@v2", "--format", "jsonl", "--out", str(tmp_path / "x.jsonl"))
    assert e.returncode == 0
    rows = [json.loads(x) for x in (tmp_path / "x.jsonl").read_text().splitlines()]
    assert [r["messages"][0]["content"] for r in rows] == ["q1", "q3"]


def test_demo_ingests_every_external_file_and_prints_the_catalog(cli, external):
    p = cli("demo", "--ingest-only", "--data", str(external))
    assert p.returncode == 0, p.stderr
    for name in ("alpaca-en", "alpaca-zh", "identity-seeds", "dpo-en", "glaive-toolcall", "c4", "wiki"):
        assert name in p.stdout
    ls = {x["name"]: x["rows"] for x in cli("registry", "ls", "--json", check_json=True).json}
    assert ls == {"alpaca-en": 999, "alpaca-zh": 1000, "identity-seeds": 91, "dpo-en": 300,
                  "glaive-toolcall": 300, "c4": 300, "wiki": 30}
