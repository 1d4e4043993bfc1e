"""A chat template's pre-query prefix: what the model sees before a user writes a word (Magpie).

    tmpl = load_chat_template(Path("models/qwen"))          # or builtin_template("llama3")
    pq = derive_pre_query(tmpl.text, bos_token=tmpl.bos_token, eos_token=tmpl.eos_token)
    pq.prefix  -> "<|im_start|>user\\n"      pq.stop -> "<|im_end|>"

The prefix is not hard-coded per family (distilabel knows two, magpie-align keeps a hand-written table):
the template renders [system?] + user(SENTINEL) and is cut right before the sentinel, so a default
system prompt (Qwen 2.5), a BOS token or a folded-in system message (Mistral) come out as the model
was trained on them. Templates render as transformers renders them (sandboxed jinja2, trim_blocks,
lstrip_blocks, raise_exception, strftime_now), so a prefix never differs from apply_chat_template's.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from datakit.errors import DatakitError

SENTINEL = "MagpieSentinel7f3a"  # one word: survives `| trim`, unlikely to occur in any template
_ANSWER = "MagpieAnswer9c1e"
# Role and control tokens as templates write them: <|im_start|>, <start_of_turn>, <s>, </s>, [INST], [/INST].
MARKER_RE = re.compile(r"<\|[^<>|\s]{1,40}\|>|</?[a-z_]{1,30}>|\[/?[A-Z_]{2,20}\]")

# Built-in families for servers whose tokenizer folder is not at hand (`--template FAMILY`): compact
# templates that render what the real ones render for a plain conversation (the tests check them
# against real-shaped templates). (template, bos_token, eos_token)
FAMILIES: dict[str, tuple[str, str | None, str]] = {
    "llama3": ("{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n'"
               " + m['content'] | trim + '<|eot_id|>' }}{% endfor %}"
               "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}",
               "<|begin_of_text|>", "<|eot_id|>"),
    "chatml": ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
               "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
               None, "<|im_end|>"),
    "gemma": ("{{ bos_token }}{% if messages[0]['role'] == 'system' %}"
              "{{ raise_exception('System role not supported') }}{% endif %}"
              "{% for m in messages %}{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
              "{{ '<start_of_turn>' + role + '\n' + m['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
              "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}",
              "<bos>", "<eos>"),
    "mistral": ("{% set sys = messages[0]['content'] if messages[0]['role'] == 'system' else none %}{{ bos_token }}"
                "{% for m in messages if m['role'] != 'system' %}{% if m['role'] == 'user' %}{{ '[INST] ' + "
                "(sys + '\n\n' if sys and loop.last else '') + m['content'] + '[/INST]' }}"
                "{% else %}{{ ' ' + m['content'] + eos_token }}{% endif %}{% endfor %}",
                "<s>", "</s>"),
    "phi3": ("{% for m in messages %}{{ '<|' + m['role'] + '|>\n' + m['content'] + '<|end|>\n' }}{% endfor %}"
             "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}",
             "<s>", "<|endoftext|>"),
}


@dataclass(frozen=True)
class ChatTemplate:
    text: str
    bos_token: str | None
    eos_token: str | None
    source: str  # the folder or file it came from, or "builtin:FAMILY"
    # Whether the tokenizer adds BOS when it encodes a raw prompt. mlx_lm.server (0.32, checked: a prompt
    # starting with the BOS text reports one more prompt token), vLLM and HF generate all encode completion
    # prompts that way, so a prefix that starts with BOS must drop it or the model sees two.
    adds_bos: bool = False
    extra_tokens: dict[str, str] = field(default_factory=dict)  # unk/pad tokens some templates read

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


@dataclass(frozen=True)
class PreQuery:
    prefix: str  # everything before the user's words, BOS included when the template writes one
    stop: str | None  # what the template writes right after the user's words (end of the user turn)
    bos: str | None = None  # the BOS text `prefix` starts with, if any
    markers: tuple[str, ...] = ()  # role/control tokens of the template; none belongs in an instruction

    def prompt(self, *, drop_bos: bool) -> str:
        """The text to send as a raw completion: without the leading BOS when the server adds one itself."""
        return self.prefix[len(self.bos):] if drop_bos and self.bos else self.prefix


def _environment() -> Any:
    try:
        import jinja2
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        raise DatakitError("rendering a chat template needs jinja2: pip install 'jinja2>=3.1'") from None

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
               sort_keys: bool = False) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals.update(raise_exception=raise_exception, strftime_now=lambda fmt: datetime.now().strftime(fmt))
    return env


def render(template: str, messages: list[dict[str, Any]], *, add_generation_prompt: bool = False,
           **tokens: Any) -> str:
    """The template applied to `messages`, as transformers' apply_chat_template(tokenize=False) would."""
    return _environment().from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                                       tools=None, documents=None, **tokens)


def _render_or_explain(template: str, messages: list[dict[str, Any]], gen: bool, tokens: dict[str, Any]) -> str:
    shape = " + ".join(m["role"] for m in messages)
    try:
        return render(template, messages, add_generation_prompt=gen, **tokens)
    except Exception as e:  # a template is user code: any failure is explained, not a crash
        fix = ("this template takes no system turn: drop --system" if messages[0]["role"] == "system" else
               "if it needs a system turn, pass --system TEXT")
        raise DatakitError(f"the chat template fails on a conversation of {shape} ({type(e).__name__}: {e}); {fix}, "
                           "or give the prefix yourself with --pre-query STRING") from None


def derive_pre_query(chat_template: str, *, bos_token: str | None, eos_token: str | None,
                     system: str | None = None, **extra_tokens: Any) -> PreQuery:
    """Render [system?] + user(SENTINEL) and cut right before the sentinel; the text after it, up to the
    assistant header, is the end-of-user-turn marker (the stop for the instruction's completion)."""
    # Absent tokens stay undefined (render as ""), as in transformers; a None would render as "None".
    given = {"bos_token": bos_token, "eos_token": eos_token, **extra_tokens}
    tokens = {k: v for k, v in given.items() if v is not None}
    convo = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": SENTINEL}]
    plain = _render_or_explain(chat_template, convo, False, tokens)
    at = plain.find(SENTINEL)
    if at < 0:
        raise DatakitError(f"the chat template does not write the user's message (it rendered {plain[:200]!r}), so "
                           "there is no place to cut the pre-query prefix; give it with --pre-query STRING")
    prefix = plain[:at]
    if not prefix.strip():
        raise DatakitError("the chat template writes nothing before the user's message, so a raw completion would "
                           "not know it is a user turn; give the prefix with --pre-query STRING")
    if system and system not in prefix:
        raise DatakitError(f"the chat template drops the system prompt (prefix {prefix!r}); drop --system or give "
                           "the prefix with --pre-query STRING")
    # Shared by both renders: the end of the user turn, without the assistant header or a trailing eos.
    with_header = _render_or_explain(chat_template, convo, True, tokens)
    tail = os.path.commonprefix([plain[at + len(SENTINEL):], with_header[with_header.find(SENTINEL) + len(SENTINEL):]])
    stop = next((line.strip() for line in tail.split("\n") if line.strip()), None)
    full = _render_or_explain(chat_template, convo + [{"role": "assistant", "content": _ANSWER}], False, tokens)
    markers = tuple(dict.fromkeys(MARKER_RE.findall(with_header + full)))
    bos = bos_token if bos_token and prefix.startswith(bos_token) else None
    return PreQuery(prefix=prefix, stop=stop, bos=bos, markers=markers)


# ---- where templates come from ------------------------------------------------------------------


def _token_text(value: Any) -> str | None:
    """A special token as tokenizer_config.json stores it: a string or an AddedToken dict."""
    return value.get("content") if isinstance(value, dict) else value


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DatakitError(f"{path}: cannot read it as JSON ({e})") from None
    return data if isinstance(data, dict) else {}


def tokenizer_adds_bos(model_dir: Path, bos_token: str | None) -> bool:
    """Whether encoding a raw prompt with this folder's tokenizer puts BOS first: `add_bos_token` in
    tokenizer_config.json (Llama 2, Mistral, Gemma) or a post-processor that writes it (Llama 3)."""
    if not bos_token:
        return False
    config = _read_json(model_dir / "tokenizer_config.json") if (model_dir / "tokenizer_config.json").exists() else {}
    if isinstance(config.get("add_bos_token"), bool):
        return config["add_bos_token"]
    if not (model_dir / "tokenizer.json").exists():
        return False
    post = _read_json(model_dir / "tokenizer.json").get("post_processor") or {}
    for proc in post.get("processors", [post]):
        single = proc.get("single") if isinstance(proc, dict) else None
        if single and single[0].get("SpecialToken", {}).get("id") == bos_token:
            return True
    return False


def load_chat_template(model_dir: Path) -> ChatTemplate:
    """The chat template of a model or tokenizer folder (chat_template.jinja, or tokenizer_config.json's
    chat_template: a string, or a list of named ones where "default" is used), with its BOS and EOS."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise DatakitError(f"{model_dir}: not a folder; --template-from takes a local tokenizer or model folder")
    cfg_path = model_dir / "tokenizer_config.json"
    config = _read_json(cfg_path) if cfg_path.exists() else {}
    text: Any = None
    if (model_dir / "chat_template.jinja").exists():
        text = (model_dir / "chat_template.jinja").read_text(encoding="utf-8")
    elif "chat_template" in config:
        text = config["chat_template"]
    elif (model_dir / "chat_template.json").exists():  # processors (multimodal models) keep it here
        text = _read_json(model_dir / "chat_template.json").get("chat_template")
    if isinstance(text, list):
        named = {t.get("name"): t.get("template") for t in text if isinstance(t, dict)}
        if "default" not in named:
            raise DatakitError(f"{cfg_path}: chat templates {sorted(map(str, named))} but none named 'default'; "
                               "save the one to use as chat_template.jinja, or pass --pre-query STRING")
        text = named["default"]
    if not isinstance(text, str) or not text.strip():
        raise DatakitError(f"{model_dir}: no chat template (looked in chat_template.jinja, tokenizer_config.json and "
                           "chat_template.json); pass --template FAMILY (llama3, chatml, gemma, mistral, phi3) or "
                           "--pre-query STRING")
    if (model_dir / "special_tokens_map.json").exists():  # older folders keep the tokens here
        config = {**_read_json(model_dir / "special_tokens_map.json"), **{k: v for k, v in config.items() if v}}
    bos, eos = _token_text(config.get("bos_token")), _token_text(config.get("eos_token"))
    extra = {k: t for k in ("unk_token", "pad_token") if (t := _token_text(config.get(k)))}
    return ChatTemplate(text=text, bos_token=bos, eos_token=eos, source=str(model_dir),
                        adds_bos=tokenizer_adds_bos(model_dir, bos), extra_tokens=extra)


def builtin_template(family: str) -> ChatTemplate:
    """A built-in family template; the server is assumed to add BOS itself, as vLLM and mlx_lm.server do."""
    if family not in FAMILIES:
        raise DatakitError(f"--template {family!r}: neither a built-in family ({', '.join(FAMILIES)}) nor a template "
                           "file; or pass --template-from DIR with the served model's tokenizer folder")
    text, bos, eos = FAMILIES[family]
    return ChatTemplate(text=text, bos_token=bos, eos_token=eos, source=f"builtin:{family}", adds_bos=bos is not None)


def family_of(prefix: str) -> str:
    """The template family a prefix belongs to, for the record (`custom` when none matches)."""
    for family, marker in (("llama3", "<|start_header_id|>"), ("chatml", "<|im_start|>"), ("gemma", "<start_of_turn>"),
                           ("mistral", "[INST]"), ("phi3", "<|user|>")):
        if marker in prefix:
            return family
    return "custom"
