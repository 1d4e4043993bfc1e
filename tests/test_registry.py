"""Registry contract: names, refs, immutable content-addressed versions, lineage, verify, diff, gc."""

from __future__ import annotations

import json

import polars as pl
import pytest

from datakit.errors import DatakitError
from datakit.io.export import export_rows
from datakit.io.ingest import ingest
from datakit.registry.rows import frame_to_records, records_to_frame
from datakit.registry.verify import diff, gc, verify
from tests.conftest import chat, write_jsonl


def commit_chats(reg, name, pairs, **kw):
    df = records_to_frame("sft", [chat(q, a) for q, a in pairs]).drop("id")
    return reg.commit_frame(name, "sft", df, op=kw.pop("op", "test"), **kw)


def test_identical_content_returns_the_existing_version_and_creates_nothing(reg, tmp_path, external):
    first = ingest(reg, [external / "c4_demo.jsonl"], name="c4", kind="cpt")
    before = sorted(p.name for p in (reg.root / "datasets" / "c4").iterdir())
    again = ingest(reg, [external / "c4_demo.jsonl"], name="c4", kind="cpt")
    assert (first.created, again.created) == (True, False)
    assert again.manifest.version == "v1" and again.manifest.content_hash == first.manifest.content_hash
    assert sorted(p.name for p in (reg.root / "datasets" / "c4").iterdir()) == before
    assert list((reg.root / ".staging").iterdir()) == []


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
    on_disk = json.loads((reg.version_dir(m) / "manifest.json").read_text())
    assert on_disk["schema_version"] == 1 and on_disk["kind"] == "sft"


def test_verify_names_a_tampered_file_and_a_forged_row(reg):
    m, _ = commit_chats(reg, "faq", [("a", "b"), ("c", "d")])
    assert verify(reg) == (1, [])
    part = reg.version_dir(m) / "data" / "part-00000.parquet"
    df = pl.read_parquet(part)
    forged = pl.concat([df.head(1), records_to_frame("sft", [chat("c", "FORGED")]).with_columns(id=pl.lit(df["id"][1]))])
    forged.write_parquet(part)
    _, problems = verify(reg, "faq@v1")
    assert any("sha256 mismatch" in p.problem and p.path.endswith("part-00000.parquet") for p in problems)
    (reg.version_dir(m) / "stray.txt").write_text("x")
    _, problems = verify(reg)
    assert any(p.problem == "file not listed in the manifest" for p in problems)


def test_verify_recomputes_row_ids_even_when_checksums_are_rewritten(reg):
    """Someone who edits rows and fixes the manifest checksums is still caught by the content check."""
    from datakit.registry.store import sha256_file

    m, _ = commit_chats(reg, "faq", [("a", "b"), ("c", "d")])
    d = reg.version_dir(m)
    part = d / "data" / "part-00000.parquet"
    df = pl.read_parquet(part)
    edited = records_to_frame("sft", [chat("a", "b"), chat("c", "EDITED")]).with_columns(id=df["id"], meta=df["meta"])
    edited.write_parquet(part)
    man = json.loads((d / "manifest.json").read_text())
    man["files"]["data/part-00000.parquet"]["sha256"] = sha256_file(part)
    man["files"]["data/part-00000.parquet"]["bytes"] = part.stat().st_size
    (d / "manifest.json").write_text(json.dumps(man))
    _, problems = verify(reg)
    assert [p.problem for p in problems] == ["1 row ids do not match row content (first at row 2)"]


def test_diff_counts_added_and_removed_rows(reg):
    commit_chats(reg, "faq", [("a", "1"), ("b", "2"), ("c", "3")])
    commit_chats(reg, "faq", [("a", "1"), ("c", "3"), ("d", "4"), ("e", "5")])
    d = diff(reg, "faq@v1", "faq@v2")
    assert (d["added"], d["removed"], d["unchanged"]) == (2, 1, 2)
    assert [r["messages"][0]["content"] for r in d["added_examples"]] == ["d", "e"]
    assert d["removed_examples"][0]["messages"][0]["content"] == "b"


def test_gc_removes_dead_staging_but_not_a_live_one(reg):
    import os

    commit_chats(reg, "faq", [("a", "b")])
    dead = reg.root / ".staging" / "999999999-deadbeef"
    (dead / "data").mkdir(parents=True)
    live = reg.root / ".staging" / f"{os.getppid()}-cafe"
    live.mkdir()
    assert gc(reg, dry_run=True) == [str(dead)] and dead.exists()
    assert gc(reg) == [str(dead)]
    assert not dead.exists() and live.exists()


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
    assert reg.names() == [] and verify(reg) == (0, []) and gc(reg) == []


def test_ingested_rows_and_quarantine_both_land_in_the_version(reg, tmp_path):
    src = write_jsonl(tmp_path / "x.jsonl", [chat("q", "a"), "{oops"])
    res = ingest(reg, [src], name="x", kind="sft")
    files = set(res.manifest.files)
    assert {"data/part-00000.parquet", "quarantine.parquet"} <= files
    assert verify(reg) == (1, [])
