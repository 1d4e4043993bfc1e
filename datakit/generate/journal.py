"""An append-only JSONL journal of finished generations, keyed by request hash (datatrove's cache).

A rerun loads it and re-sends nothing that finished; failed results are kept for the record but retried.
Each line is flushed and fsync'd, so a crash loses at most the line being written, and that torn
last line is skipped on the next open.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from datakit.errors import DatakitError


class Journal:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done: dict[str, dict[str, Any]] = {}  # key -> the successful result
        self.failed: dict[str, dict[str, Any]] = {}  # key -> the latest failure, until a success replaces it
        self._load()
        self._fh = self.path.open("a", encoding="utf-8")

    def _load(self) -> None:
        if not self.path.exists():
            return
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        for n, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                if any(rest.strip() for rest in lines[n + 1:]):
                    raise DatakitError(f"journal {self.path} line {n + 1} is not JSON and is not a crash-torn last "
                                       "line, so the file was edited or corrupted: fix or delete that line") from None
                print(f"journal {self.path}: skipping a torn last line ({len(line)} bytes)", file=sys.stderr)
                raw = raw[:len(b"\n".join(lines[:n])) + (1 if n else 0)]  # up to where the torn line starts
                with self.path.open("r+b") as fh:  # cut the torn tail so the next append starts a clean line
                    fh.truncate(len(raw))
                break
            self._remember(row)
        if raw and not raw.endswith(b"\n"):  # a whole last line whose newline never made it to disk
            with self.path.open("ab") as fh:
                fh.write(b"\n")

    def _remember(self, row: dict[str, Any]) -> None:
        key = row["key"]
        if row.get("error") is None:
            self.done[key] = row
            self.failed.pop(key, None)
        elif key not in self.done:
            self.failed[key] = row

    def get(self, key: str) -> dict[str, Any] | None:
        """The finished (successful) result for `key`, or None if it must be (re)generated."""
        return self.done.get(key)

    def append(self, row: dict[str, Any]) -> None:
        self._fh.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._remember(row)

    def counts(self) -> dict[str, int]:
        return {"done": len(self.done), "failed": len(self.failed)}

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
