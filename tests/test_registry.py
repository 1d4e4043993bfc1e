"""Registry contract: names, refs, immutable content-addressed versions, lineage, verify, diff, gc.

Every test runs twice: on a local folder and on a bucket of the loopback S3 server (`any_reg`)."""

from __future__ import annotations

import io
import json

import polars as pl
import pytest

from datakit.errors import DatakitError
from datakit.io.export import export_rows
from datakit.io.ingest import ingest
from datakit.registry.rows import frame_to_records, records_to_frame
from datakit.registry.storage import sha256_bytes
from datakit.registry.store import parquet_bytes
from datakit.registry.verify import diff, gc, verify
from tests.conftest import chat, write_jsonl


@pytest.fixture
def reg(any_reg):
    return any_reg


def objects(reg, prefix):
    return sorted(o["path"] for o in reg.storage.list(prefix))


def commit_chats(reg, name, pairs, **kw):
    df = records_to_frame("sft", [chat(q, a) for q, a in pairs]).drop("id")
    return reg.commit_frame(name, "sft", df, op=kw.pop("op", "test"), **kw)


def test_identical_content_returns_the_existing_version_and_creates_nothing(reg, tmp_path, external):
    first = ingest(reg, [external / "c4_demo.jsonl"], name="c4", kind="cpt")
    before = objects(reg, "datasets/c4")
    again = ingest(reg, [external / "c4_demo.jsonl"], name="c4", kind="cpt")
    assert (first.created, again.created) == (True, False)
    assert again.manifest.version == "v1" and again.manifest.content_hash == first.manifest.content_hash
    assert objects(reg, "datasets/c4") == before  # the second writer's parts were removed
    assert reg.storage.dirs("datasets/c4/parts") == [first.manifest.location.split("/")[1]]


def test_changed_content_makes_the_next_version(reg):
    m1, _ = commit_chats(reg, "faq", [("a", "b")])
    m2, created = commit_chats(reg, "faq", [("a", "b"), ("c", "d")])
    assert (m1.version, m2.version, created) == ("v1", "v2", True)
    assert reg.resolve("faq").version == "v2"


@pytest.mark.parametrize("bad", ["acme/sft", "../escape", "has space", "UPPER", "a..b", "", "-lead", "x" * 101])
def test_unsafe_names_are_refused(reg, bad):
    with pytest.raises((ValueError, DatakitError), match="invalid dataset name"):
        commit_chats(reg, bad, [("a", "b")])


def test_refs_resolve_by_version_tag_and_hash_prefix(reg):
    m1, _ = commit_chats(reg, "faq", [("a", "b")])
    m2, _ = commit_chats(reg, "faq", [("c", "d")])
    reg.tag("faq@v1", "baseline")
    assert reg.resolve("faq").version == "v2"
    assert reg.resolve("faq@v1").content_hash == m1.content_hash
    assert reg.resolve("faq@baseline").version == "v1"
    assert reg.resolve(f"faq@{m2.content_hash[:8]}").version == "v2"
    with pytest.raises(DatakitError, match="no such version; faq has v1, v2 and tags baseline"):
        reg.resolve("faq@v9")
    with pytest.raises(DatakitError, match="no dataset named 'nope'"):
        reg.resolve("nope")
    with pytest.raises(DatakitError, match="looks like a version number"):
        reg.tag("faq@v1", "v3")


def test_moving_a_tag_reports_where_it_was(reg):
    commit_chats(reg, "faq", [("a", "b")])
    commit_chats(reg, "faq", [("c", "d")])
    reg.tag("faq@v1", "prod")
    m, before = reg.tag("faq@v2", "prod")
    assert (m.version, before) == ("v2", "v1") and reg.resolve("faq@prod").version == "v2"


def test_manifest_records_lineage_params_stats_and_file_checksums(reg, external):
    src = ingest(reg, [external / "identity.json"], name="idn", kind="sft").manifest
    df = reg.load(src).head(10).drop("id")
    m, _ = reg.commit_frame("idn-small", "sft", df, op="head", params={"n": 10}, parents=[reg.parent_of(src)],
                            stats={"dropped": src.rows - 10})
    assert m.parents[0].ref == "idn@v1" and m.parents[0].content_hash == src.content_hash
    assert (m.op, m.params, m.stats, m.rows) == ("head", {"n": 10}, {"dropped": 81}, 10)
    assert src.params["files"][0]["sha256"] == "fd029da7dd3df283ed034c82375d16d125a7b07cf1cb0316d03fb8743057d5f2"
    assert all(len(e.sha256) == 64 for e in m.files.values()) and "data/part-00000.parquet" in m.files
    on_disk = json.loads(reg.storage.get(f"datasets/idn-small/{m.version}/manifest.json"))
    assert on_disk["schema_version"] == 1 and on_disk["kind"] == "sft"


def test_verify_names_a_tampered_file_and_a_forged_row(reg):
    m, _ = commit_chats(reg, "faq", [("a", "b"), ("c", "d")])
    assert verify(reg) == (1, [])
    part = reg.file_key(m, "data/part-00000.parquet")
    df = pl.read_parquet(io.BytesIO(reg.storage.get(part)))
    forged = pl.concat([df.head(1), records_to_frame("sft", [chat("c", "FORGED")]).with_columns(id=pl.lit(df["id"][1]))])
    reg.storage.put(part, parquet_bytes(forged))
    _, problems = verify(reg, "faq@v1")
    assert any("sha256 mismatch" in p.problem and p.path.endswith("part-00000.parquet") for p in problems)
    reg.storage.put(reg.file_key(m, "stray.txt"), b"x")
    _, problems = verify(reg)
    assert any(p.problem == "file not listed in the manifest" for p in problems)


def test_verify_recomputes_row_ids_even_when_checksums_are_rewritten(reg):
    """Someone who edits rows and fixes the manifest checksums is still caught by the content check."""
    m, _ = commit_chats(reg, "faq", [("a", "b"), ("c", "d")])
    part = reg.file_key(m, "data/part-00000.parquet")
    df = pl.read_parquet(io.BytesIO(reg.storage.get(part)))
    edited = parquet_bytes(records_to_frame("sft", [chat("a", "b"), chat("c", "EDITED")]).with_columns(id=df["id"], meta=df["meta"]))
    reg.storage.put(part, edited)
    key = f"datasets/faq/{m.version}/manifest.json"
    man = json.loads(reg.storage.get(key))
    man["files"]["data/part-00000.parquet"].update(sha256=sha256_bytes(edited), bytes=len(edited))
    reg.storage.put(key, json.dumps(man).encode())
    _, problems = verify(reg)
    assert [p.problem for p in problems] == ["1 row ids do not match row content (first at row 2)"]


def test_diff_counts_added_and_removed_rows(reg):
    commit_chats(reg, "faq", [("a", "1"), ("b", "2"), ("c", "3")])
    commit_chats(reg, "faq", [("a", "1"), ("c", "3"), ("d", "4"), ("e", "5")])
    d = diff(reg, "faq@v1", "faq@v2")
    assert (d["added"], d["removed"], d["unchanged"]) == (2, 1, 2)
    assert [r["messages"][0]["content"] for r in d["added_examples"]] == ["d", "e"]
    assert d["removed_examples"][0]["messages"][0]["content"] == "b"


def test_gc_removes_unpublished_parts_only_once_older_than_the_grace_period(reg):
    """Parts of a commit that died before its manifest are removed by age (their own timestamps), never by
    process id: a writer in another container or on another machine has a pid this one cannot see."""
    m, _ = commit_chats(reg, "faq", [("a", "b")])
    stale = ["datasets/faq/parts/999999999-deadbeef", "datasets/faq/parts/12-cafe"]
    for prefix in stale:
        reg.storage.put(f"{prefix}/data/part-00000.parquet", b"partial")
    assert gc(reg) == []  # young: may be a live commit anywhere
    assert sorted(gc(reg, grace_s=0, dry_run=True)) == sorted(reg.storage.source(p) for p in stale)
    assert reg.storage.exists(f"{stale[0]}/data/part-00000.parquet")
    assert sorted(gc(reg, grace_s=0)) == sorted(reg.storage.source(p) for p in stale)
    assert reg.storage.dirs("datasets/faq/parts") == [m.location.split("/")[1]]  # the published version's parts stay
    assert verify(reg) == (1, [])


def test_gc_of_pre_protocol_staging_goes_by_age_and_never_follows_links(tmp_path):
    import os

    from datakit.registry.store import Registry

    reg = Registry(tmp_path / "registry")
    commit_chats(reg, "faq", [("a", "b")])
    old, young = reg.root / ".staging" / "999999999-deadbeef", reg.root / ".staging" / "1-cafe"
    (old / "data").mkdir(parents=True)
    young.mkdir()
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("x")
    (old / "link").symlink_to(precious)
    for p in (old / "data", old):
        os.utime(p, (0, 0))
    os.utime(old / "link", (0, 0), follow_symlinks=False)
    assert gc(reg, dry_run=True) == [str(old)] and old.exists()
    assert gc(reg) == [str(old)]
    assert not old.exists() and young.exists() and (precious / "keep.txt").exists()


def test_export_jsonl_round_trips_records_in_order(reg, tmp_path, external):
    ingest(reg, [external / "glaive_toolcall_en_demo.json"], name="g", kind="sft")
    m, n = export_rows(reg, "g", "jsonl", tmp_path / "out" / "g.jsonl")
    lines = (tmp_path / "out" / "g.jsonl").read_text().splitlines()
    assert n == len(lines) == 300
    assert [json.loads(x) for x in lines] == list(frame_to_records("sft", reg.load(m)))
    res = ingest(reg, [tmp_path / "out" / "g.jsonl"], name="g2", kind="sft")
    assert reg.load("g2")["messages"].to_list() == reg.load("g")["messages"].to_list() and res.rejected == 0


def test_export_parquet_is_readable_by_polars(reg, tmp_path):
    commit_chats(reg, "faq", [("a", "b"), ("c", "d")])
    export_rows(reg, "faq", "parquet", tmp_path / "faq.parquet")
    df = pl.read_parquet(tmp_path / "faq.parquet")
    assert df.height == 2 and df["messages"][1][0]["content"] == "c"


def test_reading_an_empty_registry_is_not_an_error(reg):
    assert reg.names() == [] and gc(reg) == []
    if reg.storage.local is not None:  # a folder that is not there is a mistyped path, not an empty registry
        with pytest.raises(DatakitError, match="no registry at"):
            verify(reg)
        reg.storage.local.mkdir(parents=True)
    assert verify(reg) == (0, [])


def test_ingested_rows_and_quarantine_both_land_in_the_version(reg, tmp_path):
    src = write_jsonl(tmp_path / "x.jsonl", [chat("q", "a"), "{oops"])
    res = ingest(reg, [src], name="x", kind="sft")
    files = set(res.manifest.files)
    assert {"data/part-00000.parquet", "quarantine.parquet"} <= files
    assert verify(reg) == (1, [])
