"""Ingest never holds a file whole: a large JSON array is split into elements a block at a time (the same rows,
quarantine and hash as parsing it at once), CSV and line-per-row text are read as streams."""

from __future__ import annotations

import hashlib
import json
import random

import orjson
import pytest

from datakit.errors import DatakitError
from datakit.io import delimited, readers
from datakit.io.ingest import ingest
from datakit.io.json_array import array_elements


def streamed_arrays(monkeypatch, block: int = 4096) -> None:
    """Every JSON array goes through the element splitter, in blocks small enough that rows cross them."""
    monkeypatch.setattr(readers, "STREAM_ARRAY_BYTES", 0)
    monkeypatch.setattr(readers, "BLOCK_BYTES", block)


def split(data: bytes, block: int) -> list:
    chunks = iter([data[i : i + block] for i in range(0, len(data), block)])
    return [orjson.loads(e) for e in array_elements(lambda: next(chunks, b""))]


@pytest.mark.parametrize(("filename", "kind"), [
    ("alpaca_en_demo.json", "sft"), ("alpaca_zh_demo.json", "sft"), ("identity.json", "sft"),
    ("dpo_en_demo.json", "preference"), ("glaive_toolcall_en_demo.json", "sft"),
])
def test_a_streamed_json_array_gives_the_version_parsing_it_whole_gives(reg, external, monkeypatch, tmp_path,
                                                                        filename, kind):
    src = json.loads((external / filename).read_text())
    # a broken row among the real ones, so the quarantine (row numbers, reasons) is compared too
    (tmp_path / filename).write_text(json.dumps(src[:40] + [{"unexpected": 1}] + src[40:], ensure_ascii=False, indent=1))
    whole = ingest(reg, [tmp_path / filename], name="whole", kind=kind)
    streamed_arrays(monkeypatch)
    streamed = ingest(reg, [tmp_path / filename], name="streamed", kind=kind)
    assert streamed.manifest.content_hash == whole.manifest.content_hash
    assert (streamed.kept, streamed.rejected, streamed.reasons) == (whole.kept, whole.rejected, whole.reasons)
    assert streamed.rejected >= 1 and streamed.files == whole.files  # same sha256, bytes and counts per file
    assert reg.extra(streamed.manifest, "quarantine.parquet").equals(reg.extra(whole.manifest, "quarantine.parquet"))


def test_the_splitter_agrees_with_a_whole_parse_on_tricky_strings_at_every_block_size():
    rng = random.Random(0)
    alphabet = ["a", "\\", '"', "[", "]", "{", "}", ",", " ", "\n", "é", "中", "\\\\\""]

    def value(depth: int = 0):
        r = rng.random()
        if depth > 3 or r < 0.4:
            return rng.choice([1, 2.5, None, True, "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))])
        if r < 0.7:
            return [value(depth + 1) for _ in range(rng.randint(0, 4))]
        return {"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 5))): value(depth + 1)
                for _ in range(rng.randint(0, 4))}

    for _ in range(500):
        arr = [value() for _ in range(rng.randint(0, 8))]
        data = json.dumps(arr, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 1])).encode()
        for block in (1, 3, 64, 1 << 20):
            assert split(data, block) == arr


@pytest.mark.parametrize(("data", "where"), [
    (b'[{"text": "a"},]', "element 2 is empty"),
    (b'[{"text": "a"},,{"text": "b"}]', "element 2 is empty"),
    (b'[{"text": "a"}, {"text": "b"}', "without its closing ']'"),
    (b'[{"text": "a"}] {"text": "b"}', "text after the array's closing bracket"),
    (b'[{"text": "a"}, {"text": "b\\"}]', "without its closing ']'"),  # the escaped quote leaves the string open
    (b'[{"text": "a"}, {"text" "b"}]', "element 2"),
])
def test_a_malformed_large_array_is_refused_naming_the_element_and_commits_nothing(reg, tmp_path, monkeypatch,
                                                                                    data, where):
    streamed_arrays(monkeypatch, block=5)
    (tmp_path / "bad.json").write_bytes(data)
    with pytest.raises(DatakitError) as e:
        ingest(reg, [tmp_path / "bad.json"], name="bad", kind="cpt")
    assert "bad.json: not valid JSON" in str(e.value) and where in str(e.value), str(e.value)
    assert "convert it to JSONL" in str(e.value)
    assert "bad" not in reg.names()


def test_an_array_larger_than_the_threshold_is_never_parsed_whole(reg, tmp_path, monkeypatch):
    rows = [{"text": f"document {i} " + "word " * 40} for i in range(40_000)]  # about 9 MB
    (tmp_path / "big.json").write_text(json.dumps(rows))
    monkeypatch.setattr(readers, "STREAM_ARRAY_BYTES", 1 << 20)
    real_loads, largest = orjson.loads, [0]

    def loads(data):  # every parse the reader makes, measured
        largest[0] = max(largest[0], len(data))
        return real_loads(data)

    monkeypatch.setattr(readers.orjson, "loads", loads)
    res = ingest(reg, [tmp_path / "big.json"], name="big", kind="cpt")
    monkeypatch.undo()
    assert res.kept == 40_000 and reg.load("big")["text"].to_list() == [r["text"] for r in rows]
    assert largest[0] < 1000  # one element at a time, never the 9 MB array


def test_csv_and_text_lines_are_read_as_streams_with_their_line_numbers(reg, tmp_path, monkeypatch):
    def streamed(path, **kw):
        """Ingest with tiny reads (rows and quoted newlines cross them) and no way to read a file whole."""
        with monkeypatch.context() as m:
            m.setattr(delimited, "BLOCK_BYTES", 64)
            m.setattr(delimited.Path, "read_bytes", lambda p: pytest.fail(f"{p} read whole"))
            return ingest(reg, [path], **kw)

    lines = ["\ufeffinstruction,output"] + [f'"q{i}, with a comma","a{i}"' for i in range(3000)] + ['"two\nlines",b']
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    res = streamed(tmp_path / "t.csv", name="c", kind="sft")
    rows = reg.load("c")["messages"]
    assert res.kept == 3001 and rows[2999][0]["content"] == "q2999, with a comma" and rows[3000][0]["content"] == "two\nlines"
    assert res.files[0].sha256 == hashlib.sha256((tmp_path / "t.csv").read_bytes()).hexdigest()
    (tmp_path / "t.txt").write_bytes(b"\xef\xbb\xbfline one\r\n\n" + b"".join(b"line %d\n" % i for i in range(3000)) + b"\xff bad\n")
    res = streamed(tmp_path / "t.txt", name="t", kind="cpt", fmt="lines")
    assert res.kept == 3001 and reg.load("t")["text"][0] == "line one"
    q = reg.extra(res.manifest, "quarantine.parquet")
    assert q["line"].to_list() == [3003] and "invalid UTF-8" in q["reason"][0]
