"""A registry in a bucket (the loopback S3 server): the CLI end to end on an s3:// root, refusal of a store
that ignores create-only puts, and no credential in anything written or printed."""

from __future__ import annotations

import json

import pytest

from datakit.errors import DatakitError
from datakit.registry.store import Registry
from tests.conftest import S3_SECRET
from tests.helpers import header_dropping_proxy


def test_a_store_that_ignores_create_only_puts_is_refused_before_anything_is_written(s3_server, s3_root, monkeypatch):
    proxy, endpoint = header_dropping_proxy.start(s3_server)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        reg = Registry(s3_root + "-via-proxy")
        with pytest.raises(DatakitError, match="does not honour create-only writes"):
            _faq(reg, 1)
        monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
        assert list(Registry(s3_root + "-via-proxy").storage.list("datasets")) == []  # nothing was written
    finally:
        proxy.shutdown()


def test_the_cli_runs_on_a_bucket_root_and_never_writes_or_prints_a_credential(cli, s3_root, tmp_path, external):
    run = lambda *a: cli(*a, registry=s3_root, check_json="--json" in a)
    outputs = []
    for args in (("ingest", str(external / "c4_demo.jsonl"), "--name", "c4", "--kind", "cpt"),
                 ("dedup", "c4", "--near", "--name", "c4-clean"),
                 ("registry", "tag", "c4-clean@v1", "baseline"),
                 ("export", "c4-clean@baseline", "--format", "jsonl", "--out", str(tmp_path / "c4.jsonl"))):
        p = run(*args)
        assert p.returncode == 0, p.stderr
        outputs.append(p.stdout + p.stderr)
    ls = run("registry", "ls", "--json")
    assert {d["name"] for d in ls.json} == {"c4", "c4-clean"}
    log = run("registry", "log", "c4-clean", "--json").json
    assert log[0]["op"] == "dedup" and log[0]["parents"][0]["ref"] == "c4@v1"
    show = run("registry", "show", "c4-clean@baseline", "--json").json
    assert show["location"].startswith("parts/") and show["rows"] == len((tmp_path / "c4.jsonl").read_text().splitlines())
    verify = run("registry", "verify", "--json")
    assert verify.returncode == 0 and verify.json["checked"] == 2 and verify.json["problems"] == []
    outputs += [ls.stdout, verify.stdout]

    reg = Registry(s3_root)
    written = [reg.storage.get(o["path"]) for o in reg.storage.list("")]
    assert len(written) >= 6
    for blob in written + [o.encode() for o in outputs] + [p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()]:
        assert S3_SECRET.encode() not in blob and b"AKIADATAKITTESTKEY01" not in blob
    assert json.loads(reg.storage.get("datasets/c4-clean/v1/manifest.json"))["params"]["inputs"] == ["c4@v1"]


def _faq(reg: Registry, n: int, tag: str = "") -> None:
    from datakit.registry.rows import records_to_frame

    rows = [{"text": f"{tag}row {i} of version {n}"} for i in range(200 * n)]
    reg.commit_frame("faq", "cpt", records_to_frame("cpt", rows).drop("id"), op="test", params={"n": n})


def _objects(reg: Registry) -> dict[str, bytes]:
    return {o["path"]: reg.storage.get(o["path"]) for o in reg.storage.list("datasets")
            if "/tags/" not in o["path"]}


def test_push_to_a_bucket_and_pull_back_arrive_bit_for_bit_and_only_missing_files_travel(cli, tmp_path, s3_root, external):
    laptop = tmp_path / "laptop"
    cli("ingest", str(external / "c4_demo.jsonl"), "--name", "c4", "--kind", "cpt", registry=laptop)
    cli("dedup", "c4", "--near", "--name", "c4-clean", registry=laptop)
    _faq(Registry(laptop), 1)
    _faq(Registry(laptop), 2)
    push = cli("registry", "push", "--all", s3_root, "--json", registry=laptop, check_json=True)
    assert push.returncode == 0, push.stderr
    files = sum(len(m.files) for n in Registry(laptop).names() for m in Registry(laptop).versions(n))
    assert (push.json["copied"], push.json["present"], push.json["files_copied"]) == (4, 0, files)
    again = cli("registry", "push", "faq", s3_root, "--json", registry=laptop, check_json=True).json
    assert (again["copied"], again["present"], again["files_copied"]) == (0, 2, 0)

    other = tmp_path / "colleague"
    pull = cli("registry", "pull", "c4-clean", s3_root, "--json", registry=other, check_json=True)
    assert pull.returncode == 0 and [v["ref"] for v in pull.json["versions"]] == ["c4-clean@v1"]
    cli("registry", "pull", "--all", s3_root, registry=other)
    src, bucket, dst = Registry(laptop), Registry(s3_root), Registry(other)
    assert _objects(src) == _objects(bucket) == _objects(dst)  # same keys, same bytes: manifests and lineage unchanged
    assert cli("registry", "verify", registry=other).returncode == 0
    assert dst.resolve("c4-clean").parents[0].ref == "c4@v1" and dst.load("faq@v2").height == 400


def test_a_version_number_that_means_different_content_on_the_other_side_is_refused(cli, tmp_path, s3_root):
    _faq(Registry(tmp_path / "mine"), 1)
    _faq(Registry(s3_root), 1, tag="theirs ")
    p = cli("registry", "push", "faq", s3_root, registry=tmp_path / "mine")
    assert p.returncode == 2 and "already has a different v1" in p.stderr and "faq-mine" in p.stderr
    assert Registry(s3_root).load("faq@v1")["text"][0].startswith("theirs")


def test_a_push_killed_mid_copy_is_invisible_and_a_rerun_completes_it(tmp_path, s3_root):
    import os
    import signal
    import subprocess
    import sys
    import time

    laptop = Registry(tmp_path / "laptop")
    for n in range(1, 9):
        _faq(laptop, n)
    env = {**os.environ, "DATAKIT_REGISTRY": str(tmp_path / "laptop")}
    proc = subprocess.Popen([sys.executable, "-m", "datakit.cli", "registry", "push", "faq", s3_root], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    bucket = Registry(s3_root)
    deadline = time.time() + 60
    while not list(bucket.storage.list("datasets")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    seen = [m.version for m in bucket.versions("faq")]
    assert seen == [f"v{i}" for i in range(1, len(seen) + 1)]  # whole versions only, in order
    assert __import__("datakit.registry.verify", fromlist=["verify"]).verify(bucket)[1] == []
    from datakit.registry.remotes import copy_versions, select

    copy_versions(laptop, bucket, select(laptop, "faq", every=False))
    assert _objects(laptop) == _objects(bucket)  # nothing duplicated, nothing missing
    assert [m.content_hash for m in bucket.versions("faq")] == [m.content_hash for m in laptop.versions("faq")]
