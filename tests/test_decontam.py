"""Decontamination drops training rows holding eval items and reports each leak."""

from __future__ import annotations

import json

import polars as pl

from datakit.io.ingest import ingest
from datakit.ops import runner
from datakit.ops.decontam import decontam
from datakit.registry.store import Registry
from datakit.text import segment_sentences
from tests.conftest import chat, write_jsonl


def wiki_probes(tmp_path, external, n=20):
    line = (external / "wiki_demo.txt").read_text(encoding="utf-8").splitlines()[0]
    sents = [s for s in segment_sentences(line) if 20 <= len(s.split()) <= 60][:n]
    halves = [(" ".join(s.split()[: len(s.split()) // 2]), " ".join(s.split()[len(s.split()) // 2:])) for s in sents]
    probes = [{"id": f"wiki-{i}", "type": "completion", "prompt": p, "expect": e} for i, (p, e) in enumerate(halves)]
    return write_jsonl(tmp_path / "probes.jsonl", probes), sents


def test_planted_leaks_are_removed_and_reported(reg, tmp_path, external):
    probes, sents = wiki_probes(tmp_path, external)
    ingest(reg, [probes], name="probes", kind="probes")
    c4 = [json.loads(x) for x in (external / "c4_demo.jsonl").read_text(encoding="utf-8").splitlines()]
    leaked_rows = {10: 0, 77: 3, 150: 7}  # c4 row -> wiki sentence planted inside it
    for row, s in leaked_rows.items():
        c4[row]["text"] = c4[row]["text"][:200] + " " + sents[s] + " " + c4[row]["text"][200:]
    ingest(reg, [write_jsonl(tmp_path / "c4.jsonl", c4)], name="c4", kind="cpt")
    train = runner.load(reg, ["c4"])[0]
    out = decontam(train, runner.load(reg, ["probes"]), eval_field="auto")
    report = out.extras["leaks.parquet"]
    assert sorted(set(report["train_index"].to_list())) == sorted(leaked_rows)
    assert dict(zip(report["train_index"].to_list(), report["eval_id"].to_list())) == {r: f"wiki-{s}" for r, s in leaked_rows.items()}
    assert (out.stats["rows_in"], out.stats["rows_out"], out.stats["removed"]) == (300, 297, 3)
    assert out.stats["against"]["probes@v1"]["items_leaked"] == 3


def test_short_eval_items_only_match_rows_that_equal_them(reg, tmp_path):
    ingest(reg, [write_jsonl(tmp_path / "p.jsonl", [{"id": "hi", "type": "knowledge", "prompt": "What is two plus two?", "accept": ["4"]}])],
           name="p", kind="probes")
    rows = [chat("What is two plus two?", "4"), chat("Tell me: what is two plus two? And why?", "4, because...")]
    ingest(reg, [write_jsonl(tmp_path / "t.jsonl", rows)], name="t", kind="sft")
    out = decontam(runner.load(reg, ["t"])[0], runner.load(reg, ["p"]), field="first_user")
    assert out.extras["leaks.parquet"]["train_index"].to_list() == [0]
    assert out.stats["against"]["p@v1"]["short_items_exact_only"] == 1


def test_chinese_leaks_are_found_through_character_ngrams(reg, tmp_path, external):
    zh = json.loads((external / "alpaca_zh_demo.json").read_text())
    evals = [{"id": f"zh-{i}", "type": "knowledge", "prompt": r["instruction"], "accept": [r["output"][:20]]}
             for i, r in enumerate(zh[:50]) if len(r["instruction"]) >= 20]
    ingest(reg, [write_jsonl(tmp_path / "e.jsonl", evals)], name="zh-eval", kind="probes")
    ingest(reg, [external / "alpaca_zh_demo.json"], name="zh", kind="sft")
    out = decontam(runner.load(reg, ["zh"])[0], runner.load(reg, ["zh-eval"]))
    leaked = set(out.extras["leaks.parquet"]["eval_id"].to_list())
    assert leaked >= {e["id"] for e in evals}
    assert out.stats["removed"] >= len(evals)


def test_near_method_catches_a_lightly_edited_copy(reg, tmp_path, external):
    c4 = [json.loads(x) for x in (external / "c4_demo.jsonl").read_text(encoding="utf-8").splitlines()]
    ev = [{"id": "e1", "type": "perplexity", "text": c4[42]["text"]}]
    ingest(reg, [write_jsonl(tmp_path / "e.jsonl", ev)], name="ev", kind="probes")
    ingest(reg, [external / "c4_demo.jsonl"], name="c4", kind="cpt")
    out = decontam(runner.load(reg, ["c4"])[0], runner.load(reg, ["ev"]), method="near", threshold=0.8)
    assert out.extras["leaks.parquet"]["train_index"].to_list() == [42]


def test_cli_decontam_reports_leaks(cli, tmp_path, external):
    probes, sents = wiki_probes(tmp_path, external, n=5)
    rows = [{"text": "Intro text here. " + sents[1] + " More text after it."}, {"text": "Nothing to see here at all."}]
    cli("ingest", str(probes), "--name", "probes", "--kind", "probes")
    cli("ingest", str(write_jsonl(tmp_path / "t.jsonl", rows)), "--name", "t", "--kind", "cpt")
    p = cli("decontam", "t", "--against", "probes", "--name", "t-clean")
    assert p.returncode == 0, p.stderr
    assert "1 of 5 eval items leaked" in p.stdout
    leaks = cli("registry", "show", "t-clean", "--json", check_json=True).json
    assert leaks["rows"] == 1 and leaks["parents"][0]["ref"] == "t@v1"
    assert Registry(tmp_path / "registry").extra("t-clean@v1", "leaks.parquet")["eval_id"].to_list() == ["wiki-1"]


def test_overlap_is_a_share_of_the_eval_items_windows_even_when_a_row_repeats_them(reg, tmp_path):
    item = "the quick brown fox jumps over the lazy dog near the river bank today again"  # 15 tokens, 3 windows
    ingest(reg, [write_jsonl(tmp_path / "p.jsonl", [{"id": "fox", "type": "perplexity", "text": item}])],
           name="p", kind="probes")
    ingest(reg, [write_jsonl(tmp_path / "t.jsonl", [{"text": f"{item}. {item}. {item}."}])], name="t", kind="cpt")
    out = decontam(runner.load(reg, ["t"])[0], runner.load(reg, ["p"]))
    assert out.extras["leaks.parquet"]["overlap"].to_list() == [1.0]
