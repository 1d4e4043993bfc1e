"""Magpie: pre-query prefixes from real-shaped chat templates (Llama 3, Qwen, Gemma, Mistral, Phi-3), the gates on
literal strings, and whole runs through a real mlx_lm server (the CLI), a local HF model and a tiny reward model."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from datakit.build.magpie import (
    MagpieParams,
    instruction_reasons,
    repetition,
    resolve_pre_query,
    reward_scores,
    run_magpie,
    text_reason,
)
from datakit.errors import DatakitError
from datakit.generate.spec import parse_spec
from datakit.generate.templates import (
    FAMILIES,
    builtin_template,
    derive_pre_query,
    load_chat_template,
    render,
    tokenizer_adds_bos,
)
from datakit.registry.rows import frame_to_records
from datakit.registry.store import Registry
from datakit.tiny import CHATML_TEMPLATE, PAD, build_llama
from tests.conftest import mlx_lm_server

TEMPLATES = Path(__file__).resolve().parent / "fixtures" / "chat_templates"
SYSTEM = "You are terse."
KOREAN = "서울은 어떤 도시인가요? 역사를 알려 주세요."
QWEN_DEFAULT = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"

# fixture, built-in family, bos, eos, prefix, prefix with SYSTEM (or the template's own error), end-of-user-turn stop
FAMILY_CASES = [
    ("llama3.jinja", "llama3", "<|begin_of_text|>", "<|eot_id|>",
     "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n",
     "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
     "<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>"),
    ("chatml_qwen.jinja", "chatml", None, "<|im_end|>", QWEN_DEFAULT + "<|im_start|>user\n",
     "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\n", "<|im_end|>"),
    ("gemma.jinja", "gemma", "<bos>", "<eos>", "<bos><start_of_turn>user\n", "System role not supported",
     "<end_of_turn>"),
    ("mistral.jinja", "mistral", "<s>", "</s>", "<s>[INST] ", "<s>[INST] You are terse.\n\n", "[/INST]"),
    ("phi3.jinja", "phi3", "<s>", "<|endoftext|>", "<|user|>\n", "<|system|>\nYou are terse.<|end|>\n<|user|>\n",
     "<|end|>"),
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama with the ChatML template (datakit.tiny): its text is gibberish, its plumbing real."""
    return build_llama(tmp_path_factory.mktemp("magpie") / "tiny")


# ---- the pre-query prefix ----------------------------------------------------------------------


@pytest.mark.parametrize("fixture,family,bos,eos,prefix,with_system,stop", FAMILY_CASES)
def test_each_family_template_yields_its_exact_prefix_and_stop_with_and_without_a_system_prompt(
        fixture: str, family: str, bos: str | None, eos: str, prefix: str, with_system: str, stop: str) -> None:
    text = (TEMPLATES / fixture).read_text()
    pq = derive_pre_query(text, bos_token=bos, eos_token=eos)
    assert (pq.prefix, pq.stop) == (prefix, stop)
    assert pq.bos == (bos if bos and prefix.startswith(bos) else None)
    assert stop in pq.markers
    if with_system.startswith(("<", "<|")):
        assert derive_pre_query(text, bos_token=bos, eos_token=eos, system=SYSTEM).prefix == with_system
    else:  # the template refuses a system turn: say so, and the fix
        with pytest.raises(DatakitError, match=rf"{with_system}.*drop --system"):
            derive_pre_query(text, bos_token=bos, eos_token=eos, system=SYSTEM)
    # The built-in family renders the same, except that plain ChatML has no Qwen default system prompt.
    builtin = builtin_template(family)
    same = derive_pre_query(builtin.text, bos_token=bos, eos_token=eos)
    assert (same.prefix, same.stop) == ((prefix.removeprefix(QWEN_DEFAULT)), stop)


def test_templates_render_exactly_as_transformers_apply_chat_template_does(tiny: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny)
    convo = [{"role": "user", "content": "Hi  "}, {"role": "assistant", "content": "Hello"},
             {"role": "user", "content": "Bye"}]
    # Block tags on their own indented lines: only trim_blocks and lstrip_blocks, as transformers sets them, keep
    # their whitespace out of the render.
    layout = ("{% for m in messages %}\n  {% if m.role == 'user' %}\n[U]{{ m.content }}\n  {% else %}\n"
              "[A]{{ m.content }}\n  {% endif %}\n{% endfor %}")
    for fixture, _, bos, eos, *_ in FAMILY_CASES + [(layout, None, None, None)]:
        text = (TEMPLATES / fixture).read_text() if fixture.endswith(".jinja") else fixture
        tokens = {k: v for k, v in {"bos_token": bos, "eos_token": eos}.items() if v}
        for gen in (False, True):
            theirs = tok.apply_chat_template(convo, chat_template=text, tokenize=False, add_generation_prompt=gen,
                                             **tokens)
            assert render(text, convo, add_generation_prompt=gen, **tokens) == theirs, fixture
    assert render("{{ strftime_now('%Y') }} {{ {'a': 'é'} | tojson }}", []) == f'{date.today().year} {{"a": "é"}}'


def test_a_template_that_drops_the_user_message_or_needs_a_system_turn_errors_with_the_fix() -> None:
    with pytest.raises(DatakitError, match=r"does not write the user's message.*--pre-query"):
        derive_pre_query("{% for m in messages %}<|{{ m.role }}|>{% endfor %}", bos_token=None, eos_token=None)
    needs_system = ("{% if messages[0].role != 'system' %}{{ raise_exception('a system message is required') }}"
                    "{% endif %}" + CHATML_TEMPLATE)
    with pytest.raises(DatakitError, match=r"a system message is required\); if it needs a system turn, pass --system"):
        derive_pre_query(needs_system, bos_token=None, eos_token=None)
    assert derive_pre_query(needs_system, bos_token=None, eos_token=None, system=SYSTEM).prefix == (
        "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\n")
    drops_system = "{% for m in messages if m.role != 'system' %}[{{ m.role }}]{{ m.content }}{% endfor %}"
    with pytest.raises(DatakitError, match="drops the system prompt"):
        derive_pre_query(drops_system, bos_token=None, eos_token=None, system=SYSTEM)
    with pytest.raises(DatakitError, match="writes nothing before the user's message"):
        derive_pre_query("{% for m in messages %}{{ m.content }}{% endfor %}", bos_token=None, eos_token=None)


def test_the_pre_query_override_wins_and_is_sent_verbatim_while_the_template_still_gives_the_stop(tiny: Path) -> None:
    spec = parse_spec(f"hf:{tiny}")
    pq, prompt, info = resolve_pre_query(spec, MagpieParams(n=1))
    assert prompt == pq.prefix == "<|im_start|>user\n" and pq.stop == "<|im_end|>" and info["family"] == "chatml"
    override = "<|im_start|>user\nQuestion about Seoul: "
    pq, prompt, info = resolve_pre_query(spec, MagpieParams(n=1, pre_query=override, template="llama3"))
    assert prompt == pq.prefix == override and info["override"] and pq.stop == "<|eot_id|>"
    with pytest.raises(DatakitError, match=r"--n input should be greater than or equal to 1 \(got 0\); --top-p "):
        run_magpie(None, name="x", generator=f"hf:{tiny}", n=0, top_p=2.0)
    with pytest.raises(DatakitError, match=r"--template-from DIR .*--template FAMILY .*--pre-query STRING"):
        resolve_pre_query(parse_spec("openai:m@http://127.0.0.1:9/v1"), MagpieParams(n=1))
    served = parse_spec("openai:m@http://127.0.0.1:9/v1")
    pq, prompt, _ = resolve_pre_query(served, MagpieParams(n=1, pre_query="Q:"))
    assert (prompt, pq.stop) == ("Q:", None)
    # A bare template file knows no BOS token, so the prefix has none and the server adds its own.
    pq, prompt, info = resolve_pre_query(served, MagpieParams(n=1, template=str(TEMPLATES / "gemma.jinja")))
    assert (prompt, pq.stop, info["family"]) == ("<start_of_turn>user\n", "<end_of_turn>", "gemma")


def test_bos_is_dropped_from_the_prompt_exactly_when_the_tokenizer_adds_it_itself(tiny: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    bos_dir = tmp_path / "bos"  # the tiny tokenizer, made to add a BOS as Llama 3's post-processor does
    bos_dir.mkdir()
    tj = json.loads((tiny / "tokenizer.json").read_text())
    tj["post_processor"] = {"type": "Sequence", "processors": [{
        "type": "TemplateProcessing", "single": [{"SpecialToken": {"id": PAD, "type_id": 0}},
                                                  {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {PAD: {"id": PAD, "ids": [0], "tokens": [PAD]}}}]}
    (bos_dir / "tokenizer.json").write_text(json.dumps(tj))
    config = json.loads((tiny / "tokenizer_config.json").read_text())
    config["bos_token"] = {"__type": "AddedToken", "content": PAD, "special": True}
    (bos_dir / "tokenizer_config.json").write_text(json.dumps(config))
    (bos_dir / "chat_template.jinja").write_text("{{ bos_token }}" + CHATML_TEMPLATE)

    for folder, adds in ((tiny, False), (bos_dir, True)):
        real = AutoTokenizer.from_pretrained(folder)
        assert tokenizer_adds_bos(folder, PAD) is adds
        assert (real("hi")["input_ids"][0] == real.convert_tokens_to_ids(PAD)) is adds  # the real tokenizer agrees
    tmpl = load_chat_template(bos_dir)
    assert (tmpl.bos_token, tmpl.adds_bos) == (PAD, True)
    pq, prompt, info = resolve_pre_query(parse_spec(f"hf:{bos_dir}"), MagpieParams(n=1))
    assert pq.prefix == PAD + "<|im_start|>user\n" and prompt == "<|im_start|>user\n" and info["bos_dropped"]
    (bos_dir / "tokenizer_config.json").write_text(json.dumps({**config, "add_bos_token": False}))
    assert resolve_pre_query(parse_spec(f"hf:{bos_dir}"), MagpieParams(n=1))[1] == PAD + "<|im_start|>user\n"
    # A built-in family is for a server we cannot see: vLLM and mlx_lm.server add BOS to raw prompts themselves.
    _, prompt, _ = resolve_pre_query(parse_spec("openai:m@http://h/v1"), MagpieParams(n=1, template="llama3"))
    assert prompt == "<|start_header_id|>user<|end_header_id|>\n\n"


def test_templates_load_from_named_lists_and_token_dicts_and_a_folder_without_one_names_the_flags(
        tmp_path: Path) -> None:
    cfg = {"bos_token": {"content": "<s>", "lstrip": False}, "eos_token": "</s>",
           "chat_template": [{"name": "tool_use", "template": "{{ 'tools' }}"},
                             {"name": "default", "template": FAMILIES["mistral"][0]}]}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg))
    tmpl = load_chat_template(tmp_path)
    assert (tmpl.bos_token, tmpl.eos_token, tmpl.text) == ("<s>", "</s>", FAMILIES["mistral"][0])
    cfg["chat_template"] = cfg["chat_template"][:1]
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(DatakitError, match=r"\['tool_use'\] but none named 'default'"):
        load_chat_template(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>"}))
    with pytest.raises(DatakitError, match=r"no chat template .*--template FAMILY .*--pre-query"):
        load_chat_template(tmp_path)
    with pytest.raises(DatakitError, match="neither a built-in family"):
        builtin_template("vicuna")


# ---- gates on literal strings ------------------------------------------------------------------


def test_repetition_is_near_one_for_loops_and_zero_for_prose() -> None:
    assert repetition("부장매다.부장매다.부장매다.부장매다.부장매다.") == 1.0
    assert repetition("jjjjjjjjjjjjjjjjjjjj") == 1.0
    assert repetition("Hello world. Hello world. Hello world.") > 0.5
    assert repetition("Write a haiku about autumn leaves falling on a quiet pond.") == 0.0
    assert repetition("서울은 한국의 수도입니다. 하늘은 파랗습니다.") < 0.2
    assert repetition("| a | b |\n|---------------|---------------|") == 0.0  # layout, not a loop


def test_instruction_gates_give_each_dropped_text_its_reason() -> None:
    texts = ["What is the capital of Korea?", "", "Hi?", "부장매다." * 5, KOREAN, "what is  the capital of Korea?",
             "Tell me a joke.<|im_start|>assistant", "Explain how a compiler works in detail", "x" * 300]
    finishes = ["stop"] * 7 + ["length", "stop"]
    reasons = instruction_reasons(texts, finishes, markers=("<|im_start|>", "<|im_end|>"), min_chars=10,
                                  max_chars=200, lang="en")
    assert reasons == [None, "empty", "too_short", "repetition", "lang", "duplicate", "role_token", "truncated",
                       "too_long"]
    assert text_reason(KOREAN, finish=None, lang="ko") is None


# ---- whole runs --------------------------------------------------------------------------------


def _rows(reg: Registry, ref: str) -> list[dict]:
    return list(frame_to_records("magpie", reg.load(reg.resolve(ref))))


def test_synth_magpie_runs_through_a_real_mlx_lm_server_and_a_rerun_comes_from_the_journal(
        tiny: Path, cli, tmp_path: Path) -> None:
    pytest.importorskip("mlx_lm")
    with mlx_lm_server(tiny) as (url, _):
        args = ["synth", "magpie", "--generator", f"openai:default_model@{url}", "--template-from", str(tiny),
                "--system", SYSTEM, "--n", "8", "--name", "mg", "--min-chars", "1", "--max-tokens-instruction", "32",
                "--max-tokens-answer", "32", "--json"]
        first = cli(*args)
        assert first.returncode == 0, first.stderr
        again = cli(*args)
    first, again = json.loads(first.stdout), json.loads(again.stdout)
    st = first["stats"]
    kept_instructions = 8 - sum(n for reason, n in st["filtered"].items() if reason.startswith("instruction_"))
    assert first["created"] and st["failed"] == 0 and st["candidates"] == 8 and st["rows_out"] >= 1
    assert st["requests"] == st["done"] == 8 + kept_instructions  # n instructions, then one answer per kept one
    assert st["template"]["family"] == "chatml" and st["template"]["source"] == str(tiny)
    reg = Registry(tmp_path / "registry")
    rows = _rows(reg, first["ref"])
    assert len(rows) == st["rows_out"]
    for row in rows:
        gen = row["generation"]
        assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
        assert row["messages"][0]["content"] == SYSTEM and "<|im_end|>" not in row["messages"][1]["content"]
        assert gen["generator"] == f"openai:default_model@{url}" and gen["template"]["family"] == "chatml"
        assert gen["pre_query"] == f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n"
        assert gen["instruction"]["stop"] == "<|im_end|>" and gen["instruction"]["finish_reason"] == "stop"
        assert gen["instruction"]["temperature"] == 1.0 and gen["answer"]["finish_reason"] == "stop"
        assert row["scores"]["instruction_repetition"] <= 0.5 and row["scores"]["answer_repetition"] <= 0.5
    rejected = reg.extra(reg.resolve(first["ref"]), "rejected.parquet")
    assert Counter(rejected["reason"].to_list()) == Counter(st["filtered"])  # every drop kept with its reason
    assert (again["created"], again["ref"], again["content_hash"]) == (False, first["ref"], first["content_hash"])
    assert again["stats"]["from_journal"] == again["stats"]["requests"] == st["requests"]

    no_template = cli("synth", "magpie", "--generator", f"openai:default_model@{url}", "--n", "2", "--name", "x")
    assert no_template.returncode == 2
    assert all(flag in no_template.stderr for flag in ("--template-from DIR", "--template FAMILY", "--pre-query"))


def test_a_local_hf_generator_writes_instructions_from_its_own_template_and_reports_truncation(
        tiny: Path, reg: Registry) -> None:
    """The tiny model never says its end-of-turn token, so every instruction fills max_tokens: the local
    generator must report that as finish_reason 'length' (as a server would) and the gate must drop them."""
    pytest.importorskip("torch")
    from datakit.generate.job import journal_path

    kw = dict(name="mg-hf", generator=f"hf:{tiny}", n=3, min_chars=1, max_tokens_instruction=24, max_tokens_answer=24)
    with pytest.raises(DatakitError, match=r"every candidate was filtered \({'instruction_truncated': 3}\)"):
        run_magpie(reg, **kw)
    lines = [json.loads(x) for x in journal_path(reg, "mg-hf").read_text().splitlines()]
    assert len(lines) == 3 and all(x["error"] is None and x["finish_reason"] == "length" and x["text"] for x in lines)
    assert len({x["text"] for x in lines}) == 3  # different seeds, different instructions
    with pytest.raises(DatakitError, match="instruction_truncated"):  # the rerun comes from the journal
        run_magpie(reg, **kw)
    assert len(journal_path(reg, "mg-hf").read_text().splitlines()) == 3


def _reward_model(tiny: Path, out: Path, num_labels: int = 1) -> Path:
    """A tiny LlamaForSequenceClassification (one output: a reward model) with the tiny tokenizer and template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    tok = AutoTokenizer.from_pretrained(tiny)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, num_labels=num_labels,
                         pad_token_id=tok.pad_token_id)
    LlamaForSequenceClassification(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_a_reward_model_scores_every_row_and_min_reward_drops_the_low_ones(tiny: Path, reg: Registry,
                                                                          tmp_path: Path) -> None:
    pytest.importorskip("torch")
    rm = _reward_model(tiny, tmp_path / "rm")
    # the tiny model says its end-of-turn token only now and then: enough samples and room for some to end
    common = dict(name="mg-rm", generator=f"hf:{tiny}", n=16, min_chars=1, max_tokens_instruction=96,
                  max_tokens_answer=96, max_repetition=1.0, reward=f"hf:{rm}")
    m, _, st = run_magpie(reg, **common)
    rows = _rows(reg, m.ref)
    scores = [r["scores"]["reward"] for r in rows]
    assert len(rows) >= 2 and len(set(scores)) == len(scores)
    assert scores == pytest.approx(reward_scores(f"hf:{rm}", [r["messages"] for r in rows]))  # deterministic
    best = max(scores)
    m2, created, st2 = run_magpie(reg, **common, min_reward=best)  # same requests: all from the journal
    assert created and st2["from_journal"] == st2["requests"]
    assert [r["scores"]["reward"] for r in _rows(reg, m2.ref)] == [best]
    assert st2["filtered"]["low_reward"] == len(rows) - 1
    classifier = _reward_model(tiny, tmp_path / "classifier", num_labels=2)
    with pytest.raises(DatakitError, match="one output \\(num_labels=1\\), this one has 2"):
        reward_scores(f"hf:{classifier}", [rows[0]["messages"]])
