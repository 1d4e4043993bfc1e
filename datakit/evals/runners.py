"""Model runners for evals: one interface over transformers+peft, mlx-lm and an OpenAI-compatible server.

    runner = make_runner("hf", "models/base", "runs/acme/1/adapter")
    runner.generate([[{"role": "user", "content": "Who makes the Fusion Core?"}]], max_new_tokens=64,
                    temperature=0.0, seed=0, batch_size=8)
Generation renders the model's chat template and stops on the model's own end-of-turn token (the
text its template puts after an assistant turn; FIELD_NOTES 3.4), which is stripped from the answer.
`loglik` and `nll` score raw text, no template.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Protocol

from datakit.errors import DatakitError
from datakit.secrets import scrub
from datakit.train.stopcheck import end_of_turn

Conversation = list[dict[str, Any]]
PROGRESS_MIN = 8  # a bar only when there are more than a few prompts


class Runner(Protocol):
    backend: str

    def generate(self, conversations: list[Conversation], *, max_new_tokens: int, temperature: float, seed: int,
                 batch_size: int) -> list[str]: ...

    def loglik(self, pairs: list[tuple[str, str]]) -> list[float]: ...

    def nll(self, texts: list[str]) -> list[tuple[float, int]]: ...

    def answer_nll(self, conversations: list[Conversation], answers: list[str]) -> list[tuple[float, int]]: ...


@contextmanager
def progress(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """Progress on stderr for more than PROGRESS_MIN items (a bar, or plain lines when not a terminal); yields
    `advance(n)`."""
    if total <= PROGRESS_MIN:
        yield lambda n: None
        return
    from datakit.progress import progress_bar

    with progress_bar(label, total, unit="items") as update:
        done = [0]

        def advance(n: int) -> None:
            done[0] += n
            update(done[0])

        yield advance


def _cut(text: str, marker: str | None) -> str:
    """The answer before the end-of-turn text, in case a backend returned it or anything after it."""
    return (text.split(marker, 1)[0] if marker else text).strip()


def _batches(xs: list, size: int) -> Iterator[list]:
    for i in range(0, len(xs), size):
        yield xs[i:i + size]


def _loglik_ids(encode: Callable[[str], list[int]], pairs: list[tuple[str, str]]) -> list[tuple[list[int], int]]:
    """Context and continuation encoded apart and joined, with where the continuation starts.
    An empty context scores the continuation from its second token (nothing predicts the first)."""
    out = []
    for ctx, cont in pairs:
        c, x = encode(ctx) if ctx else [], encode(cont)
        if not x:
            raise DatakitError(f"loglik: continuation {cont!r} encodes to no tokens")
        out.append((c + x, max(len(c), 1)))
    return out


def _answer_pairs(tok: Any, conversations: list[Conversation], answers: list[str]) -> list[tuple[str, str]]:
    """(the chat template up to the assistant's turn, the answer): what the model would have to say."""
    return [(tok.apply_chat_template(c, add_generation_prompt=True, tokenize=False), a)
            for c, a in zip(conversations, answers, strict=True)]


class HFRunner:
    backend = "hf"

    def __init__(self, model_dir: str | Path, adapter: str | Path | None = None) -> None:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        transformers.utils.logging.disable_progress_bar()  # "Loading weights" per load; ours shows the probes
        self.torch = torch
        self.tok = AutoTokenizer.from_pretrained(str(model_dir))
        self.tok.padding_side = "left"
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        model = AutoModelForCausalLM.from_pretrained(str(model_dir))
        if adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter))
        self.model, self.has_adapter = model.eval(), adapter is not None
        self.end_text = end_of_turn(self.tok)
        eos = model.generation_config.eos_token_id
        stops = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.end_text and (tid := self.tok.convert_tokens_to_ids(self.end_text)) not in (None, self.tok.unk_token_id):
            stops.add(tid)
        if self.tok.eos_token_id is not None:
            stops.add(self.tok.eos_token_id)
        self.stop_ids = sorted(stops)

    def with_adapter(self, enabled: bool) -> Any:
        """`with runner.with_adapter(False): ...` runs the base model (peft's disable_adapter)."""
        if enabled or not self.has_adapter:
            return nullcontext()
        return self.model.disable_adapter()

    def generate(self, conversations: list[Conversation], *, max_new_tokens: int = 96, temperature: float = 0.0,
                 seed: int = 0, batch_size: int = 8) -> list[str]:
        torch, out = self.torch, []
        torch.manual_seed(seed)
        sample = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
        with progress(len(conversations), "generating") as advance:
            for batch in _batches(conversations, batch_size):
                texts = [self.tok.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in batch]
                enc = self.tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
                with torch.no_grad():
                    ids = self.model.generate(**enc, max_new_tokens=max_new_tokens, eos_token_id=self.stop_ids,
                                              pad_token_id=self.tok.pad_token_id, **sample)
                for row in ids[:, enc["input_ids"].shape[1]:].tolist():
                    cut = next((i for i, t in enumerate(row) if t in self.stop_ids), len(row))
                    out.append(_cut(self.tok.decode(row[:cut], skip_special_tokens=True), self.end_text))
                advance(len(batch))
        return out

    def _logprobs(self, seqs: list[tuple[list[int], int]], batch_size: int = 8) -> list[tuple[float, int]]:
        """Sum of log p(token) over each sequence from its start index, and how many tokens that is."""
        torch, out = self.torch, []
        pad = self.tok.pad_token_id
        for batch in _batches(seqs, batch_size):
            width = max(len(s) for s, _ in batch)
            ids = torch.tensor([s + [pad] * (width - len(s)) for s, _ in batch])
            mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s, _ in batch])
            with torch.no_grad():
                logp = torch.log_softmax(self.model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
            for b, (s, start) in enumerate(batch):
                targets = torch.tensor(s[start:])
                picked = logp[b, start - 1:len(s) - 1].gather(-1, targets[:, None])
                out.append((float(picked.sum()), len(s) - start))
        return out

    def _encode(self, text: str, special: bool = False) -> list[int]:
        return self.tok(text, add_special_tokens=special)["input_ids"]

    def loglik(self, pairs: list[tuple[str, str]]) -> list[float]:
        return [lp for lp, _ in self._logprobs(_loglik_ids(self._encode, pairs))]

    def nll(self, texts: list[str]) -> list[tuple[float, int]]:
        seqs = [(self._encode(t, special=True), 1) for t in texts]
        return [(-lp, n) for lp, n in self._logprobs(seqs)]

    def answer_nll(self, conversations: list[Conversation], answers: list[str]) -> list[tuple[float, int]]:
        """Teacher-forced NLL (sum, tokens) of each answer after its chat-templated conversation."""
        pairs = _answer_pairs(self.tok, conversations, answers)
        return [(-lp, n) for lp, n in self._logprobs(_loglik_ids(self._encode, pairs))]


class MLXRunner:
    backend = "mlx"

    def __init__(self, model_dir: str | Path, adapter: str | Path | None = None) -> None:
        from datakit.train.mlx_backend import _import_mlx, load_model

        _import_mlx()
        import mlx_lm

        if adapter is None:
            self.model, self.tok = mlx_lm.load(str(model_dir))
        else:
            self.model, self.tok = load_model(Path(model_dir), Path(adapter))  # plus train_embeddings rows
        self.model.eval()
        self.end_text = end_of_turn(self.tok)
        if self.end_text and self.end_text in self.tok.get_vocab():
            self.tok.add_eos_token(self.end_text)  # stop where the template ends a turn

    def generate(self, conversations: list[Conversation], *, max_new_tokens: int = 96, temperature: float = 0.0,
                 seed: int = 0, batch_size: int = 8) -> list[str]:
        import mlx.core as mx
        from mlx_lm import batch_generate
        from mlx_lm.sample_utils import make_sampler

        mx.random.seed(seed)
        out: list[str] = []
        with progress(len(conversations), "generating") as advance:
            for batch in _batches(conversations, batch_size):
                prompts = [self.tok.encode(self.tok.apply_chat_template(c, add_generation_prompt=True, tokenize=False),
                                           add_special_tokens=False) for c in batch]
                resp = batch_generate(self.model, self.tok, prompts, max_tokens=max_new_tokens,
                                      sampler=make_sampler(temp=temperature), prefill_batch_size=batch_size,
                                      completion_batch_size=batch_size)
                out += [_cut(t, self.end_text) for t in resp.texts]
                advance(len(batch))
        return out

    def _logprobs(self, seqs: list[tuple[list[int], int]], batch_size: int = 8) -> list[tuple[float, int]]:
        import mlx.core as mx

        out = []
        for batch in _batches(seqs, batch_size):
            width = max(len(s) for s, _ in batch)
            # Right padding: a causal model's earlier positions never see the pad tokens.
            ids = mx.array([s + [0] * (width - len(s)) for s, _ in batch])
            logits = self.model(ids).astype(mx.float32)
            logp = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
            for b, (s, start) in enumerate(batch):
                targets = mx.array(s[start:])
                picked = mx.take_along_axis(logp[b, start - 1:len(s) - 1], targets[:, None], axis=-1)
                out.append((picked.sum().item(), len(s) - start))
        return out

    def _encode(self, text: str, special: bool = False) -> list[int]:
        return self.tok.encode(text, add_special_tokens=special)

    def loglik(self, pairs: list[tuple[str, str]]) -> list[float]:
        return [lp for lp, _ in self._logprobs(_loglik_ids(self._encode, pairs))]

    def nll(self, texts: list[str]) -> list[tuple[float, int]]:
        return [(-lp, n) for lp, n in self._logprobs([(self._encode(t, special=True), 1) for t in texts])]

    def answer_nll(self, conversations: list[Conversation], answers: list[str]) -> list[tuple[float, int]]:
        pairs = _answer_pairs(self.tok, conversations, answers)
        return [(-lp, n) for lp, n in self._logprobs(_loglik_ids(self._encode, pairs))]


class OpenAIRunner:
    """`openai:MODEL@BASE_URL` (vLLM, SGLang, mlx_lm.server, ...); the server applies the template and stops.
    The key comes from OPENAI_API_KEY, else "not-needed" for local servers; it is never printed."""

    backend = "openai"

    def __init__(self, spec: str) -> None:
        body = spec.removeprefix("openai:")
        model, at, base_url = body.rpartition("@")
        if not at or not model or not base_url.startswith(("http://", "https://")):
            raise DatakitError(f"model spec {spec!r}: write openai:MODEL@BASE_URL, "
                               "e.g. openai:default_model@http://127.0.0.1:8080/v1")
        try:
            import openai
        except ImportError:
            raise DatakitError("the openai backend needs the openai client: pip install 'datakit[eval]'") from None
        import os

        self.model, self.base_url = model, base_url
        self.client = openai.OpenAI(base_url=base_url, api_key=os.environ.get("OPENAI_API_KEY") or "not-needed",
                                    timeout=120.0, max_retries=2)

    def _one(self, conv: Conversation, max_new_tokens: int, temperature: float, seed: int) -> str:
        r = self.client.chat.completions.create(model=self.model, messages=conv, max_tokens=max_new_tokens,  # type: ignore[arg-type]
                                                temperature=temperature, seed=seed)
        return (r.choices[0].message.content or "").strip()

    def generate(self, conversations: list[Conversation], *, max_new_tokens: int = 96, temperature: float = 0.0,
                 seed: int = 0, batch_size: int = 8) -> list[str]:
        from concurrent.futures import ThreadPoolExecutor

        import openai

        out: list[str] = []
        with progress(len(conversations), "generating") as advance, ThreadPoolExecutor(batch_size) as pool:
            try:
                for batch in _batches(conversations, batch_size):
                    out += list(pool.map(lambda c: self._one(c, max_new_tokens, temperature, seed), batch))
                    advance(len(batch))
            except openai.APITimeoutError:
                raise DatakitError(f"the server at {self.base_url} did not answer within 120 s (after retries); "
                                   "check its load, then rerun") from None
            except openai.APIConnectionError:
                raise DatakitError(f"cannot reach the server at {self.base_url}; is it running?") from None
            except openai.APIStatusError as e:
                # A score over the items that happened to succeed would be a different suite: stop, say why.
                said = scrub(str(e.message))[:300]
                raise DatakitError(f"the server at {self.base_url} answered {e.status_code} after retries ({said}); "
                                   f"the eval stopped after {len(out)} of {len(conversations)} generations so no "
                                   "score covers a partial suite: fix the server, then rerun") from None
        return out

    def loglik(self, pairs: list[tuple[str, str]]) -> list[float]:
        raise DatakitError("choice probes need log-likelihoods: log-likelihood probes need --backend hf or mlx")

    def nll(self, texts: list[str]) -> list[tuple[float, int]]:
        raise DatakitError("perplexity probes need log-likelihoods: log-likelihood probes need --backend hf or mlx")

    def answer_nll(self, conversations: list[Conversation], answers: list[str]) -> list[tuple[float, int]]:
        raise DatakitError("answer likelihoods need the model's weights: --backend hf or mlx")


def make_runner(backend: str, model: str | Path, adapter: str | Path | None = None) -> Runner:
    """hf | mlx: a local model folder (and optional LoRA adapter); openai: `openai:MODEL@BASE_URL`."""
    if backend in ("hf", "mlx"):  # nothing is downloaded: a missing folder is a typo, not a hub id to fetch
        for what, path in (("--model", model), ("--adapter", adapter)):
            if path is not None and not Path(path).is_dir():
                raise DatakitError(f"{what} {path}: no such folder; give a local {'model' if what == '--model' else 'adapter'} "
                                   f"folder ({'config.json' if what == '--model' else 'adapter files'} inside; "
                                   "datakit never downloads a model)")
    if backend == "hf":
        return HFRunner(model, adapter)
    if backend == "mlx":
        return MLXRunner(model, adapter)
    if backend == "openai":
        if adapter is not None:
            raise DatakitError("--adapter is for hf and mlx; an openai server serves its own adapters")
        return OpenAIRunner(str(model))
    raise DatakitError(f"unknown backend {backend!r}; use hf, mlx or openai")
