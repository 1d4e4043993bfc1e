"""The data ops as a user runs them: each writes a version, prints its counts, takes --json."""

from __future__ import annotations

import unicodedata
from pathlib import Path

from tests.conftest import chat, write_jsonl

EXAMPLE_MIX = Path(__file__).resolve().parent.parent / "recipes" / "mixtures" / "example-mix.yaml"


def test_cli_mix_prints_planned_and_realized_shares_and_commits(cli, external):
    assert cli("demo", "--ingest-only", "--data", str(external)).returncode == 0
    p = cli("mix", str(EXAMPLE_MIX))
    assert p.returncode == 0, p.stderr
    assert "identity-seeds" in p.stdout and "demo-sft-mix@v1" in p.stdout
    j = cli("mix", str(EXAMPLE_MIX), "--name", "mix2", "--json", check_json=True).json
    assert j["ref"] == "mix2@v1" and j["rows_out"] == 600
    shares = {c["dataset"].split("@")[0]: c["realized_share"] for c in j["components"]}
    assert abs(shares["identity-seeds"] - 0.3) < 0.01
    log = cli("registry", "log", "mix2", "--json", check_json=True).json
    assert {p["ref"] for p in log[0]["parents"]} == {"identity-seeds@v1", "alpaca-en@v1", "alpaca-zh@v1"}


def test_cli_mix_with_a_bad_spec_exits_2_naming_the_file(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ncomponents: []\nsurprise: 1\n")
    p = cli("mix", str(bad))
    assert p.returncode == 2 and "bad.yaml" in p.stderr


def test_cli_normalize_turns_nfd_into_nfc_and_counts_changed_rows(cli, tmp_path):
    nfd = unicodedata.normalize("NFD", "회사는 서울에 있습니다.")
    rows = [chat(nfd, "네.\u200b  맞아요."), chat("plain", "text")]
    cli("ingest", str(write_jsonl(tmp_path / "k.jsonl", rows)), "--name", "k", "--kind", "sft")
    j = cli("normalize", "k", "--name", "k-nfc", "--json", check_json=True).json
    assert j[0]["stats"]["rows_changed"] == 1
    show = cli("registry", "show", "k-nfc", "--rows", "1", "--json", check_json=True).json
    msgs = show["sample"][0]["messages"]
    assert msgs[0]["content"] == unicodedata.normalize("NFC", nfd) and msgs[1]["content"] == "네. 맞아요."


def test_cli_dedup_of_several_refs_needs_one_name_each_or_a_prefix(cli, tmp_path):
    cli("ingest", str(write_jsonl(tmp_path / "a.jsonl", [chat("q", "a")])), "--name", "a", "--kind", "sft")
    cli("ingest", str(write_jsonl(tmp_path / "b.jsonl", [chat("q", "a"), chat("r", "b")])), "--name", "b", "--kind", "sft")
    j = cli("dedup", "a", "b", "--name", "clean", "--json", check_json=True).json
    assert [x["ref"] for x in j] == ["clean-a@v1", "clean-b@v1"]
    assert [x["stats"]["removed"] for x in j] == [0, 1]
    p = cli("dedup", "a", "b", "--name", "x", "--name", "y", "--name", "z")
    assert p.returncode == 2 and "one --name per REF" in p.stderr


def test_keep_score_keeps_the_best_scored_duplicate(reg, tmp_path):
    from datakit.io.ingest import ingest
    from datakit.ops import runner
    from datakit.ops.dedup import dedup

    rows = [{"prompt": "Q?", "chosen": "ok", "rejected": "bad", "score_chosen": 0.2},
            {"prompt": "Q?", "chosen": "great", "rejected": "bad", "score_chosen": 0.9}]
    ingest(reg, [write_jsonl(tmp_path / "p.jsonl", rows)], name="p", kind="preference")
    [out] = dedup(runner.load(reg, ["p"]), keep="score", score_field="score_chosen")
    assert out.frame["score_chosen"].to_list() == [0.9]
