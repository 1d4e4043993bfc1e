"""Row formats found in the wild, detected by their keys and converted to datakit records.

Each converter takes one parsed row and returns the record's content fields; keys the format
does not consume are kept (record fields of the kind stay fields, the rest go to `meta`), so
nothing is lost. A broken row raises RowError with a reason that names the turn or field.
"""

from __future__ import annotations

from typing import Any, Callable

import orjson

from datakit.io.messages import MESSAGE_LISTS, RowError, normalize_messages
from datakit.schemas import FRAME_SCHEMAS

CHAT_KINDS = ("sft", "identity", "magpie")
FORMAT_KINDS: dict[str, tuple[str, ...]] = {
    "messages": CHAT_KINDS,
    "sharegpt": CHAT_KINDS,
    "alpaca": CHAT_KINDS,
    "prompt_completion": CHAT_KINDS,
    "preference": ("preference",),
    "sharegpt_preference": ("preference",),
    "kto": ("kto",),
    "kto_tag": ("kto",),
    "text": ("cpt",),
    "text_pair": ("cpt",),
    "lines": ("cpt",),
    "document": ("cpt",),
    "probes": ("probes",),
}
FORMATS = ("auto", *FORMAT_KINDS)

SHAREGPT_ROLES = {
    "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "model": "assistant",
    "bot": "assistant", "system": "system", "observation": "tool", "tool": "tool", "function_response": "tool",
}


def detect_format(row: dict[str, Any], kind: str) -> str | None:
    keys = set(row)
    if kind == "probes":
        return "probes"
    if "chosen" in keys and "rejected" in keys:
        return "sharegpt_preference" if "conversations" in keys else "preference"
    if "prompt" in keys and "completion" in keys and "label" in keys:
        return "kto"
    if "kto_tag" in keys and ("messages" in keys or "conversations" in keys):
        return "kto_tag"
    if "messages" in keys:
        return "messages"
    if "conversations" in keys:
        return "sharegpt"
    if "instruction" in keys:
        return "alpaca"
    if "prompt" in keys and "completion" in keys:
        return "prompt_completion"
    if "text" in keys:
        return "text"
    return None


KNOWN_SHAPES = ("messages (chat), conversations (sharegpt), instruction + output (alpaca), prompt + completion, "
                "prompt + chosen + rejected (preference), prompt + completion + label or kto_tag (kto), text (cpt), "
                "type (probes)")


def unsupported_reason(row: dict[str, Any]) -> str:
    """Why no format fits a row, and what to do: named for the shapes people actually bring."""
    keys = set(row)
    if {"completions", "labels"} <= keys:
        return ("These are stepwise-supervision rows (TRL: prompt, completions, labels per step) for process reward "
                "models; datakit has no kind for them. Keep the steps you trust as sft rows (one assistant turn), "
                "or train them with TRL's PRMTrainer directly")
    if keys & {"prompt"} and not keys & {"completion", "chosen", "rejected"}:
        return ("These are prompt-only rows (no answer to train on). Use them as eval probes (add a type, e.g. "
                "\"type\": \"knowledge\" with expect) or as seeds for generation (datakit synth)")
    return f"Known row shapes: {KNOWN_SHAPES}; rename the keys, or pass --format to say which shape they are"


def _str(v: Any, where: str) -> str:
    if not isinstance(v, str):
        raise RowError(f"{where}: expected a string, got {type(v).__name__}")
    return v


def _messages(v: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(v, list) or not all(isinstance(m, dict) for m in v):
        raise RowError(f"{where}: expected a list of {{role, content}} messages")
    return v


def _json_field(v: Any, where: str) -> Any:
    if isinstance(v, str):
        try:
            return orjson.loads(v) if v.strip() else None
        except orjson.JSONDecodeError as e:
            raise RowError(f"{where}: not valid JSON ({e})") from None
    return v


def _sharegpt_turn(t: Any, i: int) -> dict[str, Any]:
    if not isinstance(t, dict) or "from" not in t or "value" not in t:
        raise RowError(f"turn {i}: expected {{from, value}}")
    who, value = t["from"], t["value"]
    if who == "function_call":  # LLaMA-Factory: one call object, or a list of them (parallel calls)
        calls = _json_field(value, f"turn {i} function_call")
        calls = calls if isinstance(calls, list) else [calls]
        if not calls or not all(isinstance(c, dict) and "name" in c for c in calls):
            raise RowError(f"turn {i}: function_call value must be a JSON object with a name (or a list of them)")
        return {"role": "assistant", "content": None, "tool_calls": calls}
    if who not in SHAREGPT_ROLES:
        raise RowError(f"turn {i}: unknown speaker {who!r}; expected one of {', '.join(sorted(SHAREGPT_ROLES))}")
    return {"role": SHAREGPT_ROLES[who], "content": _str(value, f"turn {i}")}


def _sharegpt(turns: Any, where: str = "conversations") -> list[dict[str, Any]]:
    if isinstance(turns, dict):
        turns = [turns]
    if not isinstance(turns, list):
        raise RowError(f"{where}: expected a list of turns")
    return [_sharegpt_turn(t, i + 1) for i, t in enumerate(turns)]


def _as_turns(v: Any, role: str, where: str) -> list[dict[str, Any]]:
    """A string becomes one turn of `role`; a list is taken as messages; a {from,value} dict as sharegpt."""
    if isinstance(v, str):
        return [{"role": role, "content": v}]
    if isinstance(v, dict):
        return _sharegpt(v, where) if "from" in v else _messages([v], where)
    if isinstance(v, list) and v and isinstance(v[0], dict) and "from" in v[0]:
        return _sharegpt(v, where)
    return _messages(v, where)


def _system(row: dict[str, Any]) -> list[dict[str, Any]]:
    s = row.get("system")
    return [{"role": "system", "content": _str(s, "system")}] if s else []


def _alpaca(row: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    msgs = _system(row)
    for i, pair in enumerate(row.get("history") or []):
        if not isinstance(pair, list) or len(pair) != 2:
            raise RowError(f"history {i + 1}: expected [question, answer]")
        msgs += [{"role": "user", "content": _str(pair[0], f"history {i + 1}")},
                 {"role": "assistant", "content": _str(pair[1], f"history {i + 1}")}]
    instruction = _str(row.get("instruction"), "instruction")
    extra = row.get("input") or ""
    user = f"{instruction}\n\n{_str(extra, 'input')}" if extra else instruction
    msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": _str(row.get("output"), "output")}]
    return {"messages": msgs}, {"instruction", "input", "output", "system", "history"}


UNPAIRED = ("the row carries a {key} (unpaired preference, KTO): as chat rows its undesirable completions would "
            "become training targets; ingest it with --kind kto")


def _refuse_unpaired(row: dict[str, Any]) -> None:
    for key in ("kto_tag", "label"):
        if key in row and isinstance(row[key], bool):
            raise RowError(UNPAIRED.format(key=key))


def _chat(row: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    _refuse_unpaired(row)
    return {"messages": _messages(row["messages"], "messages")}, {"messages"}


def _sharegpt_chat(row: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    _refuse_unpaired(row)
    return {"messages": _system(row) + _sharegpt(row["conversations"])}, {"conversations", "system"}


def _prompt_completion(row: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    _refuse_unpaired(row)
    msgs = _as_turns(row["prompt"], "user", "prompt") + _as_turns(row["completion"], "assistant", "completion")
    out: dict[str, Any] = {"messages": msgs}
    if isinstance(row["prompt"], str) and isinstance(row["completion"], str):  # TRL's standard (not chat) form
        out["meta"] = {"converted": ["prompt and completion strings became a user turn and an assistant turn (TRL's "
                                     "standard form is a continuation: --kind cpt --format text_pair keeps it one "
                                     "text)"]}
    return out, {"prompt", "completion"}


def _text_pair(row: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """TRL's standard prompt-completion as one continuation text; where the completion starts is kept."""
    prompt, completion = _str(row["prompt"], "prompt"), _str(row["completion"], "completion")
    return {"text": prompt + completion, "meta": {"completion_start": len(prompt)}}, {"prompt", "completion"}


def _preference(row: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    chosen = _as_turns(row["chosen"], "assistant", "chosen")
    rejected = _as_turns(row["rejected"], "assistant", "rejected")
    used = {"prompt", "chosen", "rejected", "system"}
    if "prompt" in row:
        prompt = _system(row) + _as_turns(row["prompt"], "user", "prompt")
    elif "instruction" in row:
        prompt = _system(row) + _alpaca({**row, "output": ""})[0]["messages"][:-1]
        used |= {"instruction", "input", "history"}
    else:  # TRL's implicit prompt: the shared prefix of chosen and rejected
        n = 0
        while n < min(len(chosen), len(rejected)) - 1 and chosen[n] == rejected[n]:
            n += 1
        prompt, chosen, rejected = chosen[:n], chosen[n:], rejected[n:]
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}, used


def _sharegpt_preference(row: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    return {
        "prompt": _system(row) + _sharegpt(row["conversations"]),
        "chosen": _sharegpt(row["chosen"], "chosen"),
        "rejected": _sharegpt(row["rejected"], "rejected"),
    }, {"conversations", "chosen", "rejected", "system"}


def _kto(row: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """TRL's unpaired preference: prompt, completion, label (conversational or plain strings)."""
    label = row["label"]
    if not isinstance(label, bool):
        raise RowError(f"label: expected true or false, got {label!r}")
    prompt = _system(row) + _as_turns(row["prompt"], "user", "prompt")
    return {"prompt": prompt, "completion": _as_turns(row["completion"], "assistant", "completion"),
            "label": label}, {"prompt", "completion", "label", "system"}


def _kto_tag(row: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """LLaMA-Factory's KTO rows: a conversation whose last assistant turn is the completion, and kto_tag."""
    tag = row["kto_tag"]
    if not isinstance(tag, bool):
        raise RowError(f"kto_tag: expected true or false, got {tag!r}")
    msgs = _system(row) + (_sharegpt(row["conversations"]) if "conversations" in row
                           else _messages(row["messages"], "messages"))
    if not msgs or msgs[-1].get("role") != "assistant":
        raise RowError("kto_tag: the conversation must end with the assistant turn the tag judges")
    return ({"prompt": msgs[:-1], "completion": msgs[-1:], "label": tag},
            {"conversations", "messages", "kto_tag", "system"})


def _text(row: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    if row["text"] is None:  # same reason the column check gives a null text
        raise RowError("empty text")
    return {"text": _str(row["text"], "text")}, {"text"}


def _probes(row: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    return {}, set()


CONVERTERS: dict[str, Callable[[dict[str, Any]], tuple[dict[str, Any], set[str]]]] = {
    "messages": _chat,
    "sharegpt": _sharegpt_chat,
    "alpaca": _alpaca,
    "prompt_completion": _prompt_completion,
    "preference": _preference,
    "sharegpt_preference": _sharegpt_preference,
    "kto": _kto,
    "kto_tag": _kto_tag,
    "text": _text,
    "text_pair": _text_pair,
    "probes": _probes,
}
REQUIRED_KEYS = {
    "messages": ("messages",), "sharegpt": ("conversations",), "alpaca": ("instruction", "output"),
    "prompt_completion": ("prompt", "completion"), "preference": ("chosen", "rejected"),
    "sharegpt_preference": ("conversations", "chosen", "rejected"), "text": ("text",), "probes": ("type",),
    "kto": ("prompt", "completion", "label"), "kto_tag": ("kto_tag",), "text_pair": ("prompt", "completion"),
}


def convert_row(row: Any, fmt: str, kind: str, origin: dict[str, Any]) -> dict[str, Any]:
    """One parsed row in format `fmt` to a record dict of `kind` (JSON fields still objects)."""
    if not isinstance(row, dict):
        raise RowError(f"expected a JSON object, got {type(row).__name__}")
    missing = [k for k in REQUIRED_KEYS[fmt] if k not in row]
    if missing:
        raise RowError(f"missing {', '.join(missing)} for format {fmt} (row has {', '.join(sorted(row)) or 'no keys'})")
    rec, used = CONVERTERS[fmt](row)
    made = rec.pop("meta", {})
    converted: list[str] = list(made.pop("converted", []))
    for k in MESSAGE_LISTS:
        if k in rec:
            rec[k] = normalize_messages(rec[k], k, converted)
    fields = FRAME_SCHEMAS[kind]
    meta = dict(row["meta"]) if isinstance(row.get("meta"), dict) else {}
    if "meta" in row and not isinstance(row["meta"], dict):
        meta["meta"] = row["meta"]
    for k, v in row.items():
        if k in used or k == "meta":
            continue
        if (k in fields or k == "split") and k not in rec:
            rec[k] = _json_field(v, k) if k in ("tools", "generation", "scores") else v
        elif k == "id" and kind == "probes":
            rec["id"] = v
        else:
            meta["source_id" if k == "id" else k] = v
    meta.update(made)
    if converted:
        meta["converted"] = converted
    meta["origin"] = origin
    rec["meta"] = meta
    return rec
