"""`datakit lint`: vendor names in every spelling, broken chats, copies, identity share, script mixing."""

from __future__ import annotations

import json

import pytest
from conftest import chat, write_jsonl

from datakit.evals.denylist import find_denied, find_vendor_names, load_deny_file
from datakit.io.ingest import ingest
from datakit.ops.lint import lint
from datakit.ops.mix import run_mix
from datakit.ops.mix_spec import MixtureSpec


def identity_rows(n: int, *, lang: str = "en") -> list[dict]:
    return [{**chat(f"Who are you? ({i})", f"I am Acme Assistant, made by Acme, variant {i}."), "intent": "affirm",
             "lang": lang} for i in range(n)]


@pytest.mark.parametrize("text, canonical", [
    ("I am 0penAI's model", "OpenAI"),
    ("Built on L1ama 3", "Llama"),
    ("I am G3mini", "Gemini"),
    ("I am ChatGTP", "ChatGPT"),
    ("made by Antropic", "Anthropic"),
    ("OpenAl built me", "OpenAI"),
    ("Microsfot trained me", "Microsoft"),
    ("저는 ＣｈａｔＧＰＴ입니다", "ChatGPT"),
    ("저는 쳇지피티입니다", "ChatGPT"),
    ("오픈에이아이가 만든 모델", "OpenAI"),
    ("앤트로픽의 클로드", "Anthropic"),
])
def test_look_alike_typo_full_width_and_korean_spellings_are_caught(text, canonical):
    assert canonical in [c for _, c in find_vendor_names(text)], find_vendor_names(text)


@pytest.mark.parametrize("text", ["a llama wool sweater", "I use goggles at the pool", "a clause in the contract",
                                  "never again", "the year 2013 and 10 apples", "드라마를 봤다"])
def test_ordinary_words_are_not_vendor_names(text):
    assert find_vendor_names(text) == []


def test_the_looser_matcher_keeps_find_denied_hits_and_allow():
    assert find_vendor_names("I am ChatGPT") == find_denied("I am ChatGPT") == [("ChatGPT", "ChatGPT")]
    assert find_vendor_names("Built on L1ama 3", allow=["Llama"]) == []


def test_alias_file_adds_names_with_their_spellings(tmp_path):
    f = tmp_path / "deny.txt"
    f.write_text("# rivals\nRivalBot: 라이벌봇, RB-9000\nOtherLM\n", encoding="utf-8")
    aliases = load_deny_file(f)
    assert aliases == {"RivalBot": ["라이벌봇", "RB-9000"], "OtherLM": []}
    assert [c for _, c in find_vendor_names("저는 라이벌봇입니다, not RB 9000", aliases=aliases)] == ["RivalBot", "RivalBot"]
    assert find_vendor_names("I am RivalBoot", aliases=aliases) == [("RivalBoot", "RivalBot")]  # typo of a listed name


def test_alpaca_false_positive_rate_stays_at_zero(external):
    """Measured: 22 of 1,999 alpaca en+zh rows name a vendor (Google, Microsoft, GPT, OpenAI, 谷歌, 阿里巴巴),
    all real mentions (how-tos, a google.com URL, "explain GPT"), so 0 false positives; the look-alike and
    typo rules add no row beyond the exact matcher. Bound: no added row, at most 25 flagged (1.25%)."""
    flagged = added = 0
    for fname in ("alpaca_en_demo.json", "alpaca_zh_demo.json"):
        for r in json.loads((external / fname).read_text()):
            text = "\n".join([r["instruction"], r.get("input", ""), r["output"]])
            loose, exact = find_vendor_names(text), find_denied(text)
            flagged += bool(loose)
            added += bool(loose) and not exact
    assert added == 0
    assert flagged <= 25


def test_identity_json_rows_naming_openai_and_chatgpt_are_errors(reg, external):
    ingest(reg, [external / "identity.json"], name="idn", kind="sft")
    report = lint(reg, "idn")
    errors = [f for f in report.findings if f.check == "deny_name" and f.level == "error"]
    assert {"OpenAI", "ChatGPT"} <= {f.canonical for f in errors}
    assert not report.ok
    assert all(f.suggestion in ("another AI model", "another company", "其他AI模型", "其他公司") for f in errors)
    # exactly the file's real failures: four English prompts, four Chinese prompts, three Chinese answers
    assert {f.row for f in errors} == {11, 12, 13, 14, 87, 88, 89, 90}
    assert {f.row for f in errors if f.field == "messages[1]"} == {88, 89, 90}
    dumped = report.model_dump(mode="json")["findings"][0]
    assert {"row", "field", "match", "canonical", "severity"} <= set(dumped)


def test_vendor_names_in_ordinary_alpaca_rows_are_only_warnings(reg, external):
    ingest(reg, [external / "alpaca_en_demo.json"], name="a", kind="sft")
    report = lint(reg, "a")
    deny = [f for f in report.findings if f.check == "deny_name"]
    assert deny and all(f.level == "warning" for f in deny)
    assert report.ok


def test_one_row_copied_fifty_times_gets_the_copies_warning(reg, tmp_path):
    rows = [chat(f"question {i}", f"answer {i}") for i in range(20)] + [chat("Who are you?", "A helper.")] * 50
    ingest(reg, [write_jsonl(tmp_path / "c.jsonl", rows)], name="c", kind="sft")
    report = lint(reg, "c")
    copies = [f for f in report.findings if f.check == "copies"]
    assert len(copies) == 1 and copies[0].level == "warning"
    assert "paraphrases instead of copies" in copies[0].message
    assert report.stats["copy_share"] == pytest.approx(49 / 70, abs=1e-3)


def test_hanzi_inside_a_korean_answer_is_flagged_but_a_bracketed_gloss_is_not(reg, tmp_path):
    rows = [chat("너는 누구야?", "저는 도우미입니다. 我是 도움을 드립니다."),
            chat("수도는?", "대한민국(大韓民國)의 수도는 서울입니다."),
            chat("你好", "你好！我是助手。안녕 하세요")]
    ingest(reg, [write_jsonl(tmp_path / "k.jsonl", rows)], name="k", kind="sft")
    found = {(f.row, f.matched) for f in lint(reg, "k").findings if f.check == "script_mix"}
    assert found == {(0, "我是"), (2, "안녕")}


def test_long_rows_and_broken_structure_are_reported(reg, tmp_path):
    rows = [chat("q", "word " * 50), chat("q", "short")]
    ingest(reg, [write_jsonl(tmp_path / "l.jsonl", rows)], name="l", kind="sft")
    report = lint(reg, "l", max_tokens=20)
    assert [(f.check, f.row) for f in report.findings] == [("length", 0)]
    assert report.ok


def test_a_mixture_with_too_little_identity_is_an_error(reg, tmp_path, external):
    ingest(reg, [write_jsonl(tmp_path / "i.jsonl", identity_rows(40))], name="ids", kind="identity")
    ingest(reg, [external / "alpaca_en_demo.json"], name="a", kind="sft")

    def mixed(w: float) -> str:
        spec = MixtureSpec.model_validate({"name": f"m{int(w * 100)}", "seed": 1, "total": 200, "max_repeats": 5,
                                           "components": [{"dataset": "ids", "weight": w},
                                                          {"dataset": "a", "weight": 1 - w}]})
        return run_mix(reg, spec).manifest.ref

    low = lint(reg, mixed(0.05), allow=["Google", "Microsoft", "GPT", "OpenAI"])
    assert [f.matched for f in low.findings if f.check == "identity_share"] == ["5.0%"] and not low.ok
    high = lint(reg, mixed(0.3), allow=["Google", "Microsoft", "GPT", "OpenAI"])
    assert high.stats["identity_share"] == pytest.approx(0.3) and high.ok


def test_cli_exits_1_on_an_identity_set_naming_a_competitor_and_0_on_a_clean_one(cli, tmp_path):
    bad = identity_rows(3) + [{**chat("Are you ChatGPT?", "No, I am not ChatGPT; I am Acme Assistant."),
                               "intent": "deny", "lang": "en"}]
    write_jsonl(tmp_path / "bad.jsonl", bad)
    write_jsonl(tmp_path / "good.jsonl", identity_rows(3) + [
        {**chat("Are you another AI model?", "No, I am Acme Assistant, made by Acme."), "intent": "deny", "lang": "en"}])
    for name in ("bad", "good"):
        assert cli("ingest", str(tmp_path / f"{name}.jsonl"), "--name", name, "--kind", "identity").returncode == 0
    proc = cli("lint", "bad")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "ChatGPT" in proc.stdout and "another AI model" in proc.stdout
    proc = cli("lint", "good", "--json", check_json=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.json["ok"] is True and proc.json["findings"] == []


def test_an_assistant_that_names_itself_a_vendor_model_is_an_error_without_an_assistant_word(reg, tmp_path):
    rows = [chat("Who are you?", "I am ChatGPT."), chat("너는 누구야?", "저는 챗GPT입니다."),
            chat("Which tool drafts emails?", "Try ChatGPT for that.")]
    ingest(reg, [write_jsonl(tmp_path / "s.jsonl", rows)], name="s", kind="sft")
    found = {(f.row, f.level) for f in lint(reg, "s").findings if f.check == "deny_name"}
    assert found == {(0, "error"), (1, "error"), (2, "warning")}


def test_unfilled_template_variables_are_errors_in_identity_rows_and_warnings_in_code_answers(reg, tmp_path, external):
    ingest(reg, [external / "identity.json"], name="raw-identity", kind="sft")
    report = lint(reg, "raw-identity")
    found = [f for f in report.findings if f.check == "placeholder"]
    assert {f.matched for f in found} == {"{{name}}", "{{author}}"} and all(f.level == "error" for f in found)
    assert len({f.row for f in found}) == 85  # the rows of LLaMA-Factory's file that still have placeholders
    rows = [chat("Show a Jinja greeting.", "Use `Hello {{ user.name }}!` in the template."), chat("Hi", "Hello!")]
    ingest(reg, [write_jsonl(tmp_path / "code.jsonl", rows)], name="code", kind="sft")
    code = [f for f in lint(reg, "code").findings if f.check == "placeholder"]
    assert [(f.level, f.matched, f.row) for f in code] == [("warning", "{{ user.name }}", 0)]
