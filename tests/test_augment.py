"""`datakit augment`: the gates on literal texts, a scripted OpenAI-compatible server that makes every gate fire,
a real mlx_lm server with a tiny model, and a server killed part way through a run."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from datakit.errors import DatakitError
from datakit.generate.job import GenOptions, journal_path
from datakit.io.ingest import ingest
from datakit.ops.augment import run_augment
from datakit.ops.augment_gates import (
    GATES,
    Pair,
    answer_prompt,
    check,
    clean_output,
    gate_copy,
    gate_deny_name,
    gate_language,
    gate_meaning,
    missing_terms,
    question_prompt,
)
from datakit.registry.rows import frame_to_records
from datakit.registry.store import Registry
from datakit.tiny import build_llama
from tests.conftest import chat, chat_completion, json_server, mlx_lm_server, write_jsonl

REFUND = Pair("How long is the refund window at Acme?", "Refunds are accepted within 30 days of purchase.")
REFUND_KO = Pair("환불 기간은 얼마나 되나요?", "구매 후 30일 이내에 환불할 수 있습니다.")
WHO = Pair("Who made you?", "I am Acme Assistant, made by Acme.")
REFUND_2 = Pair("What is the refund window at Acme?", REFUND.answer)


# ---- the gates on literal texts --------------------------------------------------------------------


def test_a_near_copy_of_the_source_or_of_a_kept_sibling_is_rejected_as_copy() -> None:
    near = Pair("How long is the refund window at Acme??", "Refunds are accepted within 30 days of purchase!")
    assert gate_copy(near, REFUND) == "copy"
    good = Pair("Within what time can I get my money back from Acme?", "Acme takes returns for 30 days after purchase.")
    assert gate_copy(good, REFUND) is None
    # the question alone being a copy is enough: augmentation must paraphrase the question and vary the answer
    assert gate_copy(Pair(REFUND.question, good.answer), REFUND) == "copy"
    sibling = Pair("Within what time can I get my money back from Acme??", "Acme takes returns for 30 days after purchase!")
    assert gate_copy(sibling, REFUND, [good]) == "copy" and gate_copy(sibling, REFUND, []) is None
    assert gate_copy(good, REFUND, threshold=0.2) == "copy"


def test_a_variant_that_turns_30_days_into_a_month_or_drops_a_name_is_rejected_as_meaning() -> None:
    month = Pair("What is the refund period at Acme?", "You can get a refund within a month.")
    assert gate_meaning(month, REFUND) == "meaning" and missing_terms(REFUND.answer, month.answer) == ["30"]
    no_name = Pair("What is the refund period?", "Refunds are possible up to 30 days after you buy.")
    assert gate_meaning(no_name, REFUND) == "meaning" and missing_terms(REFUND.question, no_name.question) == ["Acme"]
    assert missing_terms(WHO.answer, "I'm an assistant built by Acme.") == ["Assistant"]  # a name, not a word
    assert missing_terms(WHO.answer, "Acme built me: I am Acme Assistant.") == []
    # digits may move and full-width or thousands-separated forms count; a sentence's first word is no key term
    assert missing_terms("It holds 35,000 rows.", "Rows: ３５０００.") == []
    assert missing_terms("Refunds take 30 days.", "You get 30 days for refunds.") == []
    assert missing_terms("저는 Acme의 LoRA 모델입니다.", "저는 Acme에서 만든 모델이에요.") == ["LoRA"]


def test_a_korean_source_with_an_english_variant_is_rejected_as_language() -> None:
    english = Pair("How long do I have to get a refund?", "You have 30 days after you buy.")
    assert gate_language(english, REFUND_KO) == "language"
    assert gate_language(Pair(REFUND_KO.question, english.answer), REFUND_KO) == "language"
    assert gate_language(Pair("환불은 언제까지 가능한가요?", "구입일로부터 30일 안에 환불됩니다."), REFUND_KO) is None


def test_a_variant_naming_chatgpt_or_an_alias_from_the_deny_file_is_rejected_as_deny_name() -> None:
    src = "\n".join(REFUND)
    assert gate_deny_name(Pair("How long is Acme's refund window?", "As ChatGPT, I can say 30 days."), src) == "deny_name"
    assert gate_deny_name(Pair("환불 기간은?", "챗지피티에 따르면 30일입니다."), src) == "deny_name"
    assert gate_deny_name(Pair("Is RivalBot better?", "No, 30 days."), src, {"Rival": ["RivalBot"]}) == "deny_name"
    assert gate_deny_name(Pair("Is RivalBot better?", "No, 30 days."), src) is None
    # a name the source itself uses is the data's business, not something the variant introduced
    assert gate_deny_name(Pair("Are you ChatGPT?", "No, I am not ChatGPT."), "Are you ChatGPT?\nNo.") is None


def test_a_good_paraphrase_passes_every_gate_and_truncated_or_empty_output_does_not() -> None:
    good = Pair("Within what time can I get my money back from Acme?",
                "You can return items for a refund up to 30 days after buying them.")
    src = "\n".join(REFUND)
    assert check(good, REFUND, source_text=src, finish_reasons=("stop", "stop")) is None
    assert check(good, REFUND, source_text=src, finish_reasons=("stop", "length")) == "truncated"
    assert check(Pair("", good.answer), REFUND, source_text=src) == "empty"
    assert check(Pair(good.question, "<think>the user wants"), REFUND, source_text=src) != "empty"  # not cleaned here
    assert check(Pair(good.question, clean_output("<think>the user wants")), REFUND, source_text=src) == "empty"


def test_output_cleaning_strips_reasoning_preambles_and_wrapping_quotes_but_not_content() -> None:
    assert clean_output('Paraphrase: "When can I get my money back?"') == "When can I get my money back?"
    assert clean_output("<think>keep 30</think>\n\nHere is a reworded version of the answer: “It is 30 days.”") \
        == "It is 30 days."
    assert clean_output("Sure! Here's the rewritten question:\n「返金期間は？」") == "返金期間は？"
    assert clean_output("질문: 환불 기간은?") == "환불 기간은?"
    assert clean_output("reasoning here</think> It is 30 days.") == "It is 30 days."
    assert clean_output("<think>still reasoning when it stopped") == "" and clean_output(None) == ""
    for kept in ('Here are the steps: first do X.', '"Hello" is a greeting in "English"', "Question marks end questions."):
        assert clean_output(kept) == kept


def test_prompts_ask_for_the_rows_language_and_carry_the_source_text() -> None:
    q = question_prompt(REFUND_KO.question, "ko", 0)
    a = answer_prompt(*REFUND_KO, "ko", 1)
    assert "in Korean" in q[-1]["content"] and REFUND_KO.question in q[-1]["content"]
    assert "in Korean" in a[-1]["content"] and REFUND_KO.answer in a[-1]["content"]
    assert question_prompt("x", "ko", 0) != question_prompt("x", "ko", 1)  # siblings get different instructions
    assert "same language as the original" in question_prompt("¿Qué?", "other", 0)[-1]["content"]


# ---- a scripted OpenAI-compatible server ------------------------------------------------------------


@pytest.fixture
def openai_server() -> Iterator[tuple[str, list, list[dict]]]:
    """A stdlib server speaking chat completions; answer[0](body) -> (text, finish_reason). Records request bodies."""
    answer: list[Callable[[dict], tuple[str, str]]] = []
    seen: list[dict] = []

    def respond(raw: bytes, headers: dict) -> tuple[int, dict]:
        body = json.loads(raw)
        seen.append(body)
        text, finish = answer[0](body)
        return 200, chat_completion(text, finish, body["model"])

    with json_server(respond) as url:
        yield url, answer, seen


GOOD_REFUND = ('Paraphrase: "Within what time can I get my money back from Acme?"',
               "<think>keep the 30</think>You can return items for a refund up to 30 days after buying them.")
# (source question, variant index) -> (question text, answer text[, answer finish_reason]); seed 0, so seed == variant
SCRIPT = {
    (REFUND.question, 0): GOOD_REFUND,
    (REFUND.question, 1): (REFUND.question, "Acme takes returns for 30 days after purchase."),  # copy
    (REFUND.question, 2): ("What is Acme's refund period?", "You can get a refund within a month."),  # meaning
    (REFUND_KO.question, 0): ("환불은 언제까지 가능한가요?", "구입하신 날부터 30일 안에 환불을 받으실 수 있어요."),
    (REFUND_KO.question, 1): ("How long do I have to get a refund?", "You have 30 days."),  # language
    (REFUND_KO.question, 2): ("환불 가능 기간이 어떻게 되나요?", "ChatGPT에 따르면 구매 후 30일 이내에 환불됩니다."),  # deny_name
    (WHO.question, 0): ("Which company built you?", "I'm Acme Assistant, and Acme built me."),
    (WHO.question, 1): ("Who created you?", "I am Acme Assistant, a helpful assistant built by Ac", "length"),  # truncated
    (WHO.question, 2): ("<think>The user wants a paraphrase", "Acme built me; I am Acme Assistant."),  # empty
    (REFUND_2.question, 0): ("Within what time can I get my money back from Acme?",  # duplicate of refund's variant 0
                             "You can return items for a refund up to 30 days after buying them."),
    (REFUND_2.question, 1): ("For how many days can Acme customers ask for a refund?",
                             "Acme gives refunds for 30 days from the purchase date."),
    (REFUND_2.question, 2): ("For how many days can Acme customers ask for a refund?",  # copy of its sibling
                             "Acme gives refunds for 30 days from the purchase date!"),
}


def scripted_answer(body: dict) -> tuple[str, str]:
    prompt = body["messages"][-1]["content"]
    (src,) = [s for s in (REFUND, REFUND_KO, WHO, REFUND_2) if s.question in prompt]
    q, a, *finish = SCRIPT[(src.question, body["seed"])]
    return (a, finish[0] if finish else "stop") if src.answer in prompt else (q, "stop")


def test_every_gate_fires_once_through_the_openai_client_and_kept_variants_keep_group_and_lineage(
        openai_server, reg: Registry, tmp_path: Path) -> None:
    url, answer, seen = openai_server
    answer.append(scripted_answer)
    rows = [{**chat(*REFUND), "group_id": "refund"}, chat(*REFUND_KO), chat(*WHO), chat(*REFUND_2)]
    src = ingest(reg, [write_jsonl(tmp_path / "src.jsonl", rows)], name="src", kind="sft").manifest
    spec = f"openai:scripted@{url}"
    m, created, st = run_augment(reg, "src", name="aug", n=3, generator=spec, options=GenOptions(concurrency=3))

    assert created and len(seen) == 24 and {b["temperature"] for b in seen} == {0.8}
    assert st["gates"] == {"truncated": 1, "empty": 1, "language": 1, "deny_name": 1, "meaning": 1, "copy": 2,
                           "duplicate": 1}
    assert st["filtered"] == {g: n for g, n in st["gates"].items()}
    assert (st["requests"], st["done"], st["failed"], st["from_journal"]) == (24, 24, 0, 0)
    assert (st["sources"], st["variants_kept"], st["candidates"]) == (4, 4, 12)
    assert st["candidates"] == st["variants_kept"] + sum(st["filtered"].values())
    assert st["rows_out"] == m.rows == 8 and 0 < st["similarity_mean"] < 0.9

    out = list(frame_to_records("sft", reg.load(m)))
    by_id = {r["id"]: r for r in reg.load(src).to_dicts()}
    sources = [r for r in out if "augmented_from" not in r["meta"]]
    variants = [r for r in out if "augmented_from" in r["meta"]]
    assert [r["messages"] for r in sources] == [r["messages"] for r in rows]
    assert [(by_id[v["meta"]["augmented_from"]]["messages"][0]["content"], v["meta"]["variant"]) for v in variants] == [
        (REFUND.question, 0), (REFUND_KO.question, 0), (WHO.question, 0), (REFUND_2.question, 1)]
    assert all(v["meta"]["generator"] == spec and set(v["meta"]) == {"augmented_from", "variant", "generator"}
               for v in variants)
    assert variants[0]["messages"] == chat("Within what time can I get my money back from Acme?",
                                           "You can return items for a refund up to 30 days after buying them.")["messages"]
    # group ids: the given one is kept; a row without one gets its row id, on the source row and its variants alike
    groups = [r["group_id"] for r in out]
    ids = list(by_id)
    assert groups == ["refund", "refund", ids[1], ids[1], ids[2], ids[2], ids[3], ids[3]]

    rejected = reg.extra(m, "rejected.parquet")
    assert Counter(rejected["reason"].to_list()) == Counter({g: n for g, n in st["gates"].items() for _ in range(n)})
    meaning = json.loads(rejected.filter(rejected["reason"] == "meaning")["row"][0])
    assert meaning["meta"]["missing"] == ["30"] and meaning["messages"][1]["content"] == SCRIPT[(REFUND.question, 2)][1]

    # the same command again: every result comes from the journal, nothing is sent, the same version comes back
    m2, created2, st2 = run_augment(reg, "src", name="aug", n=3, generator=spec)
    assert (m2.ref, created2, st2["from_journal"], len(seen)) == (m.ref, False, 24, 24)


def test_cli_augments_identity_rows_rewriting_only_the_last_turns_and_keeping_intent_and_lang(
        openai_server, cli, tmp_path: Path) -> None:
    url, answer, _ = openai_server
    answer.append(lambda body: ("My name is Acme Assistant." if "I am Acme Assistant." in body["messages"][-1]["content"]
                                else "Could you tell me who you are?", "stop"))
    system = {"role": "system", "content": "You are Acme Assistant."}
    turns = [*chat("Hi", "Hello!")["messages"], *chat("Who are you?", "I am Acme Assistant.")["messages"]]
    row = {"messages": [system, *turns], "intent": "affirm", "lang": "en", "group_id": "who"}
    rows = write_jsonl(tmp_path / "id.jsonl", [row])
    assert cli("ingest", str(rows), "--name", "ident", "--kind", "identity").returncode == 0
    p = cli("augment", "ident", "--n", "1", "--generator", f"openai:m@{url}", "--name", "ident-aug", "--variants-only",
            "--json", check_json=True)
    assert p.returncode == 0, p.stderr
    assert p.json["ref"] == "ident-aug@v1" and p.json["stats"]["variants_kept"] == p.json["stats"]["rows_out"] == 1
    (v,) = frame_to_records("identity", Registry(tmp_path / "registry").load("ident-aug"))
    assert v["messages"][:3] == row["messages"][:3]
    assert [m["content"] for m in v["messages"][3:]] == ["Could you tell me who you are?", "My name is Acme Assistant."]
    assert (v["intent"], v["lang"], v["group_id"]) == ("affirm", "en", "who")

    bad = cli("augment", "ident", "--n", "0", "--generator", f"openai:m@{url}", "--name", "x")
    assert bad.returncode == 2 and "--n 0" in bad.stderr
    cpt = write_jsonl(tmp_path / "c.jsonl", [{"text": "Acme was founded in 1999."}])
    assert cli("ingest", str(cpt), "--name", "docs", "--kind", "cpt").returncode == 0
    bad = cli("augment", "docs", "--n", "1", "--generator", f"openai:m@{url}", "--name", "x")
    assert bad.returncode == 2 and "docs@v1 is cpt" in bad.stderr and "datakit build sft" in bad.stderr


# ---- a real mlx_lm server with a tiny model -----------------------------------------------------------

TINY_ROWS = [chat("What color is the sky?", "It is blue."), chat("Say hello.", "Hello there, how are you?"),
             chat("하늘은 무슨 색인가요?", "하늘은 파랗습니다."),
             chat("What does sort do?", "It puts items in order.")]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("mlx_lm")
    return build_llama(tmp_path_factory.mktemp("aug") / "tiny")


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def test_a_real_mlx_lm_server_answers_every_request_and_gibberish_is_filtered_with_counts_that_add_up(
        tiny: Path, reg: Registry, tmp_path: Path) -> None:
    ingest(reg, [write_jsonl(tmp_path / "s.jsonl", TINY_ROWS)], name="src", kind="sft")
    opts = GenOptions(concurrency=2, timeout_s=30, retries=1)
    with mlx_lm_server(tiny) as (url, _):
        kw = {"name": "aug", "n": 2, "generator": f"openai:default_model@{url}", "options": opts, "max_tokens": 24}
        try:  # the tiny model writes gibberish: most or all of it fails a gate
            m, _, st = run_augment(reg, "src", keep_source=False, **kw)
            assert st["variants_kept"] == m.rows >= 1
        except DatakitError as e:
            assert "every candidate was filtered" in str(e) and "nothing to commit to aug" in str(e)
        journal = _lines(journal_path(reg, "aug"))
        assert len(journal) == 16 and all(x["error"] is None and x["text"] is not None for x in journal)
        m, _, st = run_augment(reg, "src", keep_source=True, **kw)  # the same requests: all from the journal
    assert (st["requests"], st["done"], st["failed"], st["from_journal"]) == (16, 16, 0, 16)
    assert st["candidates"] == 8 == st["variants_kept"] + sum(st["filtered"].values())
    assert set(st["filtered"]) <= set(GATES) and sum(st["filtered"].values()) >= 1
    assert m.rows == st["rows_out"] == 4 + st["variants_kept"]
    assert reg.extra(m, "rejected.parquet").height == sum(st["filtered"].values())


def test_a_server_killed_mid_run_commits_nothing_and_the_rerun_reuses_the_journal_without_duplicates(
        tiny: Path, cli, tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    assert cli("ingest", str(write_jsonl(tmp_path / "s.jsonl", TINY_ROWS)), "--name", "src", "--kind", "sft").returncode == 0
    def args(url: str) -> tuple[str, ...]:
        return ("augment", "src", "--n", "3", "--generator", f"openai:default_model@{url}", "--name", "aug",
                "--concurrency", "1", "--retries", "0", "--max-tokens", "48", "--json")

    journal = journal_path(Registry(registry), "aug")
    first: list = []
    with mlx_lm_server(tiny) as (url, server):
        run = threading.Thread(target=lambda: first.append(cli(*args(url))))
        run.start()
        deadline = time.time() + 60
        while len(_lines(journal)) < 2 and run.is_alive() and time.time() < deadline:
            time.sleep(0.005)
        server.kill()
        run.join(timeout=120)
    (p,) = first
    done_before = [x for x in _lines(journal) if x["error"] is None]
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert "generation requests failed" in p.stderr and "nothing was committed" in p.stderr
    assert "Rerun the same command" in p.stderr and 2 <= len(done_before) < 24
    assert Registry(registry).versions("aug") == []

    with mlx_lm_server(tiny) as (url2, _):  # restarted on another port: the journal keys do not name the URL
        assert url2 != url
        again = cli(*args(url2), check_json=True)
    assert again.returncode == 0, again.stderr
    st = again.json["stats"]
    assert st["from_journal"] == len(done_before) and (st["requests"], st["done"], st["failed"]) == (24, 24, 0)
    assert st["candidates"] == 12 == st["variants_kept"] + sum(st["filtered"].values())
    out = Registry(registry).load("aug")
    assert out.height == st["rows_out"] == 4 + st["variants_kept"]
    assert out["id"].n_unique() == out.height and out.select("messages", "group_id").is_unique().all()
