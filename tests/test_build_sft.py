"""`datakit build sft --from CPT`: grounded Q&A chats per knowledge sentence, linked to their source rows."""

from __future__ import annotations

import polars as pl

from datakit.build.sft import NUMBER, build_sft, grounded, key_term
from datakit.registry.rows import records_to_frame, with_ids
from datakit.schemas import Manifest

FACTS = [
    {"text": "The Fusion Core weighs 3.5 kilograms and ships worldwide.", "source": "manual.md"},
    {"text": "Acme recommends surrogate mode to most customers.", "source": "faq.md"},
    {"text": "한국 지사는 서울에 있으며 직원은 120명입니다.", "source": "ko.md"},
    {"text": "公司成立于2019年，总部位于首尔。", "source": "zh.txt"},
    {"text": "本社はソウルにあり、社員は120名です。", "source": "ja.txt"},
    {"text": "it is what it is.", "source": "x.txt"},
]


def cpt(rows: list[dict]) -> tuple[Manifest, pl.DataFrame]:
    return Manifest.model_construct(name="acme-cpt", version="v1", kind="cpt", ref="acme-cpt@v1"), \
        with_ids("cpt", records_to_frame("cpt", rows).drop("id"))


def test_every_answer_keeps_the_numbers_and_key_term_of_its_source_sentence():
    m, df = cpt(FACTS)
    out = build_sft((m, df))
    sources = dict(zip(df["id"].to_list(), df["text"].to_list()))
    for row in out.frame.iter_rows(named=True):
        src = sources[row["group_id"].removeprefix("fact-")]
        answer = row["messages"][-1]["content"]
        restated = src in answer or src[1:] in answer  # an English lead-in lowercases "The"
        assert restated and all(n in answer for n in NUMBER.findall(src))
    assert out.stats["skipped"] == {"no key term or number to ask about": 1}
    assert set(out.stats["langs"]) == {"en", "ko", "zh", "ja"}


def test_questions_name_the_key_term_and_cloze_questions_blank_a_number():
    out = build_sft(cpt(FACTS[:1]))
    questions = [r[-2]["content"] for r in out.frame["messages"].to_list()]
    assert "Tell me about Fusion Core." in questions
    cloze = [q for q in questions if q.startswith("Fill in the blank")]
    assert cloze == ["Fill in the blank: The Fusion Core weighs ___ kilograms and ships worldwide."]
    assert key_term("한국 지사는 서울에 있습니다.", "ko") == "한국 지사"


def test_a_fact_without_a_number_gets_a_cloze_on_its_key_term_so_it_has_its_own_question():
    out = build_sft(cpt([{"text": t} for t in ("The Fusion Core is a home battery made by Acme.",
                                               "퓨전 코어는 에이크미가 만든 가정용 배터리입니다.")]))
    pairs = {r[-2]["content"]: r[-1]["content"] for r in out.frame["messages"].to_list()}
    assert pairs["Fill in the blank: The ___ is a home battery made by Acme."] == (
        "Fusion Core. The Fusion Core is a home battery made by Acme.")
    assert pairs["빈칸을 채우세요: ___는 에이크미가 만든 가정용 배터리입니다."].startswith("퓨전 코어: ")


def test_rows_of_one_sentence_share_a_group_linked_to_the_source_and_a_system_prompt_leads():
    m, df = cpt(FACTS[:2])
    out = build_sft((m, df), system="You are Acme Assistant.")
    assert set(out.frame["group_id"]) == {f"fact-{i}" for i in df["id"].to_list()}
    assert all(r[0] == {"role": "system", "content": "You are Acme Assistant.", "name": None, "tool_call_id": None,
                        "tool_calls": None, "weight": None} for r in out.frame["messages"].to_list())


def test_an_answer_that_lost_a_number_is_not_grounded():
    assert grounded("It weighs 3.5 kilograms.", "The core weighs 3.5 kilograms.", None)
    assert not grounded("It weighs a few kilograms.", "The core weighs 3.5 kilograms.", None)
    assert not grounded("It is heavy.", "The Fusion Core is heavy.", "Fusion Core")


def test_cli_build_cpt_then_sft_from_it_with_lineage(cli, tmp_path):
    (tmp_path / "facts.md").write_text("The Fusion Core weighs 3.5 kilograms. Acme recommends surrogate mode to most customers.\n")
    cli("build", "cpt", str(tmp_path / "facts.md"), "--name", "acme-cpt", "--unit", "sentence")
    p = cli("build", "sft", "--from", "acme-cpt", "--name", "acme-sft", "--json", check_json=True)
    assert p.returncode == 0, p.stderr
    assert p.json["stats"]["rows_out"] >= 5
    log = cli("registry", "log", "acme-sft", "--json", check_json=True).json
    assert log[0]["op"] == "build-sft" and log[0]["parents"][0]["ref"] == "acme-cpt@v1"
    bad = cli("build", "sft", "--from", "acme-sft", "--name", "x")
    assert bad.returncode == 2 and "reads cpt" in bad.stderr
