"""synth preference: k answers from a real mlx_lm server, judged by a scripted OpenAI-compatible judge (a stdlib
server whose score is a function of the answer text) or by a tiny reward model; best vs worst kept, every drop
counted."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from datakit.build.preference import default_temperatures, run_preference
from datakit.errors import DatakitError
from datakit.generate.judge import judge_kind, parse_score, render_conversation, score_reward_model
from datakit.io.ingest import ingest
from datakit.registry.rows import frame_to_records
from datakit.registry.store import Registry
from datakit.tiny import build_llama, train_tokenizer
from tests.conftest import chat_completion, json_server, mlx_lm_server, write_jsonl

# ---- parsing what judges write ---------------------------------------------------------------------------------

SCORES = [
    ("Clear and correct.\nScore: 7/10", 10, 7.0),
    ("**8**", 10, 8.0),
    ("Rating: 4 out of 5", 5, 4.0),
    ("Rating: 4 out of 5", 10, None),  # stated on another scale than asked: not guessed
    ('{"reasoning": "cites 3 sources", "score": 8}', 10, 8.0),
    ("7.5", 10, 7.5),
    ("Score: 3 at first, but the fix is right.\nScore: 9", 10, 9.0),  # the last score line wins
    ("Helpfulness score: 9\nCorrectness score: 2\nFinal score: **5**", 10, 5.0),
    ("I would give it a score of 6 out of 10.", 10, 6.0),
    ("Rating: [[8]]", 10, 8.0),
    ("<think>Score: 2? no...</think>\nScore: 6", 10, 6.0),
    ("<think>maybe Score: 2", 10, None),  # cut off while thinking: no verdict yet
    ("Score: 9\nScore: 11", 10, None),  # the final verdict is out of range; an earlier one is not used instead
    ("Score: 0", 10, None),
    ("Score: -3", 10, None),
    ("It has 3 errors and 2 typos.", 10, None),
    ("I cannot rate this.", 10, None),
    ("", 10, None),
]


@pytest.mark.parametrize(("text", "scale", "expected"), SCORES)
def test_parse_score_reads_the_formats_judges_write_and_refuses_the_rest(text: str, scale: int,
                                                                          expected: float | None) -> None:
    assert parse_score(text, scale) == expected


def test_default_temperatures_spread_from_careful_to_wild() -> None:
    assert default_temperatures(2) == [0.2, 1.2] and default_temperatures(4) == [0.2, 0.5, 0.9, 1.2]


def test_prompts_from_a_kind_without_conversations_and_contradicting_k_and_temperatures_are_refused(
        reg: Registry, tmp_path: Path) -> None:
    src = _prompts(reg, tmp_path, [{"text": "Seoul is the capital of Korea."}], kind="cpt")
    judge = "openai:judge@http://127.0.0.1:9/v1"
    with pytest.raises(DatakitError, match="is a cpt dataset; synth preference reads prompts from sft, identity"):
        run_preference(reg, src, name="p", generator=judge, judge=judge)
    with pytest.raises(DatakitError, match=r"--k 3 but 2 --temperatures \[0.2, 0.8\]"):
        run_preference(reg, src, name="p", generator=judge, judge=judge, k=3, temperatures=[0.2, 0.8])
    assert not (reg.root / "journals").exists()  # refused before anything was sent


# ---- a real generator and a scripted judge -----------------------------------------------------------------------

RUBRIC_PARTS = re.compile(r"\[Conversation\]\n(.*)\n\[End of conversation\].*\[Answer\]\n(.*)\n\[End of answer\]",
                          re.DOTALL)


def verdict(conversation: str, answer: str) -> tuple[str, float | None]:
    """The scripted judge: its reply and the score that reply states, both a function of the text it judges."""
    h = int(hashlib.sha256(answer.encode()).hexdigest(), 16)
    if "TIE" in conversation:
        return "Fine.\nScore: 6", 6.0
    if "MUMBLE" in conversation:
        return "I cannot rate this.", None
    if "CLOSE" in conversation:  # distinct scores, all within one point
        s = round(5 + h % 1000 / 1000, 3)
        return f"Score: {s}", s
    if "FINE" in conversation:  # one decimal, so ties are rare
        s = round(1 + h % 90 / 10, 1)
        return f"Rating: {s}/10", s
    s = 1 + h % 10
    forms = [(f"Score: {s}", s), (f"Rating: {s}/10", s), (f"**{s}**", s), (f'{{"score": {s}}}', s),
             (f"Score: 2 at first glance; on reflection better.\nScore: {s}", s), ("no verdict", None)]
    return forms[h // 10 % len(forms)]


@pytest.fixture
def judge_server() -> Iterator[Callable[..., tuple[str, list]]]:
    """start(status=200) -> (judge spec, requests seen): an OpenAI chat-completions server answering with
    `verdict`, or with `status` and an error body."""
    with contextlib.ExitStack() as servers:
        def start(status: int = 200) -> tuple[str, list]:
            seen: list = []

            def respond(raw: bytes, headers: dict) -> tuple[int, dict]:
                body = json.loads(raw)
                seen.append(body)
                if status != 200:
                    return status, {"error": {"message": "the judge is down"}}
                conversation, answer = RUBRIC_PARTS.search(body["messages"][-1]["content"]).groups()
                return 200, chat_completion(verdict(conversation, answer)[0], model="judge")

            return f"openai:judge@{servers.enter_context(json_server(respond))}", seen

        yield start


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_llama(tmp_path_factory.mktemp("pref") / "base")


@pytest.fixture(scope="module")
def generator(base: Path) -> Iterator[str]:
    pytest.importorskip("mlx_lm")
    with mlx_lm_server(base) as (url, _):
        yield f"openai:default_model@{url}"


def _sft(q: str, a: str = "An answer.", system: str | None = None) -> dict:
    head = [{"role": "system", "content": system}] if system else []
    return {"messages": [*head, {"role": "user", "content": q}, {"role": "assistant", "content": a}]}


def _prompts(reg: Registry, tmp_path: Path, rows: list[dict], kind: str = "sft") -> str:
    res = ingest(reg, [write_jsonl(tmp_path / "prompts.jsonl", rows)], name="prompts", kind=kind)
    assert res.kept == len(rows)
    return res.manifest.ref


def _rows(reg: Registry, ref: str) -> list[dict]:
    m = reg.resolve(ref)
    return list(frame_to_records(m.kind, reg.load(m)))


def test_pairs_are_best_versus_worst_by_the_judge_and_every_dropped_prompt_is_counted_by_reason(
        generator: str, judge_server, reg: Registry, cli, tmp_path: Path) -> None:
    judge, seen = judge_server()
    source = [
        _sft("NORMAL: what is the capital of Korea?", system="You are terse."),
        {**_sft("NORMAL: and its sky?"), "group_id": "sky"},
        {"messages": [{"role": "user", "content": "NORMAL: hello"}, {"role": "assistant", "content": "Hi."},
                      {"role": "user", "content": "NORMAL: sort a list in Python?"},
                      {"role": "assistant", "content": "sorted(xs)"}]},
        _sft("TIE: tell me a fact."), _sft("MUMBLE: say something."), _sft("CLOSE: describe blue."),
        _sft("NORMAL: what is the capital of Korea?", "Seoul.", system="You are terse."),  # a repeated prompt
    ]
    src = _prompts(reg, tmp_path, source)
    proc = cli("synth", "preference", "--prompts", src, "--generator", generator, "--judge", judge, "--name", "prefs",
               "--max-tokens", "8", "--min-margin", "2", "--json", check_json=True)
    assert proc.returncode == 0, proc.stderr
    st = proc.json["stats"]
    assert st["prompts"] == 6 and st["skipped_rows"] == {"duplicate_prompt": 1}
    assert st["prompts"] == st["rows_out"] + sum(st["filtered"].values()) and st["rows_out"] >= 1
    assert st["requests"] == 6 * 4 + st["answers"]["judged"] == 24 + len(seen) and st["failed"] == 0
    assert st["answers"]["generated"] == 24 and st["answers"]["unparseable"] >= 2  # MUMBLE's answers at least
    dropped = reg.extra(proc.json["ref"], "rejected.parquet").to_dicts()  # each dropped prompt, with its reason
    assert Counter(d["reason"] for d in dropped) == st["filtered"]
    fate = {json.loads(d["row"])["prompt"][-1]["content"].split(":")[0]: d["reason"] for d in dropped}
    fate.pop("NORMAL", None)  # a NORMAL prompt may fall to any filter; the scripted ones must fall to theirs
    assert fate == {"TIE": "tie", "MUMBLE": "judge_unparseable", "CLOSE": "below_margin"}

    rows = _rows(reg, proc.json["ref"])
    sources = {json.dumps(s["messages"][:-1]): s for s in source}
    assert len(rows) == st["rows_out"]
    for r in rows:
        chosen, rejected = r["chosen"][0]["content"], r["rejected"][0]["content"]
        assert chosen != rejected and r["score_chosen"] - r["score_rejected"] >= 2
        conv = render_conversation(r["prompt"])
        assert "NORMAL" in conv
        assert (r["score_chosen"], r["score_rejected"]) == (verdict(conv, chosen)[1], verdict(conv, rejected)[1])
        scores = [a["score"] for a in r["meta"]["scores"] if a["score"] is not None]
        assert (max(scores), min(scores)) == (r["score_chosen"], r["score_rejected"])
        src_row = sources[json.dumps(r["prompt"])]  # the prompt is the source conversation minus its last answer
        assert r["prompt"][-1]["role"] == "user"
        assert r["group_id"] == src_row.get("group_id", r["meta"]["source_id"])
        assert (r["meta"]["generator"], r["meta"]["judge"]) == (generator, judge)
        assert {r["meta"]["temperature_chosen"], r["meta"]["temperature_rejected"]} <= {0.2, 0.5, 0.9, 1.2}
    chosen_len = [len(r["chosen"][0]["content"]) for r in rows]
    rejected_len = [len(r["rejected"][0]["content"]) for r in rows]
    assert st["length_bias"] == {
        "pairs": len(rows),
        "chosen_longer_share": round(sum(c > j for c, j in zip(chosen_len, rejected_len)) / len(rows), 4),
        "mean_chars_chosen": round(sum(chosen_len) / len(rows), 1),
        "mean_chars_rejected": round(sum(rejected_len) / len(rows), 1)}

    # Greedy answers at two seeds are one answer: every prompt has too few, and nothing is committed.
    greedy = cli("synth", "preference", "--prompts", src, "--generator", generator, "--judge", judge, "--name",
                 "prefs-greedy", "--temperatures", "0,0", "--max-tokens", "8")
    assert greedy.returncode == 2 and "{'too_few_answers': 6}" in greedy.stderr, greedy.stderr
    assert reg.versions("prefs-greedy") == []


def test_a_reward_model_judge_scores_every_answer_and_the_pair_is_its_max_and_min(
        generator: str, reg: Registry, base: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    rm = train_tokenizer(tmp_path / "rm")
    tok = AutoTokenizer.from_pretrained(rm)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256, num_labels=1,
                         pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(config)
    with torch.no_grad():
        model.score.weight.mul_(30)  # spread the random rewards so they rank clearly
    model.save_pretrained(rm, safe_serialization=True)
    assert judge_kind(f"hf:{rm}") == "reward_model" and judge_kind(f"hf:{base}") == "llm"
    assert judge_kind("openai:m@http://h/v1") == "llm" and judge_kind(f"mlx:{base}") == "llm"

    prompt = [{"role": "user", "content": "What is the capital of Korea?"}]
    pairs = [(prompt, "Seoul."), (prompt, "The capital of Korea is Seoul, a large city."), (prompt, "Blue.")]
    scores = score_reward_model(rm, pairs, batch_size=3)
    assert all(isinstance(s, float) for s in scores) and len(set(scores)) == 3
    assert scores == score_reward_model(rm, pairs, batch_size=3)  # deterministic
    assert score_reward_model(rm, pairs, batch_size=1) == pytest.approx(scores, abs=1e-3)  # padding changes nothing

    asks = [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me about the sky."}],
            [{"role": "user", "content": "Write hello world."}]]
    src = _prompts(reg, tmp_path, [{"prompt": p, "chosen": [{"role": "assistant", "content": "Old."}],
                                    "rejected": [{"role": "assistant", "content": "Older."}]} for p in asks],
                   kind="preference")  # a preference set's prompts, answered afresh
    m, created, st = run_preference(reg, src, name="prefs-rm", generator=generator, judge=f"hf:{rm}", k=3,
                                    min_margin=0.0, max_tokens=8)
    assert created and st["judge_kind"] == "reward_model" and st["requests"] == 6  # only generation is requested
    rows = _rows(reg, m.ref)
    assert len(rows) == st["rows_out"] >= 1
    for r in rows:
        assert r["prompt"] in asks
        texts = [r["chosen"][0]["content"], r["rejected"][0]["content"]]
        assert score_reward_model(rm, [(r["prompt"], t) for t in texts], batch_size=1) == pytest.approx(
            [r["score_chosen"], r["score_rejected"]], abs=1e-3)
        all_scores = [a["score"] for a in r["meta"]["scores"]]
        assert (max(all_scores), min(all_scores)) == (r["score_chosen"], r["score_rejected"])
        assert r["score_chosen"] > r["score_rejected"]


def test_a_failing_judge_leaves_failure_rows_in_the_journal_and_commits_nothing(
        generator: str, judge_server, reg: Registry, cli, tmp_path: Path) -> None:
    judge, seen = judge_server(status=500)
    src = _prompts(reg, tmp_path, [_sft("Tell me about the sky.")])
    proc = cli("synth", "preference", "--prompts", src, "--generator", generator, "--judge", judge, "--name",
               "prefs-down", "--k", "2", "--max-tokens", "8", "--retries", "0")
    assert proc.returncode == 1, proc.stderr
    assert "nothing was committed" in proc.stderr and "Rerun the same command" in proc.stderr
    journal = [json.loads(line) for line in (reg.root / "journals" / "prefs-down.jsonl").read_text().splitlines()]
    failed = [j for j in journal if j["error"] is not None]
    assert len(failed) == len(seen) == 2 and all("InternalServerError" in j["error"] and j["text"] is None
                                                  for j in failed)
    assert len(journal) == 4 and reg.versions("prefs-down") == []  # two answers journaled, two judge failures


def test_rerunning_a_finished_command_takes_everything_from_the_journal_and_returns_the_same_version(
        generator: str, judge_server, reg: Registry, cli, tmp_path: Path) -> None:
    judge, seen = judge_server()
    src = _prompts(reg, tmp_path, [_sft("FINE: tell me about the sky."), _sft("FINE: write hello world.")])
    args = ("synth", "preference", "--prompts", src, "--generator", generator, "--judge", judge, "--name", "prefs",
            "--k", "2", "--max-tokens", "8", "--min-margin", "0.1", "--json")
    first = cli(*args, check_json=True)
    assert first.returncode == 0 and first.json["created"], first.stderr
    judged = len(seen)
    again = cli(*args, check_json=True)
    assert again.returncode == 0, again.stderr
    assert (again.json["ref"], again.json["content_hash"], again.json["created"]) == (
        first.json["ref"], first.json["content_hash"], False)
    st = again.json["stats"]
    assert st["from_journal"] == st["requests"] == first.json["stats"]["requests"] and len(seen) == judged
