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
            reg.commit_frame("faq", "cpt", __import__("polars").DataFrame({"text": ["a"]}), op="test")
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
