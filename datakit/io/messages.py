"""Messages in one canonical form, whatever the source wrote: tool calls with object arguments, text content,
per-turn training flags as `weight`. Every change of representation is listed in the row's `meta.converted`.

OpenAI stores tool-call arguments as a JSON string, Hugging Face and TRL as an object; chat templates written for
the latter render a string argument JSON-encoded twice, and a model trained on that emits quoted JSON.
"""

from __future__ import annotations

from typing import Any

import orjson


class RowError(ValueError):
    """A row that cannot become a record; the message is the quarantine reason."""


MESSAGE_LISTS = ("messages", "prompt", "chosen", "rejected", "completion")


def _tool_call(c: Any, where: str, converted: list[str]) -> dict[str, Any]:
    """One call in the canonical form {type: function, id?, function: {name, arguments: object}} from the
    OpenAI form (arguments a JSON string), the HF/TRL form (an object) or a flat {name, arguments}."""
    if not isinstance(c, dict):
        raise RowError(f"{where}: expected a tool call object, got {type(c).__name__}")
    fn = c.get("function") if isinstance(c.get("function"), dict) else c
    if not isinstance(fn.get("name"), str) or not fn["name"]:
        raise RowError(f"{where}: a tool call needs function.name")
    args = fn.get("arguments", fn.get("parameters"))
    if args is None or (isinstance(args, str) and not args.strip()):
        converted.append(f"{where}: no arguments, stored as {{}}")
        args = {}
    elif isinstance(args, str):
        try:
            args = orjson.loads(args)
        except orjson.JSONDecodeError as e:
            raise RowError(f"{where}: arguments are not valid JSON ({e}); a model trained on them would learn "
                           "broken calls") from None
        if not isinstance(args, dict):
            raise RowError(f"{where}: arguments must be a JSON object, got {type(args).__name__}")
        converted.append(f"{where}: arguments JSON string decoded to an object")
    elif not isinstance(args, dict):
        raise RowError(f"{where}: arguments must be a JSON object (or a JSON string of one), got "
                       f"{type(args).__name__}")
    out: dict[str, Any] = {"type": "function", "function": {"name": fn["name"], "arguments": args}}
    if c.get("id") is not None:
        out["id"] = c["id"]
    return out


def _content(v: Any, where: str, converted: list[str]) -> Any:
    """Content as a string: OpenAI content parts are joined when all are text, refused otherwise."""
    if not isinstance(v, list):
        return v
    texts = []
    for part in v:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        else:
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise RowError(f"{where}: a content part of type {kind!r}; only text parts can be trained here "
                           "(drop the row's non-text parts, or keep it out of this dataset)")
    converted.append(f"{where}: {len(texts)} text parts joined")
    return "".join(texts)


def normalize_messages(msgs: Any, field: str, converted: list[str]) -> Any:
    """Canonical messages: tool calls with object arguments, text content, axolotl `train` flags as `weight`."""
    if not isinstance(msgs, list):
        return msgs
    label = "" if field == "messages" else f"{field} "
    out = []
    for i, m in enumerate(msgs, 1):
        if not isinstance(m, dict):
            out.append(m)
            continue
        where = f"{label}message {i}"
        m = dict(m)
        if "content" in m:
            m["content"] = _content(m["content"], f"{where} content", converted)
        if isinstance(m.get("tool_calls"), list):
            m["tool_calls"] = [_tool_call(c, f"{where} tool call {j}", converted)
                               for j, c in enumerate(m["tool_calls"], 1)]
            if m.get("content") == "":  # exports write "" for templates; a call-only turn has no content either way
                m["content"] = None
        if "train" in m:  # axolotl's per-turn flag: only assistant turns are ever targets here
            flag = m.pop("train")
            if flag and m.get("role") != "assistant":
                raise RowError(f"{where}: train: true on a {m.get('role')} turn; datakit trains assistant turns "
                               "only (set it false, or make the turn an assistant turn)")
            if m.get("role") == "assistant" and "weight" not in m:
                m["weight"] = 1.0 if flag else 0.0
                converted.append(f"{where}: train: {str(bool(flag)).lower()} kept as weight {m['weight']:g}")
        if isinstance(m.get("weight"), int) and not isinstance(m.get("weight"), bool):
            m["weight"] = float(m["weight"])
        out.append(m)
    return out
