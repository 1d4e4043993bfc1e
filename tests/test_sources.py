"""More sources, read as they are: compressed JSON/JSONL, datasets `save_to_disk` folders and .arrow files,
TRL's standard (string) prompt-completion as a continuation, and shapes datakit cannot hold refused with a
reason that says what the rows are and what to do."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json

import pyarrow as pa
import pytest

from datakit.errors import DatakitError
from datakit.io.export import export_training
from datakit.io.ingest import ingest
from datakit.registry.rows import frame_to_records
from tests.conftest import write_jsonl

ROWS = [{"messages": [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"answer {i}"}]}
        for i in range(6)]


def ids(reg, ref: str) -> list[str]:
    return reg.load(ref)["id"].to_list()


def test_compressed_json_and_jsonl_read_like_the_plain_files(reg, tmp_path):
    plain = write_jsonl(tmp_path / "plain.jsonl", ROWS)
    body = plain.read_bytes()
    files = {"a.jsonl.gz": gzip.compress(body), "b.jsonl.zst": pa.Codec("zstd").compress(body, asbytes=True),
             "c.json.bz2": bz2.compress(json.dumps(ROWS).encode())}
    ingest(reg, [plain], name="plain", kind="sft")
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        r = ingest(reg, [tmp_path / name], name=name.split(".")[0], kind="sft")
        assert (r.kept, r.rejected) == (6, 0)
        assert ids(reg, name.split(".")[0]) == ids(reg, "plain")
        assert r.files[0].sha256 == hashlib.sha256(data).hexdigest()  # the file as stored, as provenance
    (tmp_path / "broken.jsonl.gz").write_bytes(gzip.compress(body)[:-30])
    with pytest.raises(DatakitError, match="broken.jsonl.gz"):
        ingest(reg, [tmp_path / "broken.jsonl.gz"], name="broken", kind="sft")
    (tmp_path / "t.csv.gz").write_bytes(gzip.compress(b"a,b\n1,2\n"))
    with pytest.raises(DatakitError, match="decompress it first"):
        ingest(reg, [tmp_path / "t.csv.gz"], name="csvgz", kind="sft")


def test_save_to_disk_folders_and_arrow_files_round_trip_with_their_splits(reg, tmp_path):
    import datasets

    tools_row = {"messages": [{"role": "user", "content": "add 1 and 2"},
                              {"role": "assistant", "tool_calls": [{"type": "function", "function": {
                                  "name": "add", "arguments": {"b": 2, "a": 1}}}]},
                              {"role": "tool", "content": "3"}, {"role": "assistant", "content": "3"}],
                 "tools": [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]}
    ingest(reg, [write_jsonl(tmp_path / "src.jsonl", [*ROWS, tools_row])], name="src", kind="sft")
    export_training(reg, "src", "hf", tmp_path / "hf")  # a DatasetDict with Json columns
    r = ingest(reg, [tmp_path / "hf"], name="back", kind="sft")
    assert (r.kept, r.rejected) == (7, 0)
    back = list(frame_to_records("sft", reg.load("back")))
    assert ids(reg, "back") == ids(reg, "src")  # the same rows, tool arguments and their key order included
    assert back[-1]["messages"][1]["tool_calls"][0]["function"]["arguments"] == {"b": 2, "a": 1}
    assert list(back[-1]["messages"][1]["tool_calls"][0]["function"]["arguments"]) == ["b", "a"]
    assert {x["split"] for x in back} == {"train"}
    # a hub-style DatasetDict: its validation split arrives as valid
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS[:4]),
                               "validation": datasets.Dataset.from_list(ROWS[4:])})
    dd.save_to_disk(str(tmp_path / "hub"))
    ingest(reg, [tmp_path / "hub"], name="hub", kind="sft")
    assert [x["split"] for x in frame_to_records("sft", reg.load("hub"))] == ["train"] * 4 + ["valid"] * 2
    # an .arrow file in the IPC file format (pyarrow, polars), not only datasets' stream format
    table = pa.Table.from_pylist([{"text": "one document"}, {"text": "another one"}])
    with pa.ipc.new_file(str(tmp_path / "docs.arrow"), table.schema) as w:
        w.write_table(table)
    assert ingest(reg, [tmp_path / "docs.arrow"], name="docs", kind="cpt").kept == 2
    with pytest.raises(DatakitError, match="not a datasets save_to_disk folder"):
        ingest(reg, [tmp_path / "src.jsonl", tmp_path], name="folder", kind="sft")


def test_standard_prompt_completion_is_a_continuation_when_asked_and_a_recorded_chat_otherwise(reg, tmp_path):
    src = write_jsonl(tmp_path / "pc.jsonl", [{"prompt": "The sky is", "completion": " blue."}])
    ingest(reg, [src], name="cont", kind="cpt", fmt="text_pair")
    (cont,) = frame_to_records("cpt", reg.load("cont"))
    assert cont["text"] == "The sky is blue." and cont["meta"]["completion_start"] == len("The sky is")
    ingest(reg, [src], name="chat", kind="sft")
    (chat,) = frame_to_records("sft", reg.load("chat"))
    assert [m["role"] for m in chat["messages"]] == ["user", "assistant"]
    assert "--format text_pair" in chat["meta"]["converted"][0]


@pytest.mark.parametrize(("row", "says"), [
    ({"prompt": "Solve 2+2", "completions": ["2+2 is 4"], "labels": [True]}, "stepwise-supervision"),
    ({"prompt": "Tell me about Seoul"}, "prompt-only rows"),
    ({"question": "q", "answer": "a"}, "Known row shapes"),
])
def test_shapes_without_a_kind_are_refused_with_what_they_are_and_what_to_do(reg, tmp_path, row, says):
    with pytest.raises(DatakitError, match=says):
        ingest(reg, [write_jsonl(tmp_path / "x.jsonl", [row])], name="x", kind="sft")
