"""Ops in bounded memory: dedup, decontam, normalize and mix streamed through disk in tiny batches and partitions
give exactly what the in-memory path gives (same removed rows, same report, same content hash), and dedup and mix
run under a hard memory limit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from datakit.io.ingest import ingest
from datakit.ops import dup_find, engine, runner
from datakit.ops.dedup import dedup, run_dedup
from datakit.ops.mix import SOURCES_FILE, mix, run_mix
from datakit.ops.mix_spec import MixtureSpec
from datakit.registry.rows import content_hash
from datakit.schemas import stored_schema
from tests.conftest import write_jsonl
from tests.test_dedup import c4_with_planted
from tests.test_mix import demo


def tiny_batches(monkeypatch) -> None:
    """Batches of 37 rows, partitions of a few hundred band entries, grouped rows flushed every 500 and 7 pairs
    verified at a time: every boundary of the streaming path is crossed many times."""
    monkeypatch.setenv("DATAKIT_BATCH_ROWS", "37")
    monkeypatch.setattr(dup_find, "PARTITION_ENTRIES", 300)
    monkeypatch.setattr(dup_find, "VERIFY_PAIRS", 7)
    monkeypatch.setattr(engine, "FLUSH_ROWS", 500)


def planted_inputs(reg, tmp_path, external) -> list[str]:
    """c4 with 30 planted near-copies; a second dataset with exact copies of c4 rows; alpaca with case copies."""
    path, _, _ = c4_with_planted(tmp_path, external)
    ingest(reg, [path], name="c4", kind="cpt")
    c4 = [json.loads(x)["text"] for x in (external / "c4_demo.jsonl").read_text().splitlines()]
    ingest(reg, [write_jsonl(tmp_path / "more.jsonl", [{"text": c4[7]}, {"text": "  " + c4[7].upper()}, {"text": c4[9]},
                                                       {"text": "A row of its own that nothing else repeats."}])],
           name="more", kind="cpt")
    src = json.loads((external / "alpaca_en_demo.json").read_text())
    (tmp_path / "a.json").write_text(json.dumps(src + [{**src[i], "instruction": src[i]["instruction"].upper()} for i in (3, 30)]))
    ingest(reg, [tmp_path / "a.json"], name="alpaca", kind="sft")
    return ["c4", "more", "alpaca"]


@pytest.mark.parametrize("opts", [
    {"near": False},
    {"near": True, "threshold": 0.8},
    {"near": True, "threshold": 0.7, "keep": "longest", "trim_boilerplate": True},
])
def test_streamed_dedup_equals_the_in_memory_path(reg, tmp_path, external, monkeypatch, opts):
    refs = planted_inputs(reg, tmp_path, external)
    inputs = runner.load(reg, refs)
    in_memory = dedup(inputs, **opts)
    assert sum(o.stats["removed"] for o in in_memory) > (30 if opts["near"] else 3)  # the planted copies are found

    tiny_batches(monkeypatch)
    results = run_dedup(reg, refs, ["s-c4", "s-more", "s-alpaca"], **opts)
    for (m, _), mem, res in zip(inputs, in_memory, results):
        streamed = reg.resolve(res["ref"])
        assert res["stats"] == mem.stats
        assert reg.extra(streamed, "clusters.parquet").equals(mem.extras["clusters.parquet"])
        assert streamed.content_hash == content_hash(m.kind, [mem.frame])[0]
        assert streamed.rows == mem.frame.height
        assert len(streamed.data_files) > 1 or m.rows <= 37  # written a batch at a time
    assert not list((reg.local_dir(".staging")).glob("work-*"))  # working files removed


def test_streamed_dedup_of_an_empty_and_a_one_row_input(reg, tmp_path):
    ingest(reg, [write_jsonl(tmp_path / "one.jsonl", [{"text": "just one row here"}])], name="one", kind="cpt")
    [res] = run_dedup(reg, ["one"], ["one-d"], near=True)
    assert (res["stats"]["rows_in"], res["stats"]["rows_out"], res["stats"]["lsh"]["candidate_pairs"]) == (1, 1, 0)


def leaky_c4(reg, tmp_path, external, method: str) -> None:
    """c4 with four rows that contain (ngram) or are (near) wiki sentences; the eval sets `probes` and `sents`."""
    from tests.test_decontam import wiki_probes

    probes, sents = wiki_probes(tmp_path, external)
    ingest(reg, [probes], name="probes", kind="probes")
    c4 = [json.loads(x) for x in (external / "c4_demo.jsonl").read_text(encoding="utf-8").splitlines()]
    for row, sent in {10: 0, 77: 3, 150: 7, 299: 9}.items():  # the last row sits in the last batch
        c4[row]["text"] = sents[sent] if method == "near" else c4[row]["text"][:200] + " " + sents[sent]
    ingest(reg, [write_jsonl(tmp_path / "c4.jsonl", c4)], name="c4", kind="cpt")
    ingest(reg, [write_jsonl(tmp_path / "s.jsonl", [{"text": s} for s in sents])], name="sents", kind="cpt")


@pytest.mark.parametrize("method", ["ngram", "near"])
def test_streamed_decontam_equals_the_in_memory_path(reg, tmp_path, external, monkeypatch, method):
    from datakit.ops.decontam import decontam, run_decontam

    leaky_c4(reg, tmp_path, external, method)
    mem = decontam(runner.load(reg, ["c4"])[0], runner.load(reg, ["probes", "sents"]), method=method)
    assert mem.stats["removed"] == 4
    tiny_batches(monkeypatch)
    [res] = run_decontam(reg, "c4", ["probes", "sents"], ["c4-clean"], method=method)
    streamed = reg.resolve(res["ref"])
    assert res["stats"] == mem.stats
    assert reg.extra(streamed, "leaks.parquet").equals(mem.extras["leaks.parquet"])
    assert streamed.content_hash == content_hash("cpt", [mem.frame])[0] and len(streamed.data_files) > 1


def unnormalized(reg, tmp_path) -> None:
    """`n`: 200 cpt rows, every tenth in NFD Korean, the rest with doubled spaces."""
    import unicodedata

    rows = [{"text": unicodedata.normalize("NFD", f"회사 {i} 서울") if i % 10 == 0 else f"row {i}  plain"} for i in range(200)]
    ingest(reg, [write_jsonl(tmp_path / "n.jsonl", rows)], name="n", kind="cpt")


def test_streamed_normalize_counts_changes_across_batches(reg, tmp_path, monkeypatch):
    from datakit.ops.normalize import normalize, run_normalize

    unnormalized(reg, tmp_path)
    [(m, df)] = runner.load(reg, ["n"])
    mem = normalize((m, df))
    in_memory, _ = runner.commit(reg, name="n-mem", kind="cpt", inputs=[m], op="normalize", params={}, out=mem)
    tiny_batches(monkeypatch)
    [res] = run_normalize(reg, "n", ["n-nfc"])
    assert res["stats"] == mem.stats and res["stats"]["rows_changed"] == 200  # NFC and doubled spaces
    assert reg.resolve(res["ref"]).content_hash == in_memory.content_hash
    assert len(reg.resolve(res["ref"]).data_files) > 1


def test_progress_reports_every_step(reg, tmp_path, external, monkeypatch):
    refs = planted_inputs(reg, tmp_path, external)
    tiny_batches(monkeypatch)
    seen: dict[str, tuple[int, int]] = {}
    run_dedup(reg, refs, ["p-c4", "p-more", "p-alpaca"], near=True,
              progress=lambda step, done, total: seen.__setitem__(step, (done, total)))
    assert set(seen) == {"reading", "signing", "verifying"}
    assert all(done == total for done, total in seen.values())
    assert seen["reading"][1] == sum(reg.resolve(r).rows for r in refs)


def mix_inputs(reg, external) -> None:
    """The real chat datasets, and the identity seeds as an identity-kind version (their intent and lang go to
    the side file when they mix into sft)."""
    demo(reg, external)
    seeds = reg.load("identity-seeds").drop("id").with_columns(intent=pl.lit("affirm"), lang=pl.lit("en"))
    reg.commit_frame("acme-identity", "identity", seeds.select(list(stored_schema("identity"))[1:]), op="test")


@pytest.mark.parametrize("kw", [
    {"unit": "rows", "total": 1700, "max_repeats": 4},  # upsampled: repeats of a row land in different batches
    {"unit": "tokens", "total": 90_000, "max_repeats": 4},
    {"unit": "rows"},  # the natural size
])
def test_streamed_mix_equals_the_in_memory_path(reg, external, monkeypatch, kw):
    mix_inputs(reg, external)
    spec = MixtureSpec.model_validate({"name": "mixed", "seed": 11, **kw, "components": [
        {"dataset": "acme-identity", "weight": 0.2}, {"dataset": "alpaca-en", "weight": 0.5},
        {"dataset": "alpaca-zh", "weight": 0.3}]})
    inputs = runner.load(reg, [c.dataset for c in spec.components])
    in_memory = mix(inputs, spec)
    mem, _ = runner.commit(reg, name="in-memory", kind="sft", inputs=[m for m, _ in inputs], op="mix", params={},
                           out=in_memory)

    tiny_batches(monkeypatch)
    monkeypatch.setattr(engine, "FLUSH_BYTES", 40_000)  # the shuffled rows are spilled in many small runs
    res = run_mix(reg, spec)
    assert res.manifest.content_hash == mem.content_hash and res.rows_out == in_memory.frame.height  # type: ignore[union-attr]
    assert res.manifest.stats == in_memory.stats
    side = reg.extra(res.manifest, SOURCES_FILE)
    assert side.equals(in_memory.extras[SOURCES_FILE])  # type: ignore[arg-type]
    assert side["dropped_fields"].drop_nulls().unique().to_list() == ['{"intent":"affirm","lang":"en"}']
    assert len(res.manifest.data_files) == -(-res.rows_out // 37)  # written a batch at a time
    assert reg.load(res.manifest)["id"].equals(side["source_id"]) is False  # identity rows get sft ids ...
    alpaca = side.with_row_index().filter(pl.col("component") != "acme-identity@v1")
    assert reg.load(res.manifest)["id"].gather(alpaca["index"]).equals(alpaca["source_id"], check_names=False)  # ... sft rows keep theirs
    assert not list((reg.local_dir(".staging")).glob("work-*"))  # working files removed


CHILD = textwrap.dedent("""
    import resource, sys
    from datakit.registry.store import Registry
    from datakit.ops import dup_find, engine, runner
    from datakit.ops.dedup import dedup, run_dedup
    dup_find.PARTITION_ENTRIES, engine.FLUSH_ROWS, dup_find.VERIFY_PAIRS = 200_000, 50_000, 5_000
    reg = Registry(sys.argv[1])
    if sys.argv[3] != "0":  # no cgroup: cap the address space at what a warmed-up process has plus the headroom
        run_dedup(reg, ["warm"], ["warm-d"], near=True)  # every thread, pool and allocator arena started
        limit = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024 + int(sys.argv[3]) * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if sys.argv[2] == "memory":
        outs = dedup(runner.load(reg, ["big"]), near=True)
        print("removed", outs[0].stats["removed"])
    else:
        [r] = run_dedup(reg, ["big"], ["big-d"], near=True)
        print("removed", r["stats"]["removed"])
        from datakit.ops.mix import run_mix
        from datakit.ops.mix_spec import MixtureSpec
        res = run_mix(reg, MixtureSpec(name="big-mix", seed=1, total=1_000_000, max_repeats=2,
                                       components=[{"dataset": "big-d", "weight": 1}]))
        print("mixed", res.rows_out)
""")
CAP_MB = 350  # the whole child's memory (cgroup); streamed peak RSS measured ~230 MB with the knobs in CHILD
# (it was ~350 when a flush concatenated then partitioned its whole buffer: CI killed it)
AS_HEADROOM_MB = 1024  # without a cgroup: address space above a warmed-up start (allocators reserve more than they use)


def memory_cgroup() -> Path | None:
    """A fresh memory cgroup (v1 or v2) this process may create, or None."""
    for base, limit in ((Path("/sys/fs/cgroup/memory"), "memory.limit_in_bytes"), (Path("/sys/fs/cgroup"), "memory.max")):
        if os.environ.get("DATAKIT_TEST_MEMCAP") == "rlimit" or not (base / "cgroup.procs").exists():
            continue
        cg = base / f"datakit-test-{os.getpid()}"
        try:
            cg.mkdir()
            (cg / limit).write_text(str(CAP_MB * 2**20))
            return cg
        except OSError:
            if cg.exists():
                cg.rmdir()
    return None


def synthetic_corpus(path, n: int, words: int, copies: int, seed: int = 0) -> int:
    """n documents of `words` words from a 30,000-word vocabulary (Zipf-like), the last `copies` near-copies
    (one word changed) of the first ones, as JSONL; returns the bytes of text."""
    rng = np.random.default_rng(seed)
    vocab = pl.Series([f"w{i:x}{'abcdefghij'[i % 10]}" for i in range(30_000)])
    p = 1.0 / (np.arange(30_000) + 10.0)
    ids = rng.choice(30_000, size=(n, words), p=p / p.sum())
    ids[n - copies:] = ids[:copies]
    ids[np.arange(n - copies, n), rng.integers(0, words, copies)] = 29_999  # one word changed
    text = vocab.gather(ids.ravel()).reshape((n, words)).arr.join(" ")
    pl.DataFrame({"text": text}).write_ndjson(path)
    return int(text.str.len_bytes().sum())


def test_dedup_and_mix_run_under_a_hard_memory_limit_smaller_than_their_corpus(reg, tmp_path):
    """A child in a memory cgroup capped at CAP_MB (RSS and page cache; the kernel kills it past the cap) near-
    deduplicates a corpus whose text alone is larger than the cap, finding every planted copy, and mixes the result
    up to a million rows (external shuffle: 540 MB of text through the cap); loading the corpus
    into memory, as the in-memory path does, is killed under the same cap. Where no cgroup can be made, the cap is
    a hard address-space limit (RLIMIT_AS) AS_HEADROOM_MB above a warmed-up start, which the in-memory path also
    breaks (allocators reserve address space well beyond what they touch, so that cap cannot be as tight)."""
    text_bytes = synthetic_corpus(tmp_path / "big.jsonl", 700_000, 100, copies=60)
    assert text_bytes > CAP_MB * 2**20  # the corpus does not fit under the cap
    ingest(reg, [tmp_path / "big.jsonl"], name="big", kind="cpt")
    (tmp_path / "big.jsonl").unlink()
    synthetic_corpus(tmp_path / "warm.jsonl", 20_000, 100, copies=10, seed=1)
    ingest(reg, [tmp_path / "warm.jsonl"], name="warm", kind="cpt")
    env = {**os.environ, "DATAKIT_BATCH_ROWS": "5000", "POLARS_MAX_THREADS": "2"}
    cg = memory_cgroup()
    try:
        def child(mode: str) -> subprocess.CompletedProcess:
            join = (lambda: (cg / "cgroup.procs").write_text(str(os.getpid()))) if cg else None
            return subprocess.run([sys.executable, "-c", CHILD, str(reg.root), mode, "0" if cg else str(AS_HEADROOM_MB)],
                                  env=env, capture_output=True, text=True, timeout=900, preexec_fn=join)

        streamed = child("streamed")
        assert streamed.returncode == 0, streamed.stderr[-3000:]
        assert "removed 60" in streamed.stdout
        assert reg.resolve("big-d").rows == 700_000 - 60
        assert "mixed 1000000" in streamed.stdout  # and the deduplicated corpus upsampled and shuffled by mix
        assert reg.resolve("big-mix").rows == 1_000_000
        in_memory = child("memory")
        assert in_memory.returncode != 0, "the cap should be too small for the corpus in memory"
    finally:
        if cg:
            cg.rmdir()


def test_an_unknown_engine_or_unreachable_cluster_is_a_clear_error(cli, tmp_path):
    cli("ingest", str(write_jsonl(tmp_path / "t.jsonl", [{"text": "one row"}, {"text": "another row"}])), "--name", "t",
        "--kind", "cpt")
    bad = cli("dedup", "t", "--name", "t2", "--engine", "spark")
    assert bad.returncode in (1, 2) and "engine 'spark': use one of local, ray" in bad.stderr
    assert "Traceback" not in bad.stderr
    env_bad = cli("dedup", "t", "--name", "t2", "--engine", "ray", "--ray-address", "127.0.0.1:1")
    assert env_bad.returncode in (1, 2) and "Ray cluster at 127.0.0.1:1" in env_bad.stderr, env_bad.stderr[-1500:]
    assert "Traceback" not in env_bad.stderr
