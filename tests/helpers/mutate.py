"""Test helper: a seeded mutator of ingest inputs, the malformations real files carry.

    for case in cases(seed=0, n=200, base=...): case.name, case.suffix, case.data
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass
class Case:
    name: str
    suffix: str
    data: bytes
    kind: str = "sft"  # the dataset kind it is ingested as (plain text is cpt)


def _chat(i: int) -> dict:
    return {"messages": [{"role": "user", "content": f"question {i} \u00e9\u4e2d"}, {"role": "assistant", "content": f"answer {i}"}]}


def _alpaca(i: int) -> dict:
    return {"instruction": f"do {i}", "input": "", "output": f"done {i}"}


def _deep(depth: int, brace: bool) -> bytes:
    return (b'{"a":' * depth + b"1" + b"}" * depth) if brace else (b"[" * depth + b"1" + b"]" * depth)


MUTATIONS = ("truncate_line", "invalid_utf8", "bom_start", "bom_line", "nul_byte", "crlf", "deep_nesting",
             "huge_line", "wrong_type", "mixed_formats", "empty_object_first", "blank_lines", "cut_file",
             "not_json", "lone_surrogate", "duplicate_keys")


def _lines(rng: random.Random, n: int) -> list[bytes]:
    make = rng.choice([_chat, _alpaca])
    return [json.dumps(make(i), ensure_ascii=rng.random() < 0.5).encode() for i in range(n)]


def mutate(kind: str, rng: random.Random) -> Case:
    lines = _lines(rng, rng.randint(3, 40))
    k = rng.randrange(len(lines))
    if kind == "truncate_line":
        lines[k] = lines[k][: rng.randrange(1, max(2, len(lines[k])))]
    elif kind == "invalid_utf8":
        pos = rng.randrange(1, len(lines[k]))
        lines[k] = lines[k][:pos] + rng.choice([b"\xe9", b"\xff", b"\xc3", b"\xed\xa0\x80"]) + lines[k][pos:]
    elif kind == "bom_start":
        lines[0] = b"\xef\xbb\xbf" + lines[0]
    elif kind == "bom_line":
        lines[k] = b"\xef\xbb\xbf" + lines[k]
    elif kind == "nul_byte":
        pos = rng.randrange(1, len(lines[k]))
        lines[k] = lines[k][:pos] + b"\x00" + lines[k][pos:]
    elif kind == "crlf":
        return Case(kind, ".jsonl", b"\r\n".join(lines) + b"\r\n")
    elif kind == "deep_nesting":
        lines[k] = _deep(rng.choice([100, 2000, 20000]), rng.random() < 0.5)
    elif kind == "huge_line":
        lines[k] = json.dumps({"text": "x" * rng.choice([100_000, 3_000_000])}).encode()
    elif kind == "wrong_type":
        lines[k] = rng.choice([b"[1, 2, 3]", b'"a string"', b"42", b"null", b'{"messages": "hi"}',
                               b'{"messages": [{"role": 3, "content": []}]}', b'{"instruction": {"a": 1}}'])
    elif kind == "mixed_formats":
        lines[k] = json.dumps(rng.choice([_chat, _alpaca])(k + 1000)).encode()
    elif kind == "empty_object_first":
        lines[0] = b"{}"
    elif kind == "blank_lines":
        lines.insert(k, b"   ")
        lines.insert(k, b"")
    elif kind == "cut_file":
        data = b"\n".join(lines)
        return Case(kind, ".jsonl", data[: rng.randrange(1, len(data))])
    elif kind == "not_json":
        lines[k] = rng.choice([b"hello world", b"{'single': 'quotes'}", b"{,}", b"\x1b[31m", b"}{"])
    elif kind == "lone_surrogate":
        lines[k] = b'{"text": "\\ud800 alone"}'
    elif kind == "duplicate_keys":
        lines[k] = b'{"text": "one", "text": "two"}'
    return Case(kind, ".jsonl", b"\n".join(lines) + b"\n")


def as_json_array(case: Case, rng: random.Random) -> Case:
    """The same rows as one JSON array file (the other reader), keeping the mutation."""
    bom = case.data.startswith(b"\xef\xbb\xbf")
    lines = [x for x in case.data.removeprefix(b"\xef\xbb\xbf").split(b"\n") if x.strip()]
    data = b"[" + b",\n".join(lines) + b"]"
    if case.name == "cut_file":
        data = data[: rng.randrange(1, len(data))]
    return Case(case.name + "+array", ".json", (b"\xef\xbb\xbf" if bom else b"") + data)


def _csv_cell(value: str) -> bytes:
    return b'"' + value.replace('"', '""').encode() + b'"'


def as_csv(case: Case, rng: random.Random) -> Case:
    """A CSV of alpaca columns whose cells carry the mutated bytes (quoted, doubled quotes), plus CSV's own
    malformations: a row with too many fields, an unclosed quote, a bare CR."""
    body = [x for x in case.data.removeprefix(b"\xef\xbb\xbf").split(b"\n") if x.strip()]
    rows = [b"instruction,input,output"]
    for i, raw in enumerate(body):
        cell = raw.replace(b'"', b'""')
        rows.append(b'"do ' + str(i).encode() + b'",,"' + cell + b'"')
    extra = rng.choice(["", "too_many", "unclosed", "bare_cr"])
    k = rng.randrange(1, len(rows))
    if extra == "too_many":
        rows[k] += b",surplus"
    elif extra == "unclosed":
        rows[k] = b'"do x,,"never closed'
    elif extra == "bare_cr":
        rows[k] = rows[k].replace(b",", b"\r,", 1)
    bom = b"\xef\xbb\xbf" if case.name == "bom_start" else b""
    data = bom + b"\n".join(rows) + b"\n"
    if case.name == "cut_file":
        data = data[: rng.randrange(1, len(data))]
    return Case(f"{case.name}+csv{'+' + extra if extra else ''}", ".csv", data)


def as_text(case: Case, rng: random.Random) -> Case:
    """A plain-text file (one cpt row per line) with the mutated bytes as its lines."""
    return Case(case.name + "+text", ".txt", case.data, kind="cpt")


def cases(seed: int, n: int) -> Iterator[Case]:
    """n cases cycling through every mutation, written as JSONL, a JSON array, CSV or plain text in turn."""
    rng = random.Random(seed)
    for i in range(n):
        case = mutate(MUTATIONS[i % len(MUTATIONS)], rng)
        writer = (None, None, as_json_array, as_csv, as_text)[i % 5]
        yield writer(case, rng) if writer else case
