"""Preflight on a tiny real Llama folder: each test copies the folder and breaks one thing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from datakit.tiny import build_llama
from datakit.train.preflight import check_model_dir, check_rows, check_stop_tokens, format_report, preflight

CHATML_NO_END = (  # closes user turns with <|im_end|>, assistant turns with nothing
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] }}"
    "{% if message['role'] != 'assistant' %}{{ '<|im_end|>' }}{% endif %}{{ '\n' }}{% endfor %}"
)
CHATML_LAST_END_ONLY = (  # only the final turn gets <|im_end|>: a 1-turn probe passes, 2-turn rows do not
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] }}"
    "{% if loop.last or message['role'] != 'assistant' %}{{ '<|im_end|>' }}{% endif %}{{ '\n' }}{% endfor %}"
)


def chat(q: str, a: str) -> dict:
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


GOOD_ROWS = [chat("What is the capital of Korea?", "Seoul."), chat("Hello!", "Hello! How can I help you today?")]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_llama(tmp_path_factory.mktemp("tiny") / "llama")


@pytest.fixture
def model(tiny_model: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_model, tmp_path / "model"))


@pytest.fixture
def tokenizer(tiny_model: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def errors(findings, check: str | None = None) -> list:
    return [f for f in findings if f.level == "error" and (check is None or f.check == check)]


def test_a_good_model_and_good_rows_pass_with_token_stats(model: Path):
    report = preflight(model, "sft", GOOD_ROWS, max_seq_len=256, backend="hf")
    assert report.ok, format_report(report)
    assert [f for f in report.findings if f.level != "info"] == []
    assert report.stats["end_of_turn"] == "<|im_end|>" and report.stats["end_of_turn_id"] == 2
    tokens = report.stats["tokens"]
    assert 0 < tokens["min"] <= tokens["p50"] <= tokens["p95"] <= tokens["max"] < 256
    assert report.stats["over_max_seq_len"] == 0
    assert "preflight ok" in format_report(report)


def test_the_good_model_also_passes_for_the_mlx_backend(model: Path):
    report = preflight(model, "sft", GOOD_ROWS, max_seq_len=256, backend="mlx")
    assert report.ok, format_report(report)


def test_a_template_that_writes_nothing_after_the_assistant_content_is_an_error(model: Path):
    (model / "chat_template.jinja").write_text(CHATML_NO_END)
    report = preflight(model, "sft", GOOD_ROWS, max_seq_len=256, backend="hf")
    assert not report.ok
    (err,) = errors(report.findings, "stop_tokens")
    assert "writes nothing after the assistant content" in err.message and "never learn to stop" in err.message


def test_an_end_of_turn_token_missing_from_generation_config_eos_is_an_error_with_the_fix(model: Path):
    edit_json(model / "generation_config.json", eos_token_id=[0])
    (err,) = errors(check_stop_tokens(model, "hf"))
    assert "<|im_end|>" in err.message and "generation_config.json" in err.message
    assert "add 2 to eos_token_id" in err.message


def test_mlx_without_the_end_of_turn_in_any_stop_set_is_an_error(model: Path):
    edit_json(model / "generation_config.json", eos_token_id=[0])
    edit_json(model / "config.json", eos_token_id=[0])
    edit_json(model / "tokenizer_config.json", eos_token="<|endoftext|>")
    found = check_stop_tokens(model, "mlx")
    assert any("mlx-lm would not stop" in f.message and "config.json" in f.message for f in errors(found))


def test_an_untrained_end_of_turn_embedding_row_is_a_warning_to_train_embeddings(model: Path):
    from safetensors.torch import load_file, save_file

    weights = load_file(model / "model.safetensors")
    weights["model.embed_tokens.weight"][2] = 0.0
    save_file(weights, model / "model.safetensors", metadata={"format": "pt"})
    (warn,) = [f for f in check_stop_tokens(model, "hf") if f.check == "embeddings"]
    assert warn.level == "warning" and "train.train_embeddings: true" in warn.message


def test_a_missing_shard_is_an_error_naming_the_file_and_its_tensor_count(model: Path):
    from safetensors.torch import load_file, save_file

    weights = load_file(model / "model.safetensors")
    names = sorted(weights)
    shards = {"model-00001-of-00002.safetensors": names[:5], "model-00002-of-00002.safetensors": names[5:]}
    for shard, keys in shards.items():
        save_file({k: weights[k] for k in keys}, model / shard, metadata={"format": "pt"})
    weight_map = {k: shard for shard, keys in shards.items() for k in keys}
    (model / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (model / "model.safetensors").unlink()
    assert errors(check_model_dir(model, "hf")) == []
    (model / "model-00002-of-00002.safetensors").unlink()
    (err,) = errors(check_model_dir(model, "hf"))
    assert err.check == "weights"
    assert f"model-00002-of-00002.safetensors ({len(names) - 5} tensors)" in err.message
    assert "model-00001" not in err.message


def test_an_mlx_quantization_block_is_an_error_for_hf_and_fine_for_mlx(model: Path):
    block = {"group_size": 64, "bits": 4}
    edit_json(model / "config.json", quantization=block, quantization_config=block)
    (err,) = errors(check_model_dir(model, "hf"))
    assert "MLX-quantized export" in err.message and "use backend mlx" in err.message
    assert errors(check_model_dir(model, "mlx")) == []


def test_a_bitsandbytes_quantization_config_is_an_error_for_mlx(model: Path):
    edit_json(model / "config.json", quantization_config={"quant_method": "bitsandbytes", "load_in_4bit": True})
    (err,) = errors(check_model_dir(model, "mlx"))
    assert "'bitsandbytes'" in err.message and "use backend hf" in err.message
    assert errors(check_model_dir(model, "hf")) == []


def test_pickle_only_weights_are_a_warning(model: Path):
    (model / "model.safetensors").rename(model / "pytorch_model.bin")
    (warn,) = check_model_dir(model, "hf")
    assert warn.level == "warning" and "pytorch_model" in warn.message


def test_a_broken_config_json_is_reported_with_the_file_name(model: Path):
    (model / "config.json").write_text('{"model_type": "llama",')
    report = preflight(model, "sft", GOOD_ROWS, max_seq_len=256, backend="hf")
    assert not report.ok
    assert any(str(model / "config.json") in f.message and "not valid JSON" in f.message for f in errors(report.findings))


def test_a_missing_folder_and_a_missing_chat_template_are_errors(model: Path, tmp_path: Path):
    (err,) = errors(check_model_dir(tmp_path / "nope", "hf"))
    assert "no such model folder" in err.message
    (model / "chat_template.jinja").unlink()
    assert [f.check for f in errors(check_model_dir(model, "hf", kind="sft"))] == ["chat_template"]
    assert errors(check_model_dir(model, "hf", kind="cpt")) == []


def test_over_long_rows_are_counted_and_named(tokenizer):
    long = chat("Tell me everything.", "The sky is blue because air scatters blue light. " * 20)
    rows = [GOOD_ROWS[0], long, GOOD_ROWS[1], long]
    findings, stats = check_rows(tokenizer, "sft", rows, max_seq_len=64)
    (warn,) = [f for f in findings if f.check == "length"]
    assert warn.level == "warning" and warn.rows == [1, 3]
    assert "2 of 4 rows would be truncated at max_seq_len=64" in warn.message and "TRL truncates silently" in warn.message
    assert stats["over_max_seq_len"] == 2 and stats["tokens"]["max"] > 64


def test_a_row_the_template_cannot_render_is_reported_by_index(tokenizer):
    bad = {"messages": [{"role": "user", "content": None}, {"role": "assistant", "content": "Hi."}]}
    findings, stats = check_rows(tokenizer, "sft", [GOOD_ROWS[0], GOOD_ROWS[1], bad], max_seq_len=256)
    (err,) = errors(findings)
    assert err.check == "render" and err.rows == [2] and "chat template raised" in err.message
    assert stats["rendered"] == 2


def test_a_role_the_template_raises_on_is_reported_by_index(tokenizer):
    strict = ("{% for m in messages %}{% if m['role'] not in ['user', 'assistant'] %}"
              "{{ raise_exception('unsupported role ' + m['role']) }}{% endif %}"
              "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}")
    tokenizer.chat_template = strict
    odd = {"messages": [{"role": "narrator", "content": "Once."}, {"role": "assistant", "content": "Hi."}]}
    (err,) = errors(check_rows(tokenizer, "sft", [odd, GOOD_ROWS[0]], max_seq_len=256)[0])
    assert err.rows == [0] and "unsupported role narrator" in err.message


def test_an_assistant_turn_the_template_leaves_unclosed_is_reported_by_index(tokenizer):
    tokenizer.chat_template = CHATML_LAST_END_ONLY
    two_turns = {"messages": GOOD_ROWS[0]["messages"] + GOOD_ROWS[1]["messages"]}
    (err,) = errors(check_rows(tokenizer, "sft", [GOOD_ROWS[0], two_turns], max_seq_len=256)[0])
    assert err.check == "turn_ends" and err.rows == [1] and "'<|im_end|>'" in err.message


def test_cpt_rows_count_text_plus_eos_and_preference_rows_count_the_longer_pair(tokenizer):
    text = "Python's sort is stable."
    _, stats = check_rows(tokenizer, "cpt", [{"text": text}], max_seq_len=256)
    assert stats["tokens"]["max"] == len(tokenizer.encode(text, add_special_tokens=False)) + 1
    prompt = [{"role": "user", "content": "Sort?"}]
    row = {"prompt": prompt, "chosen": [{"role": "assistant", "content": "Stable."}],
           "rejected": [{"role": "assistant", "content": "It is not stable, and it is slow and odd."}]}
    findings, stats = check_rows(tokenizer, "preference", [row], max_seq_len=256)
    assert errors(findings) == []
    rendered = tokenizer.apply_chat_template(prompt + row["rejected"], tokenize=False)
    assert stats["tokens"]["max"] == len(tokenizer(rendered, add_special_tokens=False)["input_ids"])


def test_the_base_model_fingerprint_changes_with_the_weights_not_with_json_formatting(tiny_model, model):
    import json

    from datakit.train.model_check import model_fingerprint

    tiny, copy = tiny_model, model
    cfg = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps(cfg, indent=7, sort_keys=True))  # formatting only
    assert model_fingerprint(copy) == model_fingerprint(tiny)
    weights = next(copy.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one byte of one weight
    weights.write_bytes(bytes(data))
    changed = {k for k, v in model_fingerprint(copy).items() if model_fingerprint(tiny)[k] != v}
    assert changed == {weights.name}
