"""Exact and near-duplicate dedup on real files with planted duplicates; lineage and reports."""

from __future__ import annotations

import json
import random

import numpy as np
import polars as pl
import pytest

from datakit.io.ingest import ingest
from datakit.ops import dup_find, minhash, runner
from datakit.ops.dedup import dedup, run_dedup
from tests.conftest import chat, write_jsonl


def perturb(text: str, rng: random.Random, n: int = 1) -> str:
    words = text.split(" ")
    for _ in range(n):
        words[rng.randrange(len(words))] = "zzplanted"
    return " ".join(words)


def c4_with_planted(tmp_path, external, n_copies=30, seed=3):
    rows = [json.loads(x) for x in (external / "c4_demo.jsonl").read_text(encoding="utf-8").splitlines()]
    rng = random.Random(seed)
    long_ones = [i for i, r in enumerate(rows) if len(r["text"].split(" ")) > 150]
    planted = rng.sample(long_ones, n_copies)
    copies = [{"text": perturb(rows[i]["text"], rng)} for i in planted]
    return write_jsonl(tmp_path / "c4_planted.jsonl", rows + copies), planted, len(rows)


def run(reg, refs, **kw):
    inputs = runner.load(reg, refs)
    return inputs, dedup(inputs, **kw)


def test_exact_dedup_removes_whitespace_and_case_copies_and_maps_them_to_the_kept_row(reg, tmp_path, external):
    src = json.loads((external / "alpaca_en_demo.json").read_text())
    copies = [{**src[i], "instruction": "  " + src[i]["instruction"].upper() + "\n"} for i in (5, 50, 500)]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(src + copies))
    ingest(reg, [path], name="a", kind="sft")
    ingest(reg, [external / "alpaca_en_demo.json"], name="orig", kind="sft")
    natural = run(reg, ["orig"])[1][0].stats["removed"]  # alpaca repeats some questions itself
    inputs, [out] = run(reg, ["a"])
    assert (out.stats["rows_in"], out.stats["rows_out"], out.stats["removed"]) == (1002, 999 - natural, natural + 3)
    report = out.extras["clusters.parquet"].filter(pl.col("removed_index") >= 999)
    assert report["removed_index"].to_list() == [999, 1000, 1001]
    assert report["kept_index"].to_list() == [5, 50, 500]
    assert report["similarity"].to_list() == [1.0, 1.0, 1.0] and set(report["method"]) == {"exact"}
    m, created = runner.commit(reg, name="a-dedup", kind="sft", inputs=[inputs[0][0]], op="dedup", params={}, out=out)
    assert m.rows == 999 - natural and m.parents[0].ref == "a@v1"
    assert reg.extra(m, "clusters.parquet").height == natural + 3


def test_near_dedup_finds_every_planted_copy_in_c4_and_removes_no_original(reg, tmp_path, external):
    path, planted, n = c4_with_planted(tmp_path, external)
    ingest(reg, [path], name="c4p", kind="cpt")
    _, [out] = run(reg, ["c4p"], near=True, threshold=0.8)
    report = out.extras["clusters.parquet"].filter(pl.col("method") == "near")
    assert sorted(report["removed_index"].to_list()) == list(range(n, n + len(planted)))
    assert sorted(report["kept_index"].to_list()) == sorted(planted)
    assert (report["similarity"] >= 0.8).all()
    lsh = out.stats["lsh"]
    assert lsh["verified_pairs"] >= len(planted) and 0.5 < lsh["detection_probability_at_threshold"] < 1
    assert lsh["s_curve"]["0.9"] > 0.95  # misses weigh more than candidates: every candidate is verified
    assert lsh["s_curve"]["1.0"] == 1.0 and lsh["s_curve"]["0.5"] < 0.05
    assert out.stats["rows_in"] == out.stats["rows_out"] + out.stats["removed"]


def test_near_dedup_works_on_chinese_through_character_shingles(reg, tmp_path, external):
    src = json.loads((external / "alpaca_zh_demo.json").read_text())
    long_ones = [r for r in src if len(r["output"]) > 300][:20]
    copies = [{**r, "output": r["output"][:100] + "改" + r["output"][101:]} for r in long_ones]
    path = tmp_path / "zh.json"
    path.write_text(json.dumps(src + copies, ensure_ascii=False))
    ingest(reg, [path], name="zh", kind="sft")
    _, [out] = run(reg, ["zh"], near=True, field="assistant", threshold=0.8)
    assert out.stats["removed_near"] + out.stats["removed_exact"] >= 20
    removed = set(out.extras["clusters.parquet"]["removed_index"].to_list())
    assert set(range(len(src), len(src) + 20)) <= removed


def test_identity_rows_win_a_cross_dataset_cluster(reg, tmp_path):
    general = write_jsonl(tmp_path / "g.jsonl", [chat("Who are you?", "I am a helpful assistant."), chat("Sky?", "Blue.")])
    ident = write_jsonl(tmp_path / "i.jsonl", [{**chat("Who are you?", "I am Acme Assistant."), "intent": "affirm", "lang": "en"}])
    ingest(reg, [general], name="general", kind="sft")
    ingest(reg, [ident], name="acme-identity", kind="identity")
    inputs, outs = run(reg, ["general", "acme-identity"])
    assert [o.stats["removed"] for o in outs] == [1, 0]
    row = outs[0].extras["clusters.parquet"].row(0, named=True)
    assert (row["removed_dataset"], row["kept_dataset"]) == ("general@v1", "acme-identity@v1")
    assert outs[0].stats["removed_into_other_datasets"] == 1


def test_field_choice_decides_what_counts_as_a_duplicate(reg, tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [chat("What is LoRA?", "A low-rank adapter."), chat("What is LoRA?", "Low-rank adaptation of weights.")])
    ingest(reg, [path], name="c", kind="sft")
    assert run(reg, ["c"], field="first_user")[1][0].stats["removed"] == 1
    assert run(reg, ["c"], field="conversation")[1][0].stats["removed"] == 0


def test_keep_longest_keeps_the_longer_near_duplicate(reg, tmp_path, external):
    text = [json.loads(x)["text"] for x in (external / "c4_demo.jsonl").read_text().splitlines() if len(x) > 3000][0]
    short = text
    longer = text + " And one more closing sentence for good measure."
    ingest(reg, [write_jsonl(tmp_path / "k.jsonl", [{"text": short}, {"text": longer}])], name="k", kind="cpt")
    _, [first] = run(reg, ["k"], near=True, keep="first")
    _, [longest] = run(reg, ["k"], near=True, keep="longest")
    assert first.frame["text"].to_list() == [short]
    assert longest.frame["text"].to_list() == [longer]


def test_dedup_is_deterministic(reg, tmp_path, external):
    path, _, _ = c4_with_planted(tmp_path, external, n_copies=10)
    ingest(reg, [path], name="d", kind="cpt")
    a = run(reg, ["d"], near=True)[1][0]
    b = run(reg, ["d"], near=True)[1][0]
    assert a.frame["id"].to_list() == b.frame["id"].to_list()
    assert a.extras["clusters.parquet"].equals(b.extras["clusters.parquet"])


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.9])
def test_lsh_bands_and_rows_are_as_good_as_datasketch_optimum(threshold):
    from datasketch.lsh import _false_negative_probability as fn
    from datasketch.lsh import _false_positive_probability as fp
    from datasketch.lsh import _optimal_param

    def error(b, r):
        return 0.5 * fp(threshold, b, r) + 0.5 * fn(threshold, b, r)

    ours, theirs = minhash.lsh_params(threshold, 128, 0.5, 0.5), _optimal_param(threshold, 128, 0.5, 0.5)
    assert error(*ours) <= error(*theirs) + 1e-5  # equal up to numeric integration
    assert minhash.lsh_params(0.8, 128, 0.5, 0.5) == (9, 13)


def test_one_permutation_signatures_estimate_jaccard(external):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, size=400, dtype=np.uint64)
    errs = []
    for keep in (380, 340, 300, 200):
        other = np.concatenate([base[:keep], rng.integers(0, 2**63, size=400 - keep, dtype=np.uint64)])
        hs = [np.unique(minhash.mix64(x)) for x in (base, other)]
        sh = minhash.Shingles(np.concatenate(hs), np.array([0, len(hs[0]), len(hs[0]) + len(hs[1])]))
        sig = minhash.signatures(sh, 128)
        est = float((sig[0] == sig[1]).mean())
        true = float(minhash.jaccard(sh, np.array([[0, 1]]))[0])
        errs.append(abs(est - true))
    assert max(errs) < 0.12 and np.mean(errs) < 0.06


def test_cli_dedup_writes_a_version_with_lineage(cli, tmp_path, external):
    path, planted, n = c4_with_planted(tmp_path, external, n_copies=5)
    cli("ingest", str(path), "--name", "c4p", "--kind", "cpt")
    p = cli("dedup", "c4p", "--near", "--name", "c4-clean", "--json", check_json=True)
    assert p.returncode == 0, p.stderr
    assert p.json[0]["ref"] == "c4-clean@v1" and p.json[0]["stats"]["removed"] == 5
    log = cli("registry", "log", "c4-clean", "--json", check_json=True).json
    assert log[0]["op"] == "dedup" and log[0]["parents"][0]["ref"] == "c4p@v1"


def test_near_copies_a_person_would_call_the_same_are_removed_at_the_default_settings(reg, tmp_path, external):
    """Real text (c4, wiki, alpaca en/zh) with planted copies of every edit kind in datakit/ops/near_edits.py:
    at the defaults (threshold 0.8, auto shingles) recall >= 0.95 of the copies and no original removed."""
    from datakit.ops.near_edits import KINDS, plant

    texts = [json.loads(x)["text"] for x in (external / "c4_demo.jsonl").read_text().splitlines()]
    texts += [x.strip() for x in (external / "wiki_demo.txt").read_text().splitlines() if x.strip()]
    texts += [r["output"] for r in json.loads((external / "alpaca_zh_demo.json").read_text()) if len(r["output"]) > 40][:150]
    texts = list(dict.fromkeys(texts))
    copies = plant(texts, random.Random(5), per_kind=25)
    rows = [{"text": t} for t in texts] + [{"text": c} for _, c, _ in copies]
    ingest(reg, [write_jsonl(tmp_path / "planted.jsonl", rows)], name="planted", kind="cpt")
    (res,) = run_dedup(reg, ["planted"], ["planted-dedup"], near=True)
    removed = set(reg.extra(res["ref"], "clusters.parquet")["removed_index"].to_list())  # by row position
    assert not removed & set(range(len(texts))), "an original was removed"
    by_kind = {k: [len(texts) + n in removed for n, (_, _, kind) in enumerate(copies) if kind == k] for k in KINDS}
    recall = sum(sum(v) for v in by_kind.values()) / len(copies)
    print({k: round(sum(v) / len(v), 2) for k, v in by_kind.items()}, res["stats"]["lsh"]["shingle"])
    assert recall >= 0.95 and all(sum(v) / len(v) >= 0.8 for v in by_kind.values())
    assert res["stats"]["lsh"]["shingle"] == "word:3"  # long rows: word 3-grams (auto)


def test_short_rows_get_character_shingles_and_boilerplate_can_be_trimmed(reg, tmp_path):
    from datakit.ops.dedup import choose_shingles

    short = pl.Series(["what is the warranty on the home battery", "how do I return a panel"] * 10)
    assert str(choose_shingles(short, "auto", None)) == "char:5"
    assert str(choose_shingles(short, "word:4", None)) == "word:4" and str(choose_shingles(short, "auto", 6)) == "word:6"
    base = [f"Acme news {i}: the plant in city {i} opened a new line for part {i * 7} this week." for i in range(20)]
    rows = [{"text": t} for t in base] + [{"text": "Reposted - " + t} for t in base[:6]]
    ingest(reg, [write_jsonl(tmp_path / "b.jsonl", rows)], name="b", kind="cpt")
    (trim,) = run_dedup(reg, ["b"], ["b-trim"], near=True, trim_boilerplate=True)
    assert trim["stats"]["removed"] == 6 and trim["stats"]["lsh"]["boilerplate"]["prefixes"] == ["reposted - "]


def _planted_real_texts(external, per_kind=10, seed=11):
    from datakit.ops.near_edits import plant

    texts = [json.loads(x)["text"] for x in (external / "c4_demo.jsonl").read_text().splitlines()][:300]
    texts += [r["output"] for r in json.loads((external / "alpaca_zh_demo.json").read_text()) if len(r["output"]) > 40][:100]
    return texts + [c for _, c, _ in plant(texts, random.Random(seed), per_kind=per_kind)]


def _reader_view(text: str | None) -> str | None:
    """The rule written plainly, one row at a time: what the column version must equal."""
    import re
    import unicodedata

    if text is None:
        return None
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub("[\u2018\u2019\u201a\u201b\u2032\u00b4`]", "'", text)
    text = re.sub("[\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb]", '"', text)
    text = re.sub("[\u2010\u2011\u2012\u2013\u2014\u2015\u2212]", "-", text)
    return re.sub(r"\s+", " ", text).strip(" ")


def test_reader_normalization_of_a_column_equals_the_rule_row_by_row_on_real_and_edited_text(external):
    from datakit.ops.shingling import reader_normalize_series

    texts = _planted_real_texts(external) + ["a\tb", "  x  ", "\uff21\uff22\uff23\u00a0d", None, "", "it\u2019s \u2014 ok\n\nfine"]
    fast = reader_normalize_series(pl.Series(texts, dtype=pl.String))
    assert fast.to_list() == [_reader_view(t) for t in texts]
    assert fast[-1] == "it's - ok fine" and fast[-4] == "abc d"  # the rows only the slow steps change


def test_chunk_sizes_do_not_change_what_near_dedup_removes(reg, tmp_path, external, monkeypatch):
    """Signatures are computed a chunk of rows at a time and candidates verified a chunk of pairs at a time
    (bounded memory): tiny chunks must give the same clusters, similarities and stats as the defaults."""
    rows = [{"text": t} for t in _planted_real_texts(external)]
    ingest(reg, [write_jsonl(tmp_path / "p.jsonl", rows)], name="p", kind="cpt")
    _, [whole] = run(reg, ["p"], near=True)
    monkeypatch.setattr(minhash, "CHUNK_DOCS", 7)
    monkeypatch.setenv("DATAKIT_BATCH_ROWS", "13")  # rows signed a batch at a time
    monkeypatch.setattr(dup_find, "VERIFY_PAIRS", 3)  # pairs verified a few at a time
    _, [chunked] = run(reg, ["p"], near=True)
    assert whole.stats["removed_near"] >= 30 and whole.stats["removed"] >= 80
    assert whole.extras["clusters.parquet"].equals(chunked.extras["clusters.parquet"])
    assert whole.stats == chunked.stats
    sh = minhash.shingle_hashes(pl.Series([["a", "b", "c", "d"]]), 2)
    assert minhash.signatures(sh, 64).dtype == np.uint32  # half the memory of 64-bit minimums
