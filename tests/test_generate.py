"""Journaled generation: a real mlx_lm.server on loopback, stdlib HTTP servers that fail on purpose (429, 500,
a hang), a local HF model, and the journal's crash and secret handling."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from datakit.errors import DatakitError
from datakit.generate import Journal, Request, generate_all, parse_spec
from datakit.tiny import IM_END, build_llama
from tests.conftest import chat_completion, free_port, json_server, mlx_lm_server

SECRET = "sk-test-do-not-persist-1234567890"
HELLO = [{"role": "user", "content": "Say hello"}]


# ---- specs -----------------------------------------------------------------------------------


def test_specs_parse_into_backend_model_and_url_and_bad_ones_name_the_forms() -> None:
    s = parse_spec("openai:gpt-4o-mini@https://api.example.com/v1/")
    assert (s.backend, s.model, s.base_url) == ("openai", "gpt-4o-mini", "https://api.example.com/v1")
    assert parse_spec("openai:org@name@http://h:1/v1").model == "org@name"
    assert parse_spec("hf:models/base").model == "models/base" and parse_spec("mlx:/m").backend == "mlx"
    for bad in ["gpt-4o", "vllm:m", "openai:m", "openai:m@ftp://x", "openai:@http://h/v1", "hf:"]:
        with pytest.raises(DatakitError, match=r"openai:MODEL@BASE_URL .*hf:PATH or mlx:PATH"):
            parse_spec(bad)


def test_a_request_key_depends_on_request_and_generator_but_not_on_the_api_key(monkeypatch) -> None:
    r = Request(messages=HELLO, max_tokens=8)
    monkeypatch.setenv("OPENAI_API_KEY", "one")
    k1 = r.key(parse_spec("openai:m@http://h/v1"))
    monkeypatch.setenv("OPENAI_API_KEY", "two")
    same = Request(max_tokens=8, messages=HELLO).key("openai:m@http://h/v1")  # field order does not matter
    assert r.key(parse_spec("openai:m@http://h/v1")) == k1 == same
    assert r.key("openai:other@http://h/v1") != k1
    assert r.key("openai:m@http://127.0.0.1:9999/v1") == k1  # a server restarted on another port finds its journal
    assert Request(messages=HELLO, max_tokens=9).key("openai:m@http://h/v1") != k1
    with pytest.raises(ValueError, match="needs prompt="):
        Request(kind="completion")


# ---- a real mlx_lm.server ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_llama(tmp_path_factory.mktemp("gen") / "base")


@pytest.fixture
def mlx_server(base: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    pytest.importorskip("mlx_lm")
    with mlx_lm_server(base) as served:
        yield served


def test_chat_and_completion_come_back_from_mlx_lm_server_and_a_rerun_sends_nothing(
        mlx_server: tuple[str, subprocess.Popen], tmp_path: Path, monkeypatch) -> None:
    url, proc = mlx_server
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    spec = f"openai:default_model@{url}"
    reqs = [Request(messages=HELLO, max_tokens=12),
            Request(kind="completion", prompt="The capital of Korea is", max_tokens=8),
            Request(messages=[{"role": "user", "content": "What is Python's sort?"}], max_tokens=12,
                    temperature=0.7, seed=3)]
    seen = []
    with Journal(tmp_path / "gen.jsonl") as j:
        first = generate_all(spec, reqs, journal=j, concurrency=2, timeout_s=30, on_result=seen.append)
        assert j.counts() == {"done": 3, "failed": 0}
    assert all(r.ok and r.attempts == 1 and not r.from_journal for r in first), [r.error for r in first]
    assert all(r.text is not None for r in first) and any(r.text for r in first), [r.text for r in first]
    assert IM_END not in first[0].text and len(seen) == 3
    proc.kill()
    proc.wait(timeout=10)  # nothing left to answer: every result must come from the journal
    with Journal(tmp_path / "gen.jsonl") as j:
        again = generate_all(spec, reqs, journal=j, timeout_s=2, retries=0, on_result=seen.append)
    assert [r.text for r in again] == [r.text for r in first] and all(r.from_journal for r in again)
    assert len(seen) == 3  # on_result is for new results only
    assert SECRET not in (tmp_path / "gen.jsonl").read_text()


# ---- servers that fail on purpose --------------------------------------------------------------


_completion = chat_completion


@pytest.fixture
def scripted() -> Iterator[tuple[str, list, list]]:
    """A stdlib server answering POSTs from a script: (status, body) or ("hang", seconds). Records headers."""
    script: list = []
    seen: list[dict] = []

    def respond(raw: bytes, headers: dict) -> tuple[int, dict] | float:
        seen.append(headers)
        reply = script.pop(0) if script else ("hang", 3)
        return reply[1] if reply[0] == "hang" else reply

    with json_server(respond) as url:
        yield url, script, seen


def test_429_then_500_then_success_is_retried_with_backoff_and_the_key_is_sent_but_never_journaled(
        scripted: tuple[str, list, list], tmp_path: Path, monkeypatch) -> None:
    url, script, seen = scripted
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    script += [(429, {"error": {"message": "slow down"}}), (500, {"error": {"message": "oops"}}),
               (200, _completion("hi"))]
    start = time.monotonic()
    with Journal(tmp_path / "j.jsonl") as j:
        (res,) = generate_all(f"openai:m@{url}", [Request(messages=HELLO)], journal=j, retries=4, backoff_s=0.1)
    assert res.ok and res.text == "hi" and res.finish_reason == "stop" and res.attempts == 3
    assert time.monotonic() - start >= 0.1 * 0.5 + 0.2 * 0.5  # two backoff sleeps, jitter at its lowest
    assert len(seen) == 3 and all(h.get("authorization") == f"Bearer {SECRET}" for h in seen)
    assert SECRET not in (tmp_path / "j.jsonl").read_text()


def test_a_hanging_server_becomes_a_recorded_failure_that_a_rerun_retries(
        scripted: tuple[str, list, list], tmp_path: Path) -> None:
    url, script, seen = scripted
    req = Request(messages=HELLO)
    start = time.monotonic()
    with Journal(tmp_path / "j.jsonl") as j:
        (res,) = generate_all(f"openai:m@{url}", [req], journal=j, timeout_s=0.3, retries=1, backoff_s=0.05)
        assert j.counts() == {"done": 0, "failed": 1}
    assert not res.ok and res.text is None and "timed out after 0.3s" in res.error and res.attempts == 2
    assert time.monotonic() - start < 2.5 and len(seen) == 2
    script.append((200, _completion("back")))  # the server recovered: the rerun sends the failed request again
    with Journal(tmp_path / "j.jsonl") as j:
        (res,) = generate_all(f"openai:m@{url}", [req], journal=j, timeout_s=2)
        assert res.text == "back" and not res.from_journal and j.counts() == {"done": 1, "failed": 0}
    assert len(seen) == 3


def test_a_client_error_is_not_retried_and_an_unreachable_server_is_a_failure_not_a_crash(
        scripted: tuple[str, list, list], tmp_path: Path) -> None:
    url, script, seen = scripted
    script.append((400, {"error": {"message": "bad max_tokens"}}))
    with Journal(tmp_path / "j.jsonl") as j:
        (res,) = generate_all(f"openai:m@{url}", [Request(messages=HELLO)], journal=j, backoff_s=0.01)
        assert res.attempts == 1 and "BadRequestError" in res.error and "bad max_tokens" in res.error
        dead = f"openai:m@http://127.0.0.1:{free_port()}/v1"
        start = time.monotonic()
        eight = [Request(messages=[{"role": "user", "content": f"hi {i}"}]) for i in range(8)]
        with pytest.raises(DatakitError, match="cannot reach the generation server .* all 4 requests of the first wave"):
            generate_all(dead, eight, journal=j, retries=4, backoff_s=1.0, concurrency=4)
        assert time.monotonic() - start < 3  # the circuit breaker: no request retried to the end
        assert j.counts() == {"done": 0, "failed": 1}  # only the 400 above: the unsent ones are a rerun's


def test_retry_after_is_honoured_when_longer_than_the_backoff(scripted: tuple[str, list, list], tmp_path: Path) -> None:
    url, script, seen = scripted
    script += [(429, {"error": {"message": "slow down"}}, {"Retry-After": "1"}), (200, _completion("ok"))]
    start = time.monotonic()
    with Journal(tmp_path / "j.jsonl") as j:
        (res,) = generate_all(f"openai:m@{url}", [Request(messages=HELLO)], journal=j, retries=2, backoff_s=0.01)
    assert res.ok and res.attempts == 2 and time.monotonic() - start >= 1.0


# ---- the journal -------------------------------------------------------------------------------


def test_a_torn_last_line_is_skipped_and_the_next_append_starts_a_clean_line(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path) as j:
        j.append({"key": "a", "text": "x", "error": None})
        j.append({"key": "b", "text": None, "error": "timed out"})
    with path.open("a") as fh:
        fh.write('{"key": "c", "text": "half')  # a crash mid-write
    with Journal(path) as j:
        assert j.counts() == {"done": 1, "failed": 1} and j.get("a")["text"] == "x" and j.get("c") is None
        j.append({"key": "c", "text": "whole", "error": None})
        j.append({"key": "b", "text": "later", "error": None})
    with Journal(path) as j:
        assert j.counts() == {"done": 3, "failed": 0} and j.get("c")["text"] == "whole"
    path.write_text('{"key": "a"}\nnot json\n{"key": "b"}\n')
    with pytest.raises(DatakitError, match="line 2 is not JSON"):
        Journal(path)


# ---- a local HF model ------------------------------------------------------------------------


def test_hf_backend_generates_chat_and_raw_completions_through_the_eval_runner(base: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from datakit.evals.runners import HFRunner

    reqs = [Request(messages=HELLO, max_tokens=12), Request(kind="completion", prompt="The sky is", max_tokens=6)]
    with Journal(tmp_path / "hf.jsonl") as j:
        out = generate_all(f"hf:{base}", reqs, journal=j)
    assert all(r.ok and r.attempts == 1 for r in out), out
    assert out[0].text == HFRunner(base).generate([HELLO], max_new_tokens=12, temperature=0.0, seed=0, batch_size=1)[0]
    with Journal(tmp_path / "hf.jsonl") as j:
        assert [r.text for r in generate_all(f"hf:{base}", reqs, journal=j)] == [r.text for r in out]


def test_mlx_backend_generates_chat_and_raw_completions_and_cuts_at_stop_strings(base: Path, tmp_path: Path) -> None:
    pytest.importorskip("mlx_lm")
    from datakit.evals.runners import MLXRunner

    reqs = [Request(messages=HELLO, max_tokens=12), Request(kind="completion", prompt="The sky is", max_tokens=6)]
    with Journal(tmp_path / "mlx.jsonl") as j:
        out = generate_all(f"mlx:{base}", reqs, journal=j)
    assert all(r.ok and r.attempts == 1 and r.text is not None for r in out), out
    assert out[0].text == MLXRunner(base).generate([HELLO], max_new_tokens=12, temperature=0.0, seed=0, batch_size=1)[0]
    assert len(out[1].text) > 1  # a stop string cuts the text where it first appears, as a server does
    stop = out[1].text[1]
    with Journal(tmp_path / "mlx2.jsonl") as j:
        (cut,) = generate_all(f"mlx:{base}", [Request(kind="completion", prompt="The sky is", max_tokens=6,
                                                      stop=[stop])], journal=j)
    assert cut.text == out[1].text[:out[1].text.index(stop)] and cut.finish_reason == "stop"
