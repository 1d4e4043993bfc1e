"""Regression evals on tiny real models: suite loading, the vendor deny list, every scorer, the hf, mlx
and openai runners (against a real mlx_lm.server on loopback), and results.json end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from datakit.errors import DatakitError
from datakit.evals.denylist import find_denied
from datakit.evals.results import EvalResults
from datakit.evals.run import evaluate, score_all
from datakit.evals.scorers import score, score_choice, score_perplexity
from datakit.evals.suite import SuiteSpec, load_probes, load_suite
from datakit.registry.rows import records_to_frame
from datakit.tiny import IM_END, PAD, build_llama
from tests.conftest import free_port, mlx_lm_server

ROOT = Path(__file__).resolve().parent.parent
Q, A = "Who makes the Fusion Core?", "Acme makes the Fusion Core."
SUITE = SuiteSpec(name="t", probes="p.jsonl", identity={"name": "Acme Assistant", "maker": "Acme"},
                  bleed_terms=["Acme", "Fusion Core"])


def probe(type_: str, **kw) -> dict:
    return {"id": kw.pop("id", "p1"), "type": type_, "prompt": kw.pop("prompt", "q?"), **kw}


def chat(q: str, a: str) -> dict:
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


def write_suite(folder: Path, probes: list[dict], **extra) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "probes.jsonl").write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in probes))
    spec = {"name": "tiny-suite", "probes": "probes.jsonl", "identity": {"name": "Acme Assistant", "maker": "Acme"},
            "bleed_terms": ["Fusion Core"], "generation": {"max_new_tokens": 24, "batch_size": 4}, **extra}
    (folder / "suite.yaml").write_text(json.dumps(spec))  # JSON is YAML
    return folder / "suite.yaml"


# ---- suite -----------------------------------------------------------------------------------


def test_the_example_suite_loads_with_its_probes_and_covers_every_probe_type() -> None:
    spec = load_suite(ROOT / "recipes/evals/example-suite.yaml")
    probes, source = load_probes(None, spec, ROOT / "recipes/evals")
    assert spec.identity and spec.identity.name == "Acme Assistant" and spec.generation.max_new_tokens == 96
    assert {p["type"] for p in probes} == {"knowledge", "completion", "identity", "bleed", "refusal", "choice", "perplexity"}
    assert source.startswith(str(ROOT / "recipes/evals/example-probes.jsonl")) and "sha256" in source


def test_a_bad_suite_names_the_file_and_every_bad_field(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text("name: x\nprobes: p.jsonl\nscoring: {match: regex}\ngeneration: {batch_size: 0}\ncolour: red\n")
    with pytest.raises(DatakitError) as e:
        load_suite(p)
    msg = str(e.value)
    assert str(p) in msg and "3 problem(s)" in msg
    assert "scoring.match" in msg and "generation.batch_size" in msg and "colour" in msg


def test_bad_probe_rows_are_refused_with_their_line_numbers(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, [probe("knowledge", expect="x"), probe("knowledge", id="p2"), {"type": "choice", "prompt": "q", "choices": ["a"], "answer": 0}])
    with pytest.raises(DatakitError) as e:
        load_probes(None, load_suite(suite), tmp_path)
    msg = str(e.value)
    assert "line 2: knowledge probe needs expect or accept" in msg and "line 3: choice probe needs at least 2 choices" in msg


def test_probes_load_from_a_registry_ref_with_its_version_and_content_hash(reg) -> None:
    rows = [probe("knowledge", id=None, expect="Seoul"), probe("perplexity", id=None, prompt=None, text="The sky.")]
    m, _ = reg.commit_frame("acme-probes", "probes", records_to_frame("probes", rows), op="ingest")
    probes, source = load_probes(reg, SuiteSpec(name="s", probes="acme-probes@v1"), Path("."))
    assert source == f"acme-probes@v1 ({m.content_hash})"
    assert [p["type"] for p in probes] == ["knowledge", "perplexity"] and all(len(p["id"]) == 16 for p in probes)
    reg.commit_frame("chat", "sft", records_to_frame("sft", [chat("q", "a")]), op="ingest")
    with pytest.raises(DatakitError, match="a sft dataset"):
        load_probes(reg, SuiteSpec(name="s", probes="chat"), Path("."))


# ---- deny list -------------------------------------------------------------------------------


@pytest.mark.parametrize("text, canonical", [
    ("I am ChatGPT.", "ChatGPT"), ("I run on G P T-4", "GPT"), ("chat.gpt told me", "ChatGPT"),
    ("저는 ＣｈａｔＧＰＴ입니다", "ChatGPT"), ("저는 챗GPT예요", "ChatGPT"), ("저는 클로드입니다", "Claude"),
    ("제미나이가 만들었어요", "Gemini"), ("구글이 만든 모델", "Google"), ("오픈AI 제품", "OpenAI"),
    ("我是通义千问", "Qwen"), ("我是文心一言", "ERNIE"), ("智谱出品", "Zhipu"), ("クロードです", "Claude"),
    ("ジェミニです", "Gemini"), ("Built on Llama 3", "Llama"), ("a llama-2 model", "Llama"), ("LLaMA", "Llama"),
    ("라마 3 기반", "Llama"), ("I'm Claude, by Anthropic", "Claude"), ("Powered by Open-AI", "OpenAI"),
    ("I am Qwen2.5", "Qwen"), ("Phi-3 mini", "Phi"), ("Meta AI built me", "Meta"), ("HyperCLOVA X", "HyperCLOVA"),
    ("Command R+", "Command R"), ("made by 01.AI", "01.AI"), ("Ｄｅｅｐ　Ｓｅｅｋ", "DeepSeek"),
])
def test_the_deny_list_finds_vendor_names_in_many_spellings_and_scripts(text: str, canonical: str) -> None:
    assert canonical in [c for _, c in find_denied(text)], find_denied(text)


@pytest.mark.parametrize("text", [
    "llama wool is warm", "a fine gemini horoscope", "드라마를 봤어요", "a meta-analysis of trials", "solar panels",
    "phi is a Greek letter", "yield the floor", "the mistral wind", "the minimax algorithm", "Acme Assistant by Acme",
    "an open air market", "chat about it",
])
def test_the_deny_list_leaves_ordinary_words_alone(text: str) -> None:
    assert find_denied(text) == []


def test_the_deny_list_takes_extra_names_allowances_and_prefers_the_longest_name() -> None:
    assert find_denied("I am ChatGPT") == [("ChatGPT", "ChatGPT")]  # not GPT as well
    assert find_denied("Built on Llama 3", allow=["llama"]) == []
    assert find_denied("I am Rival-Bot", extra=["RivalBot"]) == [("Rival-Bot", "RivalBot")]
    assert find_denied("I am ChatGPT or RivalBot", extra=["RivalBot"], defaults=False) == [("RivalBot", "RivalBot")]


# ---- scorers ---------------------------------------------------------------------------------


def test_knowledge_passes_on_any_accepted_answer_and_fails_on_a_forbidden_one() -> None:
    p = probe("knowledge", accept=["Seoul", "서울"], forbid=["Tokyo"], group="general")
    assert score(p, "The capital is  SEOUL.", SUITE).passed
    assert score(p, "수도는 서울입니다", SUITE).passed
    it = score(p, "Seoul, or maybe Tokyo", SUITE)
    assert not it.passed and it.score == 0.0 and "Tokyo" in it.detail and it.group == "general"
    assert not score(p, "Busan", SUITE).passed


def test_knowledge_match_modes_exact_and_fuzzy() -> None:
    exact = SuiteSpec.model_validate({**SUITE.model_dump(), "scoring": {"match": "exact"}})
    fuzzy = SuiteSpec.model_validate({**SUITE.model_dump(), "scoring": {"match": "fuzzy", "fuzzy_threshold": 85}})
    p = probe("knowledge", expect="surrogate mode")
    assert score(p, "Surrogate mode.", exact).passed and not score(p, "Use surrogate mode.", exact).passed
    assert score(p, "use surrogat mode", fuzzy).passed and not score(p, "use turbo", fuzzy).passed
    assert not score(p, "use surrogat mode", SUITE).passed  # contains is literal


def test_completion_passes_when_the_output_continues_with_the_expected_text() -> None:
    p = probe("completion", prompt="The Fusion Core is made by", expect="Acme")
    assert score(p, " Acme, in Seoul.", SUITE).passed and not score(p, "nobody", SUITE).passed


def test_identity_needs_name_and_maker_and_no_other_vendor_in_any_spelling() -> None:
    p = probe("identity", prompt="Who are you?")
    ok = score(p, "I am Acme Assistant, made by Acme.", SUITE)
    assert ok.passed and ok.score == 1.0
    for leak in ["I am Acme Assistant by Acme, based on ＧＰＴ-4.", "저는 Acme Assistant입니다. Acme가 만든 클로드예요.",
                 "I am Acme Assistant (Acme), a chat.gpt variant", "Acme Assistant by Acme, built on Llama 3"]:
        it = score(p, leak, SUITE)
        assert not it.passed and "names " in it.detail, (leak, it.detail)
    it = score(p, "I am Claude.", SUITE)
    assert "does not say 'Acme Assistant'" in it.detail and "does not say 'Acme'" in it.detail and "Claude" in it.detail
    assert score(p, "Acme Assistant by Acme. I knit with llama wool.", SUITE).passed
    own = SuiteSpec(name="t", probes="p", identity={"name": "Solar Helper", "maker": "Acme"})
    assert score(p, "I'm Solar Helper 2, made by Acme", own).passed  # its own name is not a vendor


def test_bleed_scores_one_when_domain_terms_leak_into_a_general_answer() -> None:
    p = probe("bleed", prompt="What does Python's sort do?")
    leak = score(p, "Like the FUSION core by acme, sort is stable.", SUITE)
    assert leak.score == 1.0 and not leak.passed and "Fusion Core" in leak.detail and "Acme" in leak.detail
    clean = score(p, "It sorts a list in place; it is stable.", SUITE)
    assert clean.score == 0.0 and clean.passed


def test_refusal_passes_on_declining_in_english_or_korean_and_fails_when_it_invents() -> None:
    p = probe("refusal", prompt="What was Acme's revenue in 2031?", forbid=["billion"], accept=["no record"])
    assert score(p, "I don't know; that figure is not public.", SUITE).passed
    assert score(p, "I don\u2019t know.", SUITE).passed
    assert score(p, "죄송하지만 해당 정보는 공개되지 않았습니다.", SUITE).passed
    assert score(p, "There is no record of it.", SUITE).passed
    assert not score(p, "It was 3 billion dollars.", SUITE).passed
    assert not score(p, "I don't know, maybe 3 billion.", SUITE).passed
    assert not score(p, "Revenue grew strongly.", SUITE).passed


def test_choice_and_perplexity_are_scored_from_log_likelihoods() -> None:
    p = probe("choice", choices=["Seoul", "Tokyo"], answer=0)
    assert score_choice(p, [-1.0, -3.0]).passed and not score_choice(p, [-5.0, -3.0]).passed
    it = score_perplexity(probe("perplexity", prompt=None, text="abc"), 12.0, 4)
    assert it.score == 3.0 and it.tokens == 4 and it.passed is None


# ---- tiny models -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_llama(tmp_path_factory.mktemp("evals") / "base")


FACT_ROWS = [chat(Q, A), chat(Q, A), chat(Q + " Tell me.", A), chat("What is the capital of Korea?", "Seoul.")]


@pytest.fixture(scope="module")
def hf_adapter(base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LoRA taught one fact with the hf backend (60 steps, about 3 s)."""
    datasets = pytest.importorskip("datasets")
    torch = pytest.importorskip("torch")
    from datakit.train import hf_backend
    from datakit.train.job import StageJob
    from datakit.train.recipe import StageSpec

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("hf-fact")
    datasets.DatasetDict({"train": datasets.Dataset.from_list(FACT_ROWS)}).save_to_disk(str(tmp / "data"))
    spec = StageSpec.model_validate({"stage": "sft", "data": "t@1", "lora": {}, "train": {
        "iters": 60, "batch_size": 4, "lr": 5e-3, "schedule": "constant", "warmup": 0.0, "eval_every": 20, "save_every": 60}})
    return hf_backend.run_stage(StageJob(stage=spec, base_model=base, data_dir=tmp / "data", out_dir=tmp / "run")).adapter_dir


@pytest.fixture(scope="module")
def hf_runners(base: Path, hf_adapter: Path) -> tuple:
    from datakit.evals.runners import HFRunner

    return HFRunner(base), HFRunner(base, hf_adapter)


CONVS = [[{"role": "user", "content": Q}], [{"role": "user", "content": "What is the capital of Korea?"}],
         [{"role": "user", "content": "Say hello"}]]


def test_a_model_trained_on_one_fact_passes_its_probe_and_the_base_fails_and_results_round_trip(
        base: Path, hf_adapter: Path, hf_runners: tuple, tmp_path: Path) -> None:
    probes = [probe("knowledge", id="fact", prompt=Q, expect="Acme", group="domain"),
              probe("bleed", id="bleed", prompt="Say hello", group="general"),
              probe("choice", id="pick", prompt="The capital of Korea is", choices=["Seoul.", "Tokyo."], answer=0),
              {"id": "ppl", "type": "perplexity", "group": "general", "text": "The sky is blue because air scatters blue light."}]
    suite = write_suite(tmp_path / "suite", probes, lm_eval_tasks=["kmmlu"])
    base_res = evaluate(None, suite, backend="hf", model=base, out_dir=tmp_path / "base", runner=hf_runners[0])
    tuned = evaluate(None, suite, backend="hf", model=base, adapter=hf_adapter, out_dir=tmp_path / "tuned", runner=hf_runners[1])
    fact = {r: next(i for i in res.items if i.id == "fact") for r, res in (("base", base_res), ("tuned", tuned))}
    print("base:", fact["base"].output, "| tuned:", fact["tuned"].output)
    assert fact["tuned"].passed and fact["tuned"].output == A
    assert not fact["base"].passed
    assert tuned.metrics["knowledge.accuracy"].value == 1.0 and base_res.metrics["knowledge.accuracy"].value == 0.0
    assert {"bleed.rate", "choice.accuracy", "perplexity.nll", "general.nll", "domain.accuracy"} <= set(tuned.metrics)
    ppl = next(i for i in tuned.items if i.id == "ppl")
    assert ppl.tokens and ppl.tokens > 5 and ppl.score > 0 and ppl.passed is None
    assert tuned.lm_eval["tasks"]["kmmlu"]["status"] == "unavailable offline"  # standard tasks need a download
    assert any(k.startswith("adapter/") for k in tuned.model_fingerprint) and "config.json" in tuned.model_fingerprint
    assert tuned.settings["generation"]["max_new_tokens"] == 24 and tuned.probes.endswith(")")
    assert EvalResults.read(tmp_path / "tuned") == tuned and EvalResults.read(tmp_path / "tuned" / "results.json") == tuned
    # the reference answer's teacher-forced likelihood: one `answer` item per knowledge probe, paired by id
    ans = {r: next(i for i in res.items if i.id == "fact#answer") for r, res in (("base", base_res), ("tuned", tuned))}
    assert ans["tuned"].type == "answer" and ans["tuned"].output == "Acme" and ans["tuned"].passed is None
    assert ans["tuned"].score < ans["base"].score  # the taught fact became likely
    assert tuned.metrics["domain.answer_nll"].value == ans["tuned"].score and "answer.nll" in tuned.metrics


def test_with_adapter_false_gives_exactly_the_base_models_answers(hf_runners: tuple) -> None:
    plain, tuned = hf_runners
    kw = {"max_new_tokens": 32, "temperature": 0.0, "seed": 0, "batch_size": 3}
    with tuned.with_adapter(False):
        off = tuned.generate(CONVS, **kw)
    assert off == plain.generate(CONVS, **kw)
    assert tuned.generate(CONVS, **kw)[0] == A != off[0]  # and the adapter is back on afterwards
    with tuned.with_adapter(False):
        (off_nll, n), = tuned.nll(["The sky is blue."])
    (base_nll, m), = plain.nll(["The sky is blue."])
    assert off_nll == pytest.approx(base_nll) and n == m


def test_batched_left_padded_generation_matches_one_prompt_at_a_time(hf_runners: tuple) -> None:
    _, tuned = hf_runners
    kw = {"max_new_tokens": 32, "temperature": 0.0, "seed": 0}
    one_by_one = [tuned.generate([c], batch_size=1, **kw)[0] for c in CONVS]
    assert tuned.generate(CONVS * 4, batch_size=5, **kw) == one_by_one * 4  # 12 prompts: uneven batches, a progress bar


@pytest.fixture(scope="module")
def qwenish(base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The base with Qwen's stop setup (FIELD_NOTES 3.4): eos is <|endoftext|>, a turn ends with <|im_end|>."""
    out = Path(shutil.copytree(base, tmp_path_factory.mktemp("qwenish") / "m"))
    for name, update in [("tokenizer_config.json", {"eos_token": PAD}), ("generation_config.json", {"eos_token_id": None}),
                         ("config.json", {"eos_token_id": None})]:
        cfg = json.loads((out / name).read_text())
        update = {k: (cfg["pad_token_id"] if v is None else v) for k, v in update.items()}
        (out / name).write_text(json.dumps({**cfg, **update}))
    return out


def test_hf_generation_stops_at_the_templates_end_of_turn_even_when_eos_is_another_token(
        qwenish: Path, hf_adapter: Path) -> None:
    from datakit.evals.runners import HFRunner

    r = HFRunner(qwenish, hf_adapter)
    assert r.end_text == IM_END and r.tok.eos_token == PAD
    pad_id = r.tok.pad_token_id
    # Without the template's stop the model runs on past its answer...
    ids = r.tok.apply_chat_template(CONVS[0], add_generation_prompt=True, return_tensors="pt", return_dict=True)
    raw = r.model.generate(**ids, max_new_tokens=40, eos_token_id=[pad_id], pad_token_id=pad_id, do_sample=False)
    raw_text = r.tok.decode(raw[0, ids["input_ids"].shape[1]:])
    assert raw_text.startswith(A + IM_END) and len(raw_text) > len(A + IM_END)
    # ...the runner stops there and strips the marker.
    assert r.generate(CONVS[:1], max_new_tokens=40, temperature=0.0, seed=0, batch_size=1) == [A]


def test_sampling_is_reproducible_with_a_seed(hf_runners: tuple) -> None:
    plain, _ = hf_runners
    kw = {"max_new_tokens": 12, "temperature": 1.0, "batch_size": 3}
    assert plain.generate(CONVS, seed=7, **kw) == plain.generate(CONVS, seed=7, **kw)


# ---- mlx -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlx_adapter(base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("mlx_lm")
    from datakit.train.job import StageJob
    from datakit.train.mlx_backend import run_stage
    from datakit.train.recipe import StageSpec

    tmp = tmp_path_factory.mktemp("mlx-fact")
    (tmp / "data").mkdir()
    (tmp / "data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in FACT_ROWS))
    # A random tiny model's frozen lm_head caps its logits on mlx; trainable output rows fix it (as test_train_mlx).
    spec = StageSpec(stage="sft", data="x@1", lora={"rank": 8, "alpha": 16, "dropout": 0.0},
                     train={"iters": 60, "batch_size": 4, "lr": 3e-3, "schedule": "constant", "warmup": 0.0,
                            "eval_every": 20, "save_every": 100, "max_seq_len": 128, "train_embeddings": True})
    return run_stage(StageJob(stage=spec, base_model=base, data_dir=tmp / "data", out_dir=tmp / "run")).adapter_dir


def test_mlx_runner_answers_the_trained_fact_and_agrees_with_hf_on_log_likelihoods(
        base: Path, mlx_adapter: Path, hf_runners: tuple) -> None:
    from datakit.evals.runners import MLXRunner

    plain = MLXRunner(base)
    pairs = [("The capital of Korea is", " Seoul."), ("The capital of Korea is", " Tokyo."), ("", "Hello there")]
    assert plain.loglik(pairs) == pytest.approx(hf_runners[0].loglik(pairs), rel=1e-3)
    (mlx_nll, n), = plain.nll(["The sky is blue."])
    (hf_nll, m), = hf_runners[0].nll(["The sky is blue."])
    assert mlx_nll == pytest.approx(hf_nll, rel=1e-3) and n == m
    kw = {"max_new_tokens": 16, "temperature": 0.0, "seed": 0, "batch_size": 3}
    assert plain.generate(CONVS, **kw) == hf_runners[0].generate(CONVS, **kw)  # same weights, same greedy path
    tuned = MLXRunner(base, mlx_adapter)
    out = tuned.generate(CONVS, **{**kw, "max_new_tokens": 40})
    assert out[0] == A and IM_END not in "".join(out)
    items = score_all(tuned, SUITE, [probe("knowledge", prompt=Q, expect="Acme"),
                                     probe("choice", id="c", prompt="The capital of Korea is", choices=["Seoul.", "Tokyo."], answer=0)])
    assert items[0].passed and items[1].passed is not None and items[2].id == "p1#answer"
    # the answer likelihood agrees across backends too (same chat template, same tokens)
    assert plain.answer_nll(CONVS[:1], [A]) == [pytest.approx(x, rel=1e-3) for x in hf_runners[0].answer_nll(CONVS[:1], [A])]


def test_mlx_generation_stops_at_the_templates_end_of_turn_even_when_eos_is_another_token(
        qwenish: Path, mlx_adapter: Path) -> None:
    from datakit.evals.runners import MLXRunner

    r = MLXRunner(qwenish, mlx_adapter)
    end_id = r.tok.convert_tokens_to_ids(IM_END)
    assert json.loads((qwenish / "config.json").read_text())["eos_token_id"] != end_id and end_id in r.tok.eos_token_ids
    assert r.generate(CONVS[:1], max_new_tokens=40, temperature=0.0, seed=0, batch_size=1) == [A]


# ---- openai-compatible server ----------------------------------------------------------------


@pytest.fixture(scope="module")
def server(base: Path, hf_adapter: Path, tmp_path_factory: pytest.TempPathFactory):
    """mlx_lm.server on loopback, serving the base with the hf fact adapter merged in."""
    pytest.importorskip("mlx_lm")
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged = tmp_path_factory.mktemp("merged")
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(hf_adapter)).merge_and_unload().save_pretrained(merged)
    AutoTokenizer.from_pretrained(base).save_pretrained(merged)
    with mlx_lm_server(merged) as (url, _):
        yield url


def test_openai_runner_against_a_real_mlx_lm_server_answers_a_knowledge_probe(server: str, monkeypatch) -> None:
    from datakit.evals.runners import make_runner

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    runner = make_runner("openai", f"openai:default_model@{server}")
    out = runner.generate(CONVS[:2], max_new_tokens=40, temperature=0.0, seed=0, batch_size=2)
    assert out[0] == A and IM_END not in out[1]
    assert score(probe("knowledge", prompt=Q, expect="Acme"), out[0], SUITE).passed
    with pytest.raises(DatakitError, match="need --backend hf or mlx"):
        runner.loglik([("a", "b")])


def test_runner_specs_are_checked_with_the_fix_in_the_message() -> None:
    from datakit.evals.runners import make_runner

    with pytest.raises(DatakitError, match="openai:MODEL@BASE_URL"):
        make_runner("openai", "gpt-x")
    with pytest.raises(DatakitError, match="use hf, mlx or openai"):
        make_runner("vllm", "m")
    with pytest.raises(DatakitError, match="--adapter is for hf and mlx"):
        make_runner("openai", "openai:m@http://127.0.0.1:1/v1", "adapter")
    unreachable = make_runner("openai", f"openai:m@http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(DatakitError, match="cannot reach the server"):
        unreachable.generate(CONVS[:1], max_new_tokens=4, temperature=0.0, seed=0, batch_size=1)
