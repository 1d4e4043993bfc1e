"""A JSON array split into its elements a block at a time, so a large array file is never held whole.

Parsed at once, a 2 GB array takes about ten times its size as Python objects. Here each block is scanned with
numpy for the bytes that structure the array (commas and brackets outside strings, a quote being escaped when
an odd run of backslashes precedes it), and each element's bytes are parsed on their own by orjson, the parser
the whole-file path uses. Anything that is not one well-formed array (a trailing comma, text after the closing
bracket, an unterminated array, a broken element) is an `ArrayError` naming the element.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

_COMMA, _QUOTE, _BACKSLASH, _CLOSE = ord(","), ord('"'), ord("\\"), ord("]")
_DELTA = np.zeros(256, dtype=np.int8)
_DELTA[[ord("["), ord("{")]] = 1
_DELTA[[ord("]"), ord("}")]] = -1
WHITESPACE = b" \t\r\n"


class ArrayError(ValueError):
    """The bytes are not one JSON array; the message says where."""


def _structure(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For bytes that start inside the array, outside any string: which bytes are outside strings, and the
    array nesting depth after each (1 = directly inside the top-level array)."""
    idx = np.arange(len(buf))
    backslash = buf == _BACKSLASH
    last_other = np.maximum.accumulate(np.where(backslash, -1, idx))  # the last non-backslash at or before i
    run = np.zeros(len(buf), dtype=np.int64)  # backslashes right before i
    run[1:] = idx[:-1] - last_other[:-1]
    quote = (buf == _QUOTE) & (run % 2 == 0)
    outside = ~(np.cumsum(quote) % 2).astype(bool) & ~quote
    depth = 1 + np.cumsum(_DELTA[buf] * outside, dtype=np.int64)
    return outside, depth


def array_elements(read: Callable[[], bytes]) -> Iterator[bytes]:
    """The elements of the JSON array whose bytes `read()` returns in blocks (b"" at the end), each as the
    bytes of one JSON value (whitespace trimmed). The whole stream is read, also after the closing bracket."""
    pending, started, closed, count = b"", False, False, 0
    while True:
        block = read()
        if closed:
            if block.strip(WHITESPACE):
                raise ArrayError(f"text after the array's closing bracket (after element {count})")
            if not block:
                return
            continue
        buf = pending + block
        if not started:
            buf = buf.lstrip(WHITESPACE)
            if not buf and block:
                continue
            if not buf.startswith(b"["):
                raise ArrayError("the file does not start with '['")
            buf, started = buf[1:], True
        arr = np.frombuffer(buf, dtype=np.uint8)
        outside, depth = _structure(arr)
        ends = np.flatnonzero(outside & (depth == 0))
        close = int(ends[0]) if len(ends) else None
        if close is not None and arr[close] != _CLOSE:
            raise ArrayError(f"a '}}' closes the array after element {count}")
        seps = np.flatnonzero(outside & (arr == _COMMA) & (depth == 1))
        if close is not None:
            seps = seps[seps < close]
        start = 0
        for sep in seps.tolist():
            count += 1
            yield _element(buf[start:sep], count)
            start = sep + 1
        if close is not None:
            last = buf[start:close].strip(WHITESPACE)
            if last or count:  # `[]` has no element; `[1,]` has an empty last one
                count += 1
                yield _element(last, count)
            if buf[close + 1 :].strip(WHITESPACE):
                raise ArrayError(f"text after the array's closing bracket (after element {count})")
            closed = True
            continue
        if not block:
            raise ArrayError(f"the array ends after element {count} without its closing ']' (a truncated file?)")
        pending = buf[start:]


def _element(raw: bytes, n: int) -> bytes:
    raw = raw.strip(WHITESPACE)
    if not raw:
        raise ArrayError(f"element {n} is empty (two commas in a row, or a comma before ']')")
    return raw
