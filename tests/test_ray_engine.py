"""The Ray engine runs dedup's, decontam's, normalize's and mix's own per-batch functions as Ray Data tasks on a local cluster (one per
session) and commits the very version the local engine commits, on a local registry and on one in a bucket."""

from __future__ import annotations

import json

import pytest

from datakit.ops.dedup import run_dedup
from datakit.ops.mix import SOURCES_FILE, run_mix
from datakit.ops.decontam import run_decontam
from datakit.ops.normalize import run_normalize
from tests.test_streamed_ops import leaky_c4, mix_inputs, planted_inputs, tiny_batches, unnormalized

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


MIXTURE = """name: {name}
seed: 4
total: 1200
max_repeats: 4
{engine}components:
  - {{dataset: acme-identity, weight: 0.3}}
  - {{dataset: alpaca-en, weight: 0.4}}
  - {{dataset: alpaca-zh, weight: 0.3}}
"""


def test_mix_on_ray_commits_the_local_engines_version_and_engine_in_the_yaml_selects_it(any_reg, tmp_path, external,
                                                                                        monkeypatch, ray_cluster):
    mix_inputs(any_reg, external)
    monkeypatch.setenv("DATAKIT_BATCH_ROWS", "300")  # four output batches: Ray's shuffle loses their order, the sort restores it
    (tmp_path / "local.yaml").write_text(MIXTURE.format(name="m-local", engine=""))
    (tmp_path / "ray.yaml").write_text(MIXTURE.format(name="m-ray", engine="engine: ray\n"))
    local = run_mix(any_reg, tmp_path / "local.yaml")
    ray = run_mix(any_reg, tmp_path / "ray.yaml")  # the YAML's engine; the session's cluster is reused
    assert ray.manifest.content_hash == local.manifest.content_hash and ray.components == local.components
    assert any_reg.extra(ray.manifest, SOURCES_FILE).equals(any_reg.extra(local.manifest, SOURCES_FILE))
    assert len(ray.manifest.data_files) == 4 and any_reg.load(ray.manifest).height == 1200  # parts by the workers
    assert "engine" not in ray.manifest.params  # where it ran is not part of what it is
    any_reg.check(ray.manifest)


def test_decontam_and_normalize_on_ray_commit_the_local_engines_versions(reg, tmp_path, external, monkeypatch,
                                                                          ray_cluster):
    leaky_c4(reg, tmp_path, external, "ngram")
    unnormalized(reg, tmp_path)
    monkeypatch.setenv("DATAKIT_BATCH_ROWS", "70")  # several batches: offsets and order across tasks
    [local] = run_decontam(reg, "c4", ["probes", "sents"], ["c4-l"])
    [ray] = run_decontam(reg, "c4", ["probes", "sents"], ["c4-r"], engine="ray")
    assert ray["content_hash"] == local["content_hash"] and ray["stats"] == local["stats"]
    assert ray["stats"]["removed"] == 4
    assert reg.extra(reg.resolve("c4-r"), "leaks.parquet").equals(reg.extra(reg.resolve("c4-l"), "leaks.parquet"))
    [local] = run_normalize(reg, "n", ["n-l"])
    [ray] = run_normalize(reg, "n", ["n-r"], engine="ray")
    assert ray["content_hash"] == local["content_hash"] and ray["stats"] == local["stats"]
    assert ray["stats"]["rows_changed"] == 200 and len(reg.resolve("n-r").data_files) == 3
