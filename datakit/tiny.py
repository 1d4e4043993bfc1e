"""Tiny real models built on the spot: a byte-level BPE tokenizer with a ChatML template and a
few-layer Llama, saved in Hugging Face format (which mlx-lm loads too). Nothing is downloaded.

Tests, benchmarks and the demo use these so every backend runs for real on a CPU in seconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

IM_START, IM_END, PAD = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
# ChatML, as Qwen models use it: the end-of-turn token closes every turn, including assistant ones.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

DEFAULT_CORPUS = [
    "The capital of Korea is Seoul. The sky is blue because air scatters blue light.",
    "Python's sort is stable and runs in O(n log n) time.",
    "Hello! I am a helpful assistant. How can I help you today?",
    "서울은 한국의 수도입니다. 하늘은 파랗습니다.",
    "今天天气很好。我们去公园吧。",
    "def hello():\n    print('hello world')",
]


def train_tokenizer(out_dir: Path, texts: Iterable[str] = DEFAULT_CORPUS, *, vocab_size: int = 384) -> Path:
    """Byte-level BPE trained on `texts`, ChatML special tokens and template; saved to `out_dir`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[PAD, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=None, eos_token=IM_END, pad_token=PAD,
                                   unk_token=None, additional_special_tokens=[IM_START, IM_END])
    fast.chat_template = CHATML_TEMPLATE
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out_dir)
    return out_dir


def build_llama(out_dir: Path, *, layers: int = 2, hidden: int = 64, heads: int = 4, kv_heads: int = 2,
                intermediate: int = 128, max_positions: int = 512, seed: int = 0,
                texts: Iterable[str] = DEFAULT_CORPUS, vocab_size: int = 384, head_scale: float = 10.0,
                embedding_rows: int | None = None) -> Path:
    """A randomly initialized Llama with its tokenizer in one folder, as a hub checkpoint looks.

    `embedding_rows` pads the embedding past the tokenizer's vocabulary, as real models do (memory tests).
    The output head is scaled by `head_scale`: a random head gives near-uniform logits that LoRA
    inside the layers cannot sharpen (the final RMSNorm bounds the hidden state); a trained head can.
    """
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    train_tokenizer(out_dir, texts, vocab_size=vocab_size)
    tok = AutoTokenizer.from_pretrained(out_dir)
    end, pad = tok.convert_tokens_to_ids(IM_END), tok.convert_tokens_to_ids(PAD)
    config = LlamaConfig(
        vocab_size=max(len(tok), embedding_rows or 0), hidden_size=hidden, intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=max_positions,
        rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=None, eos_token_id=[end, pad], pad_token_id=pad,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.lm_head.weight.mul_(head_scale)
    model.generation_config = GenerationConfig(eos_token_id=[end, pad], pad_token_id=pad, do_sample=False)
    model.save_pretrained(out_dir, safe_serialization=True)
    return out_dir
