"""`datakit build identity`: varied affirm/deny rows in every language, no competitor names, no copies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from datakit.build.identity import IdentitySpec, build_identity
from datakit.errors import DatakitError
from datakit.evals.denylist import find_denied

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "identity" / "acme-identity.yaml"


def spec(**kw) -> IdentitySpec:
    return IdentitySpec(**{"name": "Acme Assistant", "maker": "Acme", "languages": ["en", "ko", "zh", "ja"], **kw})


def test_every_language_gets_affirm_and_deny_rows_with_varied_questions_and_answers(tmp_path):
    out = build_identity(spec(), tmp_path)
    df = out.frame
    assert set(df["lang"]) == {"en", "ko", "zh", "ja"} and set(df["intent"]) == {"affirm", "deny"}
    assert out.stats["duplicate_rows"] == 0 and out.stats["rows_out"] == df.height
    assert out.stats["distinct_questions"] >= 30 and out.stats["distinct_answers"] >= 20
    per_group = df.group_by("group_id").len()
    assert (per_group["len"] >= 4).all()  # every question comes in several phrasings and answers
    answers = [m[1]["content"] for m in df["messages"].to_list()]
    assert all("Acme" in a for a in answers)


def test_deny_rows_use_generic_words_only(tmp_path):
    out = build_identity(spec(), tmp_path)
    for msgs in out.frame.filter(out.frame["intent"] == "deny")["messages"].to_list():
        text = " ".join(m["content"] for m in msgs)
        assert find_denied(text, allow=("Acme Assistant", "Acme")) == []


def test_seeds_naming_a_competitor_are_refused_or_dropped_with_a_count(tmp_path, external):
    s = spec(languages=["en"], seeds=[str(external / "identity.json")])
    with pytest.raises(DatakitError, match="name another vendor or model.*generic words"):
        build_identity(s, tmp_path)
    out = build_identity(s, tmp_path, drop_denied=True)
    assert out.stats["denied_rows"] >= 5
    text = json.dumps(out.frame["messages"].to_list(), ensure_ascii=False)
    assert "OpenAI" not in text and "ChatGPT" not in text and "{{name}}" not in text and "Acme Assistant" in text


def test_asking_for_more_rows_than_can_be_varied_fails_instead_of_copying(tmp_path):
    with pytest.raises(DatakitError, match="only .* distinct rows .* instead of copies"):
        build_identity(spec(languages=["en"], min_rows=5000), tmp_path)


def test_the_build_is_deterministic_by_seed(tmp_path):
    a = build_identity(spec(seed=1), tmp_path).frame
    b = build_identity(spec(seed=1), tmp_path).frame
    assert a.equals(b)


def test_cli_build_identity_commits_identity_kind(cli):
    p = cli("build", "identity", str(RECIPE), "--name", "acme-identity", "--json", check_json=True)
    assert p.returncode == 0, p.stderr
    assert p.json["ref"] == "acme-identity@v1" and p.json["stats"]["by_lang"].keys() == {"en", "ko"}
    show = cli("registry", "show", "acme-identity", "--json", check_json=True).json
    assert show["kind"] == "identity" and show["op"] == "build-identity"


@pytest.mark.parametrize("languages", [["en", "ko"], ["zh", "ja"], ["en", "ko", "zh", "ja"]])
@pytest.mark.parametrize("answers", [1, 2, 4])
def test_every_language_asks_varied_questions_and_never_repeats_a_pair(reg, tmp_path, languages, answers):
    """FIELD_NOTES 3.2 asks for variation, not repetition: >= 70% distinct questions per language in any set of
    40+ rows, no (question, answer) pair twice, every topic (who, maker, capabilities, which model, other model)
    present, and the lint clean on what was built."""
    from datakit.ops import runner
    from datakit.ops.lint import lint

    out = build_identity(spec(languages=languages, answers_per_question=answers), tmp_path)
    df = out.frame
    assert df.height >= 30  # two zh+ja phrasings sets are the smallest: 32 rows
    for lang in languages:
        mine = [m for m, lg in zip(df["messages"].to_list(), df["lang"].to_list()) if lg == lang]
        questions = [m[0]["content"] for m in mine]
        assert len(set(questions)) / len(questions) >= 0.7, (lang, len(set(questions)), len(questions))
        assert len({(m[0]["content"], m[1]["content"]) for m in mine}) == len(mine)
        assert out.stats["distinct_question_share"][lang] >= 0.7
    topics = {g.rsplit("-", 1)[0] for g in df["group_id"].to_list()}
    assert topics == {"affirm-who", "affirm-maker", "affirm-capabilities", "affirm-which_model", "deny-other_model"}
    m, _ = runner.commit(reg, name="idn", kind="identity", inputs=[], op="build-identity", params={}, out=out)
    report = lint(reg, m.ref, allow=("Acme Assistant", "Acme"))
    assert report.ok and not [f for f in report.findings if f.level != "info"], report.findings[:5]
