"""The Ray engine runs dedup's own per-batch functions as Ray Data tasks on a local cluster (one per session)
and commits the very version the local engine commits, on a local registry and on one in a bucket."""

from __future__ import annotations

import json

import pytest

from datakit.ops.dedup import run_dedup
from tests.test_streamed_ops import planted_inputs, tiny_batches

pytestmark = pytest.mark.ray


def same_versions(reg, a: list[dict], b: list[dict]) -> None:
    for x, y in zip(a, b):
        assert x["content_hash"] == y["content_hash"] and x["stats"] == y["stats"]
        assert reg.extra(reg.resolve(x["ref"]), "clusters.parquet").equals(reg.extra(reg.resolve(y["ref"]), "clusters.parquet"))


def test_ray_engine_commits_the_local_engines_version(any_reg, tmp_path, external, monkeypatch, ray_cluster):
    refs = planted_inputs(any_reg, tmp_path, external)
    tiny_batches(monkeypatch)  # many batches and partitions: the shuffle and the ordering are exercised
    monkeypatch.setenv("DATAKIT_BATCH_ROWS", "150")
    local = run_dedup(any_reg, refs, ["l-c4", "l-more", "l-alpaca"], near=True, threshold=0.7, trim_boilerplate=True)
    ray = run_dedup(any_reg, refs, ["r-c4", "r-more", "r-alpaca"], near=True, threshold=0.7, trim_boilerplate=True,
                    engine="ray")
    same_versions(any_reg, local, ray)
    assert sum(r["stats"]["removed_near"] for r in ray) >= 25  # the planted copies were found through Ray
    assert any_reg.resolve("r-c4").params["inputs"] == [f"{r}@v1" for r in refs]
    m = any_reg.resolve("r-c4")
    assert len(m.data_files) > 1 and any_reg.load(m).height == m.rows  # parts written by the workers, readable
    any_reg.check(m)


def test_cli_joins_a_running_cluster_and_DATAKIT_ENGINE_selects_ray(reg, cli, tmp_path, external, ray_cluster):
    refs = planted_inputs(reg, tmp_path, external)[:1]
    local = cli("dedup", *refs, "--name", "c4-local", "--near", "--json", check_json=True)
    joined = cli("dedup", *refs, "--name", "c4-ray", "--near", "--engine", "ray", "--ray-address", ray_cluster, "--json",
                 check_json=True)
    assert joined.returncode == 0, joined.stderr[-2000:]
    assert joined.json[0]["content_hash"] == local.json[0]["content_hash"]
    assert "Traceback" not in joined.stderr and "INFO" not in joined.stderr  # Ray's own logging kept quiet
    import os

    os.environ["DATAKIT_ENGINE"] = "ray"  # in-process: reuses the session's cluster
    try:
        [by_env] = run_dedup(reg, refs, ["c4-env"], near=True)
    finally:
        del os.environ["DATAKIT_ENGINE"]
    assert by_env["content_hash"] == local.json[0]["content_hash"]
    assert json.loads(json.dumps(by_env["stats"])) == local.json[0]["stats"]
