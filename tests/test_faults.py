"""Faults end in one clear line, never a traceback, and never in wrong rows: a damaged registry walked by every
read and write command, reads that check parts against the manifest, fsck-grade verify, the CLI's error
boundary, secrets scrubbed before any text is cut, and the small holes (names, export targets, recipe switches)."""

from __future__ import annotations

import json
import shutil

import pytest

from datakit.errors import DatakitError
from datakit.registry.store import Registry
from tests.conftest import chat, write_jsonl

COMMANDS = (("registry", "ls"), ("registry", "show", "faq"), ("registry", "log", "faq"),
            ("export", "faq", "--format", "jsonl", "--out", "{out}"), ("dedup", "faq", "--name", "faq-d"),
            ("registry", "quarantine", "faq"), ("registry", "diff", "faq@v1", "faq@v2"))


def _make(cli, tmp_path):
    rows = [chat(f"question {i}", f"answer {i}") for i in range(40)]
    cli("ingest", str(write_jsonl(tmp_path / "a.jsonl", rows[:30])), "--name", "faq", "--kind", "sft")
    cli("ingest", str(write_jsonl(tmp_path / "b.jsonl", rows + ["{broken"])), "--name", "faq", "--kind", "sft")
    return Registry(tmp_path / "registry")


def _part(reg, ref="faq@v2"):
    from pathlib import Path

    m = reg.resolve(ref)
    return m, Path(reg.data_path(m, m.data_files[0]))


def _damage(kind, reg, tmp_path):
    """Each kind of damage the hardening report found; returns the file the message must name."""
    m, part = _part(reg)
    manifest = reg.root / "datasets" / "faq" / "v2" / "manifest.json"
    if kind == "empty-manifest":
        manifest.write_bytes(b"")
        return manifest
    if kind == "torn-manifest":
        manifest.write_bytes(manifest.read_bytes()[:150])
        return manifest
    if kind == "truncated-part":
        part.write_bytes(part.read_bytes()[:-40])
        return part
    if kind == "flipped-byte":
        data = bytearray(part.read_bytes())
        data[len(data) // 3] ^= 0x01
        part.write_bytes(bytes(data))
        return part
    if kind == "swapped-part":
        _, other = _part(reg, "faq@v1")
        shutil.copyfile(other, part)
        return part
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["empty-manifest", "torn-manifest", "truncated-part", "flipped-byte", "swapped-part"])
def test_every_command_on_a_damaged_version_names_the_file_and_never_returns_wrong_rows(cli, tmp_path, kind):
    reg = _make(cli, tmp_path)
    bad = _damage(kind, reg, tmp_path)
    for args in COMMANDS:
        p = cli(*(a.format(out=tmp_path / "out.jsonl") for a in args))
        assert "Traceback" not in p.stderr, (args, p.stderr[-1500:])
        if "manifest" not in kind and not {"export", "dedup", "diff"} & set(args):
            assert p.returncode == 0, (args, p.stderr)  # manifest-only views need no data part
            continue
        assert p.returncode == 1, (args, p.returncode, p.stdout[-500:], p.stderr[-500:])
        assert str(bad) in p.stderr or bad.name in p.stderr, (args, p.stderr)
    assert not (tmp_path / "out.jsonl").exists()  # no export of wrong rows
    assert not (tmp_path / "registry" / "datasets" / "faq-d").exists()  # no op committed on a damaged parent
    v = cli("registry", "verify", "--json", check_json=True)
    assert v.returncode == 1 and any(str(bad) == pr["path"] or bad.name in pr["path"] for pr in v.json["problems"])


def test_verify_sees_damaged_and_dangling_tags_and_a_version_folder_under_the_wrong_name(cli, tmp_path):
    reg = _make(cli, tmp_path)
    assert cli("registry", "verify").returncode == 0
    reg.tag("faq@v1", "baseline")
    shutil.copytree(reg.root / "datasets" / "faq" / "v1", reg.root / "datasets" / "faq" / "v7")
    shutil.copytree(reg.root / "datasets" / "faq", reg.root / "datasets" / "other")
    shutil.rmtree(reg.root / "datasets" / "other" / "v2")
    snap = sorted((reg.root / "datasets" / "faq" / "tags").iterdir())[-1]
    snap.write_text(json.dumps({"tags": {"baseline": "v1", "prod": "v9"}}))
    v = cli("registry", "verify", "--json", check_json=True).json
    problems = {(p["ref"], p["problem"].split(" (")[0]) for p in v["problems"]}
    assert ("faq@prod", "tag points at v9, which does not exist") in problems
    assert any(r == "faq@v7" and "describes faq@v1" in what for r, what in problems)
    assert any(r == "other@v1" and "describes faq@v1" in what for r, what in problems)
    shutil.rmtree(reg.root / "datasets" / "faq" / "v7")
    snap.write_text('{"tags": {"baseline": ')  # torn
    v = cli("registry", "verify", "--json", check_json=True).json
    assert any("damaged tag file" in p["problem"] for p in v["problems"])
    p = cli("registry", "show", "faq@baseline")
    assert p.returncode == 1 and "damaged tag file" in p.stderr and "Traceback" not in p.stderr
    assert cli("registry", "tag", "faq@v2", "baseline").returncode == 0  # moving a tag writes a fresh snapshot
    assert Registry(tmp_path / "registry").resolve("faq@baseline").version == "v2"


def test_a_mistyped_registry_path_does_not_verify_as_empty(cli, tmp_path):
    p = cli("registry", "verify", registry=tmp_path / "registyr")
    assert p.returncode == 2 and "no registry at" in p.stderr


def test_an_op_never_commits_on_top_of_a_damaged_parent(reg, tmp_path):
    from datakit.io.ingest import ingest
    from datakit.ops.dedup import run_dedup

    ingest(reg, [write_jsonl(tmp_path / "a.jsonl", [chat(f"q{i}", "a") for i in range(20)])], name="faq", kind="sft")
    m, part = _part(reg, "faq@v1")
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0x01
    part.write_bytes(bytes(data))
    with pytest.raises(DatakitError, match="content differs from the manifest"):
        run_dedup(reg, ["faq"], ["faq-d"])
    assert reg.versions("faq-d") == []


def test_verify_reads_catches_rot_that_kept_the_size_and_mtime_of_a_verified_part(cli, tmp_path):
    """Bit rot under an unchanged size and mtime slips past the once-per-change cache; --verify-reads hashes anew."""
    import os

    reg = _make(cli, tmp_path)
    out = str(tmp_path / "out.jsonl")
    assert cli("export", "faq", "--format", "jsonl", "--out", out).returncode == 0  # verified, remembered
    _, part = _part(reg)
    st = part.stat()
    data = bytearray(part.read_bytes())
    data[len(data) // 3] ^= 0x01
    part.write_bytes(bytes(data))
    os.utime(part, ns=(st.st_atime_ns, st.st_mtime_ns))  # rot that leaves size and mtime alone
    assert cli("export", "faq", "--format", "jsonl", "--out", out).returncode == 0  # the documented trade-off
    p = cli("export", "faq", "--format", "jsonl", "--out", out, "--verify-reads")
    assert p.returncode == 1 and "sha256" in p.stderr and part.name in p.stderr and "Traceback" not in p.stderr


def test_the_error_boundary_prints_one_line_and_debug_shows_the_traceback(cli, tmp_path):
    reg = _make(cli, tmp_path)
    m = reg.resolve("faq@v2")
    (reg.root / "datasets" / "faq" / m.location / "quarantine.parquet").write_bytes(b"PAR1 not really")
    p = cli("registry", "quarantine", "faq@v2")
    assert p.returncode == 1 and "Traceback" not in p.stderr and "cannot read the data" in p.stderr
    assert len(p.stderr.strip().splitlines()) <= 3
    d = cli("--debug", "registry", "quarantine", "faq@v2")
    assert d.returncode != 0 and "Traceback" in d.stderr


def test_secrets_are_scrubbed_before_a_message_is_cut_and_masked_in_generated_text(monkeypatch):
    from datakit.generate.client import Result, _describe
    from datakit.secrets import scrub

    key = "sk-datakit-planted-0123456789abcdefghijklmnopqrstuv"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-5f4e3d2c1b")
    long_echo = RuntimeError("x" * 470 + f" server says: invalid key {key} for MY_SERVICE tok-5f4e3d2c1b")
    described = _describe(long_echo, 10)
    assert key[:12] not in described and "tok-5f4e3d2c1b" not in described  # no fragment survives the cut
    r = Result(key="k", text=f"Sure! Your key is {key}.")
    assert r.secret_masked and key not in r.text and r.text == "Sure! Your key is ***."
    assert scrub("nothing secret here") == "nothing secret here"


def test_names_with_a_trailing_newline_and_exports_into_the_registry_are_refused(reg, tmp_path):
    from datakit.io.export import export
    from datakit.registry.names import check_name

    with pytest.raises(DatakitError):
        check_name("faq\n")
    reg.commit_frame("faq", "cpt", __import__("datakit.registry.rows", fromlist=["x"]).records_to_frame(
        "cpt", [{"text": "a"}]).drop("id"), op="test")
    m = reg.resolve("faq")
    target = reg.root / "datasets" / "faq" / m.location / "data" / "part-00000.parquet"
    with pytest.raises(DatakitError, match="inside the registry"):
        export(reg, "faq", "parquet", target)
    assert reg.load("faq")["text"].to_list() == ["a"]


def test_trust_remote_code_on_mlx_is_refused_instead_of_ignored(tmp_path):
    from datakit.train.recipe import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text("name: r\nbackend: mlx\nbase_model: m\ntrust_remote_code: true\n"
                    "stages: [{stage: sft, data: faq}]\n")
    with pytest.raises(DatakitError, match="trust_remote_code"):
        load_recipe(path)


def test_repair_lists_then_applies_the_safe_fixes_and_deletes_nothing(cli, tmp_path):
    from datakit.registry.verify import gc

    reg = _make(cli, tmp_path)
    reg.tag("faq@v2", "prod")
    reg.tag("faq@v1", "baseline")
    _, part = _part(reg, "faq@v2")
    _damage("flipped-byte", reg, tmp_path)
    before = sorted(p for p in (tmp_path / "registry").rglob("*") if p.is_file())
    plan = cli("registry", "repair", "--json", check_json=True).json
    assert [(f["action"], f["target"]) for f in plan["fixes"]] == [("quarantine-version", "faq@v2"), ("rewrite-tags", "faq")]
    assert sorted(p for p in (tmp_path / "registry").rglob("*") if p.is_file()) == before  # a plan changes nothing
    assert cli("registry", "repair", "--yes").returncode == 0
    assert cli("registry", "verify").returncode == 0
    fresh = Registry(tmp_path / "registry")
    assert [m.version for m in fresh.versions("faq")] == ["v1"] and fresh.tags("faq") == {"baseline": "v1"}
    assert part.exists() and gc(fresh, grace_s=0) == [] and part.exists()  # the damaged data is kept, not collected
    assert cli("ingest", str(write_jsonl(tmp_path / "c.jsonl", [chat("new", "row")])), "--name", "faq",
               "--kind", "sft").returncode == 0
    assert Registry(tmp_path / "registry").resolve("faq").version == "v3"  # a quarantined number is never reused


def test_a_planted_key_reaches_no_file_written_and_no_line_printed(cli, tmp_path, monkeypatch):
    """A server that echoes the key in completions and in its errors: augment (a kept row, a flagged row) and the
    eval runner's 5xx. The key is in the environment only; every file under the test's folder is grepped."""
    from datakit.evals.runners import make_runner
    from tests.conftest import chat_completion, json_server

    key = "sk-datakit-planted-9f8e7d6c5b4a39281706"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    calls = []

    def respond(raw, headers):
        body = json.loads(raw)
        calls.append(body)
        said = headers["authorization"].removeprefix("Bearer ")
        if body.get("max_tokens") == 7:  # the eval's requests: a 5xx that quotes the key
            return 500, {"error": {"message": f"upstream rejected key {said}"}}
        prompt = body["messages"][-1]["content"]
        if "Rewrite the question" in prompt or "question" in prompt.split("\n")[0].lower():
            return 200, chat_completion("For how many days after buying can Acme customers get their money back?")
        return 200, chat_completion(f"Acme refunds purchases for 30 days after you buy them (auth {said}).")

    write_jsonl(tmp_path / "src.jsonl", [chat("How long is Acme's refund window?", "Acme gives refunds for 30 days.")])
    with json_server(respond) as url:
        printed = [cli("ingest", str(tmp_path / "src.jsonl"), "--name", "src", "--kind", "sft")]
        printed.append(cli("augment", "src", "--n", "1", "--generator", f"openai:m@{url}", "--name", "aug",
                           "--threshold", "0.99"))
        printed.append(cli("export", "aug", "--format", "jsonl", "--out", str(tmp_path / "aug.jsonl")))
        runner = make_runner("openai", f"openai:m@{url}")
        with pytest.raises(DatakitError) as e:
            runner.generate([[{"role": "user", "content": "hi"}]], max_new_tokens=7, temperature=0.0, seed=0,
                            batch_size=1)
    assert "answered 500" in str(e.value) and "stopped after 0 of 1" in str(e.value) and key not in str(e.value)
    assert printed[1].returncode == 0, printed[1].stderr
    rows = [json.loads(x) for x in (tmp_path / "aug.jsonl").read_text().splitlines()]
    flagged = [r for r in rows if (r.get("meta") or {}).get("secret_masked")]
    assert len(rows) == 2 and len(flagged) == 1 and "(auth ***)" in flagged[0]["messages"][1]["content"]
    assert Registry(tmp_path / "registry").resolve("aug").stats["secret_masked"] == 1
    leaks = [str(f) for f in tmp_path.rglob("*") if f.is_file() and key.encode() in f.read_bytes()]
    assert leaks == [] and not any(key in p.stdout + p.stderr for p in printed)
    assert len(calls) >= 3
