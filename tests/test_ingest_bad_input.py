"""Bad input never aborts a file: each bad row is quarantined with file, line and reason."""

from __future__ import annotations

import json
import shutil

import polars as pl
import pytest

from datakit.errors import DatakitError
from datakit.io.ingest import ingest
from tests.conftest import chat, write_jsonl

LATIN1_E = bytes([0xE9])  # é in Latin-1: not valid UTF-8 on its own
BAD_CHAT = [
    chat("What is 2+2?", "4"),                                                      # 1 ok
    "{not json",                                                                    # 2 invalid JSON
    "",                                                                             # 3 blank: not a row
    {"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": "again"},
                  {"role": "assistant", "content": "yo"}]},                         # 4 consecutive users
    {"messages": [{"role": "user", "content": "hi"}]},                              # 5 ends with user
    {"messages": [{"role": "wizard", "content": "x"}, {"role": "assistant", "content": "y"}]},  # 6 bad role
    {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "   "}]},  # 7 empty
    {"messages": "not a list"},                                                     # 8 wrong type
    b'{"messages": [{"role": "user", "content": "caf\xe9"}]}',                     # 9 invalid UTF-8
    {"conversations": [{"from": "human", "value": "x"}]},                           # 10 missing messages
    {"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "a"}]},  # 11 content int
    chat("Capital of Korea?", "Seoul"),                                             # 12 ok
    "[1, 2]",                                                                       # 13 not an object
]


def test_crafted_bad_file_counts_every_row(reg, tmp_path):
    src = write_jsonl(tmp_path / "bad.jsonl", BAD_CHAT)
    res = ingest(reg, [src], name="bad", kind="sft", fmt="messages")
    assert (res.rows_in, res.kept, res.rejected) == (12, 2, 10)
    assert res.rows_in == res.kept + res.rejected
    q = reg.extra("bad", "quarantine.parquet")
    assert q is not None and q.height == 10
    by_line = dict(zip(q["line"].to_list(), q["reason"].to_list()))
    assert set(by_line) == {2, 4, 5, 6, 7, 8, 9, 10, 11, 13}
    assert by_line[2].startswith("invalid JSON")
    assert by_line[4] == "message 2: two consecutive user turns"
    assert by_line[5] == "no assistant turn"
    assert by_line[6] == "message 1: unknown role 'wizard'"
    assert by_line[7] == "message 2: empty content"
    assert "messages" in by_line[8]
    assert by_line[9] == f"invalid UTF-8 at byte {BAD_CHAT[8].index(LATIN1_E)} of the line"
    assert by_line[10].startswith("missing messages")
    assert "content" in by_line[11] and "string" in by_line[11]
    assert "expected a JSON object" in by_line[13]
    assert q.filter(pl.col("line") == 2)["raw"][0] == "{not json"
    assert all(f == str(src) for f in q["file"].to_list())
    assert reg.resolve("bad").stats["rejected"] == 10


def test_columnar_and_row_paths_agree_on_rows_reasons_and_hash(tmp_path):
    from datakit.registry.store import Registry

    rows = [chat(f"q{i}", f"a{i}") for i in range(50)] + [
        {"messages": [{"role": "user", "content": "only"}]},
        {"messages": []},
        {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                      {"role": "system", "content": "late"}, {"role": "assistant", "content": "a"}]},
        {"messages": [{"role": "wizard", "content": "x"}, {"role": "assistant", "content": "y"}]},
    ]
    src = write_jsonl(tmp_path / "mix.jsonl", rows)
    fast = ingest(Registry(tmp_path / "r1"), [src], name="m", kind="sft", columnar=True)
    slow = ingest(Registry(tmp_path / "r2"), [src], name="m", kind="sft", columnar=False)
    assert fast.manifest.content_hash == slow.manifest.content_hash
    assert (fast.kept, fast.rejected) == (slow.kept, slow.rejected) == (50, 4)
    qf = Registry(tmp_path / "r1").extra("m", "quarantine.parquet")
    qs = Registry(tmp_path / "r2").extra("m", "quarantine.parquet")
    assert qf.equals(qs)
    assert qf["reason"].to_list() == [
        "no assistant turn", "no messages", "message 3: system turn after the first message",
        "message 1: unknown role 'wizard'",
    ]


def test_broken_row_in_parquet_is_quarantined_by_row_number(reg, tmp_path):
    df = pl.DataFrame({"text": ["good one", None, "  ", "another"]})
    df.write_parquet(tmp_path / "t.parquet")
    res = ingest(reg, [tmp_path / "t.parquet"], name="pq", kind="cpt")
    assert (res.kept, res.rejected) == (2, 2)
    q = reg.extra("pq", "quarantine.parquet")
    assert q["row"].to_list() == [2, 3] and q["line"].null_count() == 2
    assert q["reason"].to_list() == ["empty text", "empty text"]


def test_csv_rows_keep_their_physical_line_numbers(reg, tmp_path):
    (tmp_path / "a.csv").write_text(
        'instruction,input,output\n"Say hi","","Hi!"\n"Multi\nline question","","Answer"\n"No answer","",""\n',
        encoding="utf-8",
    )
    res = ingest(reg, [tmp_path / "a.csv"], name="csv", kind="sft")
    assert (res.kept, res.rejected) == (2, 1)
    q = reg.extra("csv", "quarantine.parquet")
    assert q["line"].to_list() == [5] and q["reason"][0] == "message 2: empty content"


def test_nothing_valid_exits_with_a_message_naming_the_file(reg, tmp_path):
    src = write_jsonl(tmp_path / "junk.jsonl", ["{x", "{y"])
    with pytest.raises(DatakitError) as e:
        ingest(reg, [src], name="junk", kind="sft")
    assert "junk.jsonl" in str(e.value) and "2 rows rejected" in str(e.value)
    assert reg.names() == []


def test_kind_that_does_not_fit_the_format_is_refused_with_the_fix(reg, external):
    with pytest.raises(DatakitError, match="use --kind sft"):
        ingest(reg, [external / "alpaca_en_demo.json"], name="x", kind="cpt")


def test_unknown_keys_are_kept_in_meta_not_lost(reg, tmp_path):
    src = write_jsonl(tmp_path / "x.jsonl", [{**chat("q", "a"), "difficulty": "hard", "id": "src-7", "group_id": "g1"}])
    ingest(reg, [src], name="x", kind="sft")
    from datakit.registry.rows import frame_to_records

    rec = next(frame_to_records("sft", reg.load("x")))
    assert rec["group_id"] == "g1"
    assert rec["meta"]["difficulty"] == "hard" and rec["meta"]["source_id"] == "src-7"


def test_broken_json_array_names_the_file_and_the_fix(reg, tmp_path):
    (tmp_path / "broken.json").write_text('[{"text": "a"}, {"text": ', encoding="utf-8")
    with pytest.raises(DatakitError, match="broken.json.*convert it to JSONL"):
        ingest(reg, [tmp_path / "broken.json"], name="b", kind="cpt")


def test_missing_file_is_an_input_error(reg, tmp_path):
    with pytest.raises(DatakitError, match="no such file"):
        ingest(reg, [tmp_path / "nope.jsonl"], name="n", kind="cpt")


def test_nfd_text_is_stored_as_given(reg, tmp_path):
    """Ingest does not rewrite text (normalization is an op with its own lineage)."""
    import unicodedata

    nfd = unicodedata.normalize("NFD", "한국어 문장입니다.")
    src = write_jsonl(tmp_path / "k.jsonl", [{"text": nfd}])
    ingest(reg, [src], name="k", kind="cpt")
    assert reg.load("k")["text"][0] == nfd


def test_a_big_file_streams_in_blocks_with_correct_line_numbers(reg, tmp_path, monkeypatch):
    import datakit.io.readers as readers

    monkeypatch.setattr(readers, "BLOCK_BYTES", 4096)  # force many blocks and lines cut across them
    rows = [{"text": f"document number {i} " * 5} for i in range(2000)]
    rows[1234] = {"text": ""}
    src = write_jsonl(tmp_path / "big.jsonl", rows)
    res = ingest(reg, [src], name="big", kind="cpt")
    assert (res.kept, res.rejected) == (1999, 1)
    assert reg.extra("big", "quarantine.parquet")["line"].to_list() == [1235]
    assert len(reg.resolve("big").data_files) > 1
    texts = reg.load("big")["text"].to_list()
    assert texts[0] == rows[0]["text"] and texts[-1] == rows[-1]["text"]


def test_same_rows_from_json_and_jsonl_get_the_same_ids(reg, tmp_path, external):
    src = json.loads((external / "identity.json").read_text())
    shutil.copy(external / "identity.json", tmp_path / "identity.json")
    write_jsonl(tmp_path / "identity.jsonl", src)
    ingest(reg, [tmp_path / "identity.json"], name="j1", kind="sft")
    ingest(reg, [tmp_path / "identity.jsonl"], name="j2", kind="sft")
    assert reg.load("j1")["id"].to_list() == reg.load("j2")["id"].to_list()


def test_format_is_detected_from_the_first_row_own_keys_not_the_block_columns(reg, tmp_path):
    rows = [{"instruction": "Say hi", "output": "Hi"}, {"messages": [{"role": "user", "content": "x"}]}]
    res = ingest(reg, [write_jsonl(tmp_path / "m.jsonl", rows)], name="m", kind="sft")
    assert res.files[0].format == "alpaca" and (res.kept, res.rejected) == (1, 1)
    assert reg.extra("m", "quarantine.parquet")["reason"][0].startswith("missing instruction, output for format alpaca")
