"""Each row format converts to the record a trainer expects, and detection picks the right one."""

from __future__ import annotations

import pytest

from datakit.io.formats import RowError, convert_row, detect_format
from datakit.io.validate import validate_record

O = {"file": "f.jsonl", "line": 1}


def test_alpaca_with_system_and_history_becomes_alternating_turns():
    row = {"system": "Be brief.", "history": [["Hi", "Hello!"]], "instruction": "Add", "input": "2 and 3", "output": "5"}
    rec = convert_row(row, detect_format(row, "sft"), "sft", O)
    assert [(m["role"], m["content"]) for m in rec["messages"]] == [
        ("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello!"), ("user", "Add\n\n2 and 3"), ("assistant", "5")]
    validate_record("sft", rec)


def test_sharegpt_maps_speakers_and_parses_function_calls():
    row = {"conversations": [
        {"from": "system", "value": "tools on"}, {"from": "human", "value": "weather?"},
        {"from": "function_call", "value": '{"name": "get_weather", "arguments": {"city": "Seoul"}}'},
        {"from": "observation", "value": '{"temp": 3}'}, {"from": "gpt", "value": "3 degrees"}],
        "tools": '[{"name": "get_weather"}]'}
    rec = convert_row(row, "sharegpt", "sft", O)
    assert [m["role"] for m in rec["messages"]] == ["system", "user", "assistant", "tool", "assistant"]
    call = rec["messages"][2]["tool_calls"][0]["function"]
    assert call == {"name": "get_weather", "arguments": {"city": "Seoul"}}  # an object, as templates render it
    assert rec["tools"] == [{"name": "get_weather"}]
    validate_record("sft", rec)


def test_sharegpt_unknown_speaker_names_the_turn():
    with pytest.raises(RowError, match="turn 2: unknown speaker 'narrator'"):
        convert_row({"conversations": [{"from": "human", "value": "a"}, {"from": "narrator", "value": "b"}]}, "sharegpt", "sft", O)


def test_prompt_completion_strings_become_a_two_turn_chat():
    rec = convert_row({"prompt": "Sky color?", "completion": "Blue."}, "prompt_completion", "sft", O)
    assert rec["messages"] == [{"role": "user", "content": "Sky color?"}, {"role": "assistant", "content": "Blue."}]


def test_preference_with_implicit_prompt_splits_the_shared_prefix():
    user = {"role": "user", "content": "Pick a color"}
    row = {"chosen": [user, {"role": "assistant", "content": "Blue"}], "rejected": [user, {"role": "assistant", "content": "Dunno"}]}
    rec = convert_row(row, detect_format(row, "preference"), "preference", O)
    assert rec["prompt"] == [user]
    assert rec["chosen"] == [{"role": "assistant", "content": "Blue"}]
    validate_record("preference", rec)


def test_preference_from_strings_and_from_alpaca_instruction():
    rec = convert_row({"prompt": "Q?", "chosen": "good", "rejected": "bad"}, "preference", "preference", O)
    assert rec["prompt"] == [{"role": "user", "content": "Q?"}] and rec["chosen"][0]["content"] == "good"
    rec = convert_row({"instruction": "Q?", "input": "ctx", "chosen": "good", "rejected": "bad"}, "preference", "preference", O)
    assert rec["prompt"] == [{"role": "user", "content": "Q?\n\nctx"}]


def test_identical_chosen_and_rejected_is_rejected():
    rec = convert_row({"prompt": "Q?", "chosen": "same", "rejected": "same"}, "preference", "preference", O)
    with pytest.raises(ValueError, match="chosen and rejected are identical"):
        validate_record("preference", rec)


def test_identity_rows_need_intent_and_lang():
    rec = convert_row({"messages": [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "Acme Assistant."}],
                       "intent": "affirm", "lang": "en"}, "messages", "identity", O)
    assert validate_record("identity", rec)["intent"] == "affirm"
    rec["intent"] = "maybe"
    with pytest.raises(ValueError, match="intent must be affirm or deny"):
        validate_record("identity", rec)


@pytest.mark.parametrize("row,reason", [
    ({"id": "k1", "type": "knowledge", "prompt": "Capital of Korea?"}, "knowledge probe needs expect or accept"),
    ({"id": "c1", "type": "choice", "prompt": "2+2?", "choices": ["3", "4"], "answer": 2}, "choice probe answer must index into choices"),
    ({"id": "p1", "type": "perplexity"}, "perplexity probe needs text"),
    ({"id": "x1", "type": "vibes", "prompt": "hm"}, "unknown probe type 'vibes'"),
])
def test_probe_rows_are_checked_per_type(row, reason):
    rec = convert_row(row, "probes", "probes", O)
    with pytest.raises(ValueError, match=reason):
        validate_record("probes", rec)


def test_valid_probe_keeps_its_own_id():
    rec = convert_row({"id": "k1", "type": "knowledge", "prompt": "Capital of Korea?", "accept": ["Seoul"], "group": "general"},
                      "probes", "probes", O)
    assert validate_record("probes", rec)["id"] == "k1"


@pytest.mark.parametrize("row,fmt", [
    ({"messages": []}, "messages"), ({"conversations": []}, "sharegpt"), ({"instruction": "x", "output": "y"}, "alpaca"),
    ({"prompt": "a", "completion": "b"}, "prompt_completion"), ({"text": "t"}, "text"),
    ({"conversations": [], "chosen": {}, "rejected": {}}, "sharegpt_preference"),
    ({"prompt": "p", "chosen": "c", "rejected": "r"}, "preference"),
])
def test_format_is_detected_from_keys(row, fmt):
    assert detect_format(row, "sft") == fmt
