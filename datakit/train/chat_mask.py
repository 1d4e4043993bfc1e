"""Which tokens of a chat are training targets: the one rule both backends (and preflight) use.

Every assistant turn is a target (mlx-lm's `mask_prompt` trains only the last one; TRL's assistant-only loss
needs `{% generation %}` markers most templates lack) unless its message says `weight: 0` (OpenAI fine-tuning
files). A turn's span is found in the chat template's own rendering, with the row's `tools`: from the end of
the generation prompt before it to the end of the rendering that includes it, mapped to tokens by character
offsets and cut after its end-of-turn token (the newline after it is never generated).
"""

from __future__ import annotations

from typing import Any

from datakit.errors import DatakitError


def render(hf: Any, messages: list[dict], tools: Any = None, generation_prompt: bool = False) -> str:
    return hf.apply_chat_template(messages, tools=tools or None, tokenize=False,
                                  add_generation_prompt=generation_prompt)


def is_target(message: dict) -> bool:
    return message.get("role") == "assistant" and message.get("weight", 1) != 0


def assistant_char_spans(hf: Any, messages: list[dict], tools: Any = None, *,
                         first: int = 0) -> tuple[str, list[tuple[int, int]]]:
    """The full rendering and the character span of each target turn at index >= `first`."""
    full = render(hf, messages, tools)
    spans = []
    for i, m in enumerate(messages):
        if i < first or not is_target(m):
            continue
        before = render(hf, messages[:i], tools, generation_prompt=True)
        upto = render(hf, messages[: i + 1], tools)
        # Templates that rewrite earlier turns (e.g. drop reasoning) break per-turn prefixes.
        if not (full.startswith(before) and full.startswith(upto) and len(upto) > len(before)):
            raise DatakitError(
                f"message {i}: the chat template renders earlier turns differently once later turns are added, "
                "so assistant turns cannot be located; use a prefix-stable template (ChatML) or single-turn rows")
        spans.append((len(before), len(upto)))
    return full, spans


def target_mask(hf: Any, messages: list[dict], tools: Any = None, *, eos_ids: set[int],
                first: int = 0) -> tuple[list[int], list[int]]:
    """Token ids of the rendered chat and a 0/1 mask over them: 1 on every target turn's tokens (at message
    index >= `first`) up to and including its end-of-turn token."""
    if not getattr(hf, "chat_template", None):
        raise DatakitError("the tokenizer has no chat template; sft/dpo need one (set chat_template in "
                           "tokenizer_config.json)")
    full, spans = assistant_char_spans(hf, messages, tools, first=first)
    enc = hf(full, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), enc["offset_mapping"]
    mask = [0] * len(ids)
    for start, end in spans:
        inside = [j for j, (s, _) in enumerate(offsets) if start <= s < end]
        ends = [j for j in inside if ids[j] in eos_ids]
        for j in inside[: inside.index(ends[-1]) + 1] if ends else inside:
            mask[j] = 1
    return ids, mask
