"""Every real external dataset ingests with the right kind, format and row count."""

from __future__ import annotations

import json

import pytest

from datakit.io.ingest import ingest
from datakit.registry.rows import frame_to_records

CASES = [
    ("alpaca_en_demo.json", "sft", "auto", "alpaca", 999),
    ("alpaca_zh_demo.json", "sft", "auto", "alpaca", 1000),
    ("identity.json", "sft", "auto", "alpaca", 91),
    ("dpo_en_demo.json", "preference", "auto", "sharegpt_preference", 300),
    ("glaive_toolcall_en_demo.json", "sft", "auto", "sharegpt", 300),
    ("c4_demo.jsonl", "cpt", "auto", "text", 300),
    ("wiki_demo.txt", "cpt", "lines", "text", 30),
]


@pytest.mark.parametrize("filename,kind,fmt,detected,rows", CASES)
def test_external_file_ingests_with_its_kind_and_count(reg, external, filename, kind, fmt, detected, rows):
    res = ingest(reg, [external / filename], name="ext", kind=kind, fmt=fmt)
    assert (res.kept, res.rejected, res.rows_in) == (rows, 0, rows)
    assert res.files[0].format == detected
    m = reg.resolve("ext")
    assert (m.kind, m.rows, m.version) == (kind, rows, "v1")
    assert reg.load(m).height == rows


def test_alpaca_rows_become_user_then_assistant_with_input_appended(reg, external):
    ingest(reg, [external / "alpaca_en_demo.json"], name="a", kind="sft")
    src = json.loads((external / "alpaca_en_demo.json").read_text())
    recs = list(frame_to_records("sft", reg.load("a")))
    with_input = next(i for i, r in enumerate(src) if r["input"])
    msgs = recs[with_input]["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant"]
    assert msgs[0]["content"] == f"{src[with_input]['instruction']}\n\n{src[with_input]['input']}"
    assert msgs[1]["content"] == src[with_input]["output"]
    assert recs[0]["meta"]["origin"] == {"file": "alpaca_en_demo.json", "row": 1}


def test_identity_placeholders_are_kept_as_text(reg, external):
    ingest(reg, [external / "identity.json"], name="idn", kind="sft")
    first = next(frame_to_records("sft", reg.load("idn")))
    assert "{{name}}" in first["messages"][1]["content"] and "{{author}}" in first["messages"][1]["content"]


def test_glaive_tool_calls_and_tools_survive(reg, external):
    ingest(reg, [external / "glaive_toolcall_en_demo.json"], name="g", kind="sft")
    recs = list(frame_to_records("sft", reg.load("g")))
    assert all(isinstance(r["tools"], list) for r in recs if "tools" in r)
    call = next(m for r in recs for m in r["messages"] if "tool_calls" in m)
    fn = call["tool_calls"][0]["function"]
    assert call["role"] == "assistant" and fn["name"]
    assert isinstance(fn["arguments"], dict)  # decoded from the source's JSON string
    roles = {m["role"] for r in recs for m in r["messages"]}
    assert roles == {"user", "assistant", "tool"}
    src = json.loads((external / "glaive_toolcall_en_demo.json").read_text())
    n_calls = sum(t["from"] == "function_call" for r in src for t in r["conversations"])
    assert sum("tool_calls" in m for r in recs for m in r["messages"]) == n_calls


def test_dpo_pairs_split_into_prompt_chosen_rejected(reg, external):
    ingest(reg, [external / "dpo_en_demo.json"], name="p", kind="preference")
    src = json.loads((external / "dpo_en_demo.json").read_text())
    rec = next(frame_to_records("preference", reg.load("p")))
    assert rec["prompt"][-1]["role"] == "user"
    assert rec["prompt"][0]["content"] == src[0]["conversations"][0]["value"]
    assert rec["chosen"] == [{"role": "assistant", "content": src[0]["chosen"]["value"]}]
    assert rec["rejected"] == [{"role": "assistant", "content": src[0]["rejected"]["value"]}]


def test_wiki_lines_are_one_document_per_line(reg, external):
    ingest(reg, [external / "wiki_demo.txt"], name="w", kind="cpt", fmt="lines")
    lines = [ln for ln in (external / "wiki_demo.txt").read_text(encoding="utf-8").split("\n") if ln.strip()]
    texts = reg.load("w")["text"].to_list()
    assert texts == lines


def test_a_text_file_without_lines_format_is_one_document(reg, external):
    res = ingest(reg, [external / "wiki_demo.txt"], name="doc", kind="cpt")
    assert res.kept == 1
    assert reg.load("doc")["text"][0] == (external / "wiki_demo.txt").read_text(encoding="utf-8")


def test_several_files_go_into_one_version(reg, external):
    res = ingest(reg, [external / "alpaca_en_demo.json", external / "identity.json"], name="both", kind="sft")
    assert res.kept == 999 + 91 and reg.resolve("both").rows == 1090
    assert [f.kept for f in res.files] == [999, 91]
