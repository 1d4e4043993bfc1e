"""Tool calling and OpenAI fine-tuning rows, exactly: both argument forms in, one canonical row, per-row tools
out, templates render the export as they render the source, and per-message weights mask both backends."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from datakit.io.export import export_training
from datakit.io.ingest import ingest
from datakit.registry.rows import frame_to_records
from tests.conftest import write_jsonl

TEMPLATES = Path(__file__).resolve().parent / "fixtures" / "chat_templates"
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                            "parameters": {"type": "object", "properties": {
                                                "city": {"type": "string"}, "unit": {"type": "string"}}}}}
ADD = {"type": "function", "function": {"name": "add", "parameters": {"type": "object", "properties": {
    "a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}}}


def weather_row(arguments) -> dict:
    """A tool-calling chat; `arguments` as the source stores them (OpenAI: a JSON string; HF/TRL: an object)."""
    return {"messages": [
        {"role": "user", "content": "Weather in Paris, in celsius?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees, sunny"},
        {"role": "assistant", "content": "It is 18 degrees and sunny in Paris."}], "tools": [WEATHER]}


ARGS = {"city": "Paris", "unit": "celsius"}
PARALLEL = {"messages": [
    {"role": "user", "content": "What are 1+2 and 3+4?"},
    {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "add", "arguments": {"a": 1, "b": 2}}},
                                         {"type": "function", "function": {"name": "add", "arguments": {"a": 3, "b": 4}}}]},
    {"role": "tool", "content": "3"}, {"role": "tool", "content": "7"},
    {"role": "assistant", "content": "3 and 7."}], "tools": [ADD], "parallel_tool_calls": True}
PLAIN = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}


def records(reg, ref: str) -> list[dict]:
    return list(frame_to_records(reg.resolve(ref).kind, reg.load(ref)))


def test_both_argument_forms_become_one_canonical_row_and_the_conversion_is_recorded(reg, tmp_path):
    openai_row = weather_row(json.dumps(ARGS))
    hf_row = weather_row(ARGS)
    sharegpt = {"conversations": [  # LLaMA-Factory: tools and the call as JSON text
        {"from": "human", "value": "Weather in Paris, in celsius?"},
        {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": ARGS})},
        {"from": "observation", "value": "18 degrees, sunny"},
        {"from": "gpt", "value": "It is 18 degrees and sunny in Paris."}], "tools": json.dumps([WEATHER])}
    r = ingest(reg, [write_jsonl(tmp_path / "a.jsonl", [openai_row, hf_row, PARALLEL])], name="tools", kind="sft")
    assert (r.kept, r.rejected) == (3, 0)
    a, b, par = records(reg, "tools")
    assert a["id"] == b["id"]  # same content whichever form it arrived in
    assert a["messages"][1]["tool_calls"][0]["function"]["arguments"] == ARGS
    assert a["meta"]["converted"] == ["message 2 tool call 1: arguments JSON string decoded to an object"]
    assert "converted" not in b["meta"] and a["tools"] == [WEATHER]
    assert [c["function"]["arguments"] for c in par["messages"][1]["tool_calls"]] == [{"a": 1, "b": 2}, {"a": 3, "b": 4}]
    assert par["parallel_tool_calls"] is True
    ingest(reg, [write_jsonl(tmp_path / "s.jsonl", [sharegpt])], name="lf", kind="sft")
    (lf,) = records(reg, "lf")
    assert lf["messages"][1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": ARGS}
    assert lf["tools"] == [WEATHER]


def test_hf_and_mlx_exports_keep_each_rows_own_tools_and_content(reg, tmp_path):
    import datasets

    rows = [PLAIN, weather_row(ARGS), PARALLEL]
    ingest(reg, [write_jsonl(tmp_path / "mixed.jsonl", rows)], name="mixed", kind="sft")
    export_training(reg, "mixed", "hf", tmp_path / "hf")
    export_training(reg, "mixed", "mlx", tmp_path / "mlx")
    hf = datasets.load_from_disk(str(tmp_path / "hf"))["train"].to_list()
    mlx = [json.loads(x) for x in (tmp_path / "mlx" / "train.jsonl").read_text().splitlines()]
    for got in (hf, mlx):
        assert got[0]["messages"] == PLAIN["messages"] and got[0].get("tools") is None  # no other row's tools
        assert got[1]["tools"] == [WEATHER] and got[2]["tools"] == [ADD]  # each its own, nothing merged in
        call_turn = got[1]["messages"][1]
        assert call_turn["content"] == ""  # present: ChatML-style templates concatenate it
        assert call_turn["tool_calls"][0]["function"]["arguments"] == ARGS  # an object, not JSON text
        assert got[2]["messages"][1]["tool_calls"][1]["function"]["arguments"] == {"a": 3, "b": 4}


def tokenizer(tmp_path: Path, template: str):
    from transformers import AutoTokenizer

    from datakit.tiny import train_tokenizer

    tok = AutoTokenizer.from_pretrained(train_tokenizer(tmp_path / "tok"))
    tok.chat_template = template
    return tok


@pytest.mark.parametrize("fixture", ["chatml_qwen.jinja", "llama31_tools.jinja", "mistral_tools.jinja"])
def test_templates_render_the_export_as_they_render_the_source(reg, tmp_path, fixture):
    import datasets

    source = weather_row(ARGS)  # the HF/TRL form: what these templates are written for
    ingest(reg, [write_jsonl(tmp_path / "openai.jsonl", [weather_row(json.dumps(ARGS)), PARALLEL])], name="oa",
           kind="sft")
    export_training(reg, "oa", "hf", tmp_path / "hf")
    exported = datasets.load_from_disk(str(tmp_path / "hf"))["train"].to_list()
    tok = tokenizer(tmp_path, (TEMPLATES / fixture).read_text())
    kw = {"tokenize": False, "bos_token": "<s>", "eos_token": "</s>"}
    want = tok.apply_chat_template(source["messages"], tools=source["tools"], **kw)
    got = tok.apply_chat_template(exported[0]["messages"], tools=exported[0]["tools"], **kw)
    assert got == want
    assert '"city": "Paris"' in got and '\\"city\\"' not in got  # the arguments rendered as JSON once
    par = tok.apply_chat_template(exported[1]["messages"], tools=exported[1]["tools"], **kw)
    assert par == tok.apply_chat_template(PARALLEL["messages"], tools=PARALLEL["tools"], **kw)


def test_a_chatml_template_that_concatenates_content_renders_the_exported_call_turn(tmp_path):
    from jinja2.exceptions import UndefinedError

    from datakit.io.export import engine_messages
    from datakit.tiny import CHATML_TEMPLATE

    tok = tokenizer(tmp_path, CHATML_TEMPLATE)
    with pytest.raises(UndefinedError, match="no attribute 'content'"):  # what crashed mlx-lm after loading
        tok.apply_chat_template(weather_row(ARGS)["messages"], tokenize=False)
    assert "<|im_start|>assistant\n<|im_end|>" in tok.apply_chat_template(
        engine_messages(weather_row(ARGS)["messages"]), tokenize=False)


def test_weight_zero_turns_are_masked_alike_on_both_backends(tmp_path):
    from datakit.tiny import CHATML_TEMPLATE
    from datakit.train.hf_data import assistant_labels
    from datakit.train.mlx_data import encode_chat

    tok = tokenizer(tmp_path, CHATML_TEMPLATE)
    tok.eos_token = "<|im_end|>"
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "bad answer", "weight": 0.0},
            {"role": "user", "content": "again"}, {"role": "assistant", "content": "good answer", "weight": 1.0}]
    ids, mask = encode_chat(tok, msgs)
    labels = assistant_labels(tok, msgs)["labels"]
    assert [t != -100 for t in labels] == [bool(m) for m in mask]
    trained = tok.decode([t for t, m in zip(ids, mask) if m])
    assert trained == "good answer<|im_end|>"
    unweighted = copy.deepcopy(msgs)
    unweighted[1].pop("weight")
    assert "bad answer" in tok.decode([t for t, m in zip(*encode_chat(tok, unweighted)) if m])


def test_openai_and_axolotl_rows_keep_what_they_say_or_are_refused_with_the_reason(reg, tmp_path):
    parts = {"messages": [{"role": "system", "content": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}]},
                          {"role": "user", "content": "hi"}, {"role": "assistant", "content": "x", "weight": 0},
                          {"role": "user", "content": "again"}, {"role": "assistant", "content": "y", "weight": 1}]}
    axolotl = {"messages": [{"role": "user", "content": "q", "train": False},
                            {"role": "assistant", "content": "draft", "train": False},
                            {"role": "user", "content": "q2", "train": False},
                            {"role": "assistant", "content": "final", "train": True}]}
    bad = [
        weather_row('{"city": "Par'),  # truncated JSON
        weather_row("[1, 2]"),
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
                      {"role": "assistant", "content": "a"}]},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 0.5}]},
        {"messages": [{"role": "user", "content": "q", "weight": 0}, {"role": "assistant", "content": "a"}]},
        {"messages": [{"role": "user", "content": "q", "train": True}, {"role": "assistant", "content": "a"}]},
    ]
    r = ingest(reg, [write_jsonl(tmp_path / "oa.jsonl", [parts, axolotl, *bad])], name="oa", kind="sft")
    assert (r.rows_in, r.kept, r.rejected) == (8, 2, 6)
    p, a = records(reg, "oa")
    assert p["messages"][0]["content"] == "Be brief." and p["meta"]["converted"] == ["message 1 content: 2 text parts joined"]
    assert [m.get("weight") for m in p["messages"]] == [None, None, 0.0, None, 1.0]
    assert [m.get("weight") for m in a["messages"]] == [None, 0.0, None, 1.0]
    assert len(a["meta"]["converted"]) == 2
    q = reg.extra("oa", "quarantine.parquet")["reason"].to_list()
    assert "arguments are not valid JSON" in q[0] and "must be a JSON object, got list" in q[1]
    assert "content part of type 'image_url'" in q[2] and "weight must be 0" in q[3]
    assert "weight on a non-assistant turn" in q[4] and "train: true on a user turn" in q[5]
