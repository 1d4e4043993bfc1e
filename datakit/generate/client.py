"""Many generation requests, journaled: an OpenAI-compatible server (async, bounded concurrency, per-request
timeout, retries with backoff) or a local HF/MLX model (sequential, through the eval runners).

Batched generation once hung without an error (FIELD_NOTES 4), so every request has a timeout, every finished
result is journaled at once, and a rerun with the same journal re-sends nothing that finished.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from datakit.errors import DatakitError
from datakit.evals.runners import progress
from datakit.generate.journal import Journal
from datakit.generate.spec import GeneratorSpec, parse_spec
from datakit.secrets import scrub

BACKOFF_CAP_S = 30.0
RETRY_AFTER_CAP_S = 120.0  # the longest Retry-After honoured


class Request(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: Literal["chat", "completion"] = "chat"
    messages: list[dict[str, Any]] | None = None
    prompt: str | None = None
    max_tokens: int = 256
    temperature: float = 0.0
    seed: int = 0
    stop: list[str] | None = None
    extra: dict[str, Any] = {}  # sent as-is in the request body (top_p, ...)

    @model_validator(mode="after")
    def _has_input(self) -> Request:
        if self.kind == "chat" and not self.messages:
            raise DatakitError("a chat request needs messages=[{'role': 'user', 'content': ...}]")
        if self.kind == "completion" and self.prompt is None:
            raise DatakitError("a completion request needs prompt='...' (or use kind='chat' with messages)")
        return self

    def key(self, spec: GeneratorSpec | str) -> str:
        """sha256 of canonical JSON of the request and the generator's backend and model (never the API key).

        The server's URL is left out on purpose: a local server restarted on another port after a crash
        must still find its journal; the model name says what answered."""
        spec = parse_spec(spec) if isinstance(spec, str) else spec
        body = {"generator": f"{spec.backend}:{spec.model}", "request": self.model_dump(mode="json")}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()


class Result(BaseModel):
    key: str
    text: str | None = None
    finish_reason: str | None = None
    error: str | None = None  # set when every attempt failed; a rerun tries again
    attempts: int = 0
    seconds: float = 0.0
    from_journal: bool = False  # found in the journal, not generated in this call (never written to it)
    secret_masked: bool = False  # the server echoed a credential of this environment into the text; masked

    @model_validator(mode="after")
    def _mask_secrets(self) -> Result:
        """A completion that echoes a key (a server quoting its request, a prompt-injected model) is masked
        before it reaches a row, a journal or a report."""
        if self.text and (clean := scrub(self.text)) != self.text:
            self.text, self.secret_masked = clean, True
        return self

    @property
    def ok(self) -> bool:
        return self.error is None


def generate_all(spec: GeneratorSpec | str, requests: Sequence[Request], *, journal: Journal, concurrency: int = 4,
                 timeout_s: float = 60, retries: int = 4, backoff_s: float = 1.0,
                 on_result: Callable[[Result], None] | None = None) -> list[Result]:
    """One Result per request, in order. Requests already journaled are not sent again; failures are
    recorded (Result.error), not raised. `retries` is how many times a retryable failure is retried."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    if concurrency < 1 or retries < 0 or timeout_s <= 0:
        raise DatakitError(f"generate_all: need concurrency >= 1, retries >= 0 and timeout_s > 0; got "
                           f"concurrency={concurrency}, retries={retries}, timeout_s={timeout_s}")
    keys = [r.key(spec) for r in requests]
    results: dict[str, Result] = {}
    todo: dict[str, Request] = {}  # identical requests are sent once
    for key, req in zip(keys, requests):
        if (row := journal.get(key)) is not None:
            results[key] = Result.model_validate({**row, "from_journal": True})
        else:
            todo[key] = req
    with progress(len(todo), f"generating ({spec.backend}:{spec.model})") as advance:
        def finish(res: Result) -> None:
            journal.append(res.model_dump(exclude={"from_journal"}))
            results[res.key] = res
            advance(1)
            if on_result is not None:
                on_result(res)

        if not todo:
            pass  # everything came from the journal: no client, no server needed
        elif spec.backend == "openai":
            asyncio.run(_openai_all(spec, todo, finish, concurrency=concurrency, timeout_s=timeout_s,
                                    retries=retries, backoff_s=backoff_s))
        else:
            _local_all(spec, todo, finish)
    return [results[k] for k in keys]


# ---- openai-compatible servers ------------------------------------------------------------------


def _api_key() -> str:
    return os.environ.get("OPENAI_API_KEY") or "not-needed"  # local servers take any key


def _retryable(exc: BaseException) -> bool:
    import openai

    if isinstance(exc, (asyncio.TimeoutError, openai.APIConnectionError, openai.RateLimitError)):  # timeouts too
        return True
    return isinstance(exc, openai.APIStatusError) and exc.status_code >= 500


def _describe(exc: BaseException, timeout_s: float) -> str:
    """The error for the journal, with the API key scrubbed in case a server echoed it."""
    if isinstance(exc, asyncio.TimeoutError):
        text = f"timed out after {timeout_s:g}s"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return scrub(text)[:500]  # scrubbed before it is cut: a key cut in half would not be found


async def _call(client: Any, spec: GeneratorSpec, req: Request) -> tuple[str, str | None]:
    common = {"model": spec.model, "max_tokens": req.max_tokens, "temperature": req.temperature,
              "extra_body": req.extra or None}
    if req.temperature > 0:  # greedy needs no seed, and mlx_lm.server batches only requests without one
        common["seed"] = req.seed
    if req.stop:
        common["stop"] = req.stop
    if req.kind == "chat":
        r = await client.chat.completions.create(messages=req.messages, **common)
        if not r.choices:
            raise ValueError("the server answered with no choices")
        return r.choices[0].message.content or "", r.choices[0].finish_reason
    r = await client.completions.create(prompt=req.prompt, **common)
    if not r.choices:
        raise ValueError("the server answered with no choices")
    return r.choices[0].text or "", r.choices[0].finish_reason


class _Breaker:
    """Stops a run whose server cannot be reached at all: when every request of the first wave failed to connect
    and none has succeeded, the rest are not sent and the run ends with one message instead of retrying each
    request to the end (8 requests to a down server took 43 s)."""

    def __init__(self, wave: int) -> None:
        self.wave, self.refused, self.succeeded, self.open = wave, 0, 0, False
        self.first_error = ""

    def failed_to_connect(self, error: str) -> None:
        self.refused += 1
        self.first_error = self.first_error or error
        if self.succeeded == 0 and self.refused >= self.wave:
            self.open = True


def retry_after_s(exc: BaseException) -> float | None:
    """The server's Retry-After (seconds, or an HTTP date), when it sent one with a 429 or 503."""
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


async def _one(client: Any, spec: GeneratorSpec, key: str, req: Request, *, timeout_s: float, retries: int,
               backoff_s: float, breaker: _Breaker) -> Result:
    import openai

    start, attempt = time.monotonic(), 0
    while True:
        attempt += 1
        if breaker.open:
            return Result(key=key, error=f"not sent: server unreachable ({breaker.first_error})", attempts=attempt - 1,
                          seconds=time.monotonic() - start)
        try:
            text, finish = await asyncio.wait_for(_call(client, spec, req), timeout_s)
            breaker.succeeded += 1
            return Result(key=key, text=text, finish_reason=finish, attempts=attempt, seconds=time.monotonic() - start)
        except Exception as exc:  # noqa: BLE001 - any failure becomes a recorded Result, never a crash
            if attempt == 1 and isinstance(exc, openai.APIConnectionError) and not isinstance(exc, openai.APITimeoutError):
                breaker.failed_to_connect(_describe(exc, timeout_s))
            if not _retryable(exc) or attempt > retries or breaker.open:
                return Result(key=key, error=_describe(exc, timeout_s), attempts=attempt,
                              seconds=time.monotonic() - start)
            # Exponential backoff with jitter, so many workers hitting a 429 do not retry in lockstep; a server's
            # Retry-After is honoured when it asks for longer (capped, so a bad header cannot stall the run).
            wait = min(BACKOFF_CAP_S, backoff_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)
            await asyncio.sleep(max(wait, min(RETRY_AFTER_CAP_S, retry_after_s(exc) or 0.0)))


async def _openai_all(spec: GeneratorSpec, todo: dict[str, Request], finish: Callable[[Result], None], *,
                      concurrency: int, timeout_s: float, retries: int, backoff_s: float) -> None:
    try:
        import openai
    except ImportError:
        raise DatakitError("the openai generator needs the openai client: pip install openai") from None
    # Retries and timeouts are ours (counted in Result.attempts), so the client's own are off.
    client = openai.AsyncOpenAI(base_url=spec.base_url, api_key=_api_key(), max_retries=0, timeout=timeout_s + 5)
    gate = asyncio.Semaphore(concurrency)
    breaker = _Breaker(wave=min(concurrency, len(todo)))

    async def run(key: str, req: Request) -> None:
        async with gate:
            res = await _one(client, spec, key, req, timeout_s=timeout_s, retries=retries, backoff_s=backoff_s,
                             breaker=breaker)
        if not breaker.open:
            finish(res)  # requests a dead server never saw are not journaled: a rerun sends them

    try:
        await asyncio.gather(*(run(k, r) for k, r in todo.items()))
    finally:
        await client.close()
    if breaker.open:
        raise DatakitError(f"cannot reach the generation server at {spec.base_url}: all {breaker.wave} requests of "
                           f"the first wave failed to connect ({breaker.first_error}); start the server (or fix "
                           "base_url) and rerun: nothing was lost, journaled results are kept")


# ---- local models, one request at a time -------------------------------------------------------


def _cut_at_stop(text: str, stop: list[str] | None) -> tuple[str, str | None]:
    """Local runners know no stop strings: cut at the first one, as a server would."""
    hits = [i for s in stop or [] if (i := text.find(s)) >= 0]
    return (text[:min(hits)], "stop") if hits else (text, None)


def _complete_hf(runner: Any, req: Request) -> str:
    """Raw-prompt continuation with an HFRunner's model: no chat template."""
    torch = runner.torch
    torch.manual_seed(req.seed)
    sample = {"do_sample": True, "temperature": req.temperature} if req.temperature > 0 else {"do_sample": False}
    enc = runner.tok(req.prompt, return_tensors="pt", add_special_tokens=True)
    with torch.no_grad():
        ids = runner.model.generate(**enc, max_new_tokens=req.max_tokens, eos_token_id=runner.stop_ids,
                                    pad_token_id=runner.tok.pad_token_id, **sample)
    row = ids[0, enc["input_ids"].shape[1]:].tolist()
    cut = next((i for i, t in enumerate(row) if t in runner.stop_ids), len(row))
    return runner.tok.decode(row[:cut], skip_special_tokens=True)


def _complete_mlx(runner: Any, req: Request) -> str:
    """Raw-prompt continuation with an MLXRunner's model: no chat template."""
    import mlx.core as mx
    import mlx_lm
    from mlx_lm.sample_utils import make_sampler

    mx.random.seed(req.seed)
    return mlx_lm.generate(runner.model, runner.tok, runner.tok.encode(req.prompt), max_tokens=req.max_tokens,
                           sampler=make_sampler(temp=req.temperature), verbose=False)


_RUNNERS: dict[str, Any] = {}  # one loaded local model per spec: magpie asks twice (instructions, then answers)


def _finish_reason(runner: Any, text: str, req: Request) -> tuple[str, str]:
    """Cut at stop strings as a server would; else 'length' when the output filled max_tokens, 'stop' if not."""
    text, reason = _cut_at_stop(text, req.stop)
    if reason is None:
        reason = "length" if len(runner.tok.encode(text, add_special_tokens=False)) >= req.max_tokens else "stop"
    return text, reason


def _local_all(spec: GeneratorSpec, todo: dict[str, Request], finish: Callable[[Result], None]) -> None:
    """Sequential on purpose (FIELD_NOTES 4: batched generation hung); each result is journaled as it lands."""
    if not todo:
        return
    from datakit.evals.runners import HFRunner, MLXRunner

    if str(spec) not in _RUNNERS:
        _RUNNERS.clear()  # keep one model in memory
        _RUNNERS[str(spec)] = HFRunner(spec.model) if spec.backend == "hf" else MLXRunner(spec.model)
    runner = _RUNNERS[str(spec)]
    complete = _complete_hf if spec.backend == "hf" else _complete_mlx
    for key, req in todo.items():
        start = time.monotonic()
        try:
            if req.kind == "chat":
                (text,) = runner.generate([req.messages], max_new_tokens=req.max_tokens, temperature=req.temperature,
                                          seed=req.seed, batch_size=1)
            else:
                text = complete(runner, req)
            text, reason = _finish_reason(runner, text, req)
            finish(Result(key=key, text=text, finish_reason=reason, attempts=1, seconds=time.monotonic() - start))
        except Exception as exc:  # noqa: BLE001 - recorded, so one bad request does not lose the run
            finish(Result(key=key, error=scrub(f"{type(exc).__name__}: {exc}")[:500], attempts=1,
                          seconds=time.monotonic() - start))
