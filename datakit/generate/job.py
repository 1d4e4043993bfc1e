"""One synthetic-data command from requests to a committed version: journal, gate counts, one commit at the end.

Every generation command (augment, synth magpie, synth preference) follows the same life:
  job = GenJob(reg, name=..., kind=..., op=..., options=opts)
  results = job.generate(spec, requests)          # journaled in <registry>/journals/<name>.jsonl
  ... build candidate rows; job.reject(reason, row) for every candidate a gate drops ...
  manifest, created, stats = job.commit(rows, inputs=[...], params={...})

Nothing reaches the registry until `commit`, and `commit` refuses while any request failed (unless
`allow_failed`): a rerun of the same command re-sends only the failed and unsent requests, because finished
ones come back from the journal, so a server crash costs a rerun, never lost or duplicated rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from datakit.errors import CheckFailed, DatakitError
from datakit.generate.client import Request, Result, generate_all
from datakit.generate.journal import Journal
from datakit.generate.spec import GeneratorSpec, parse_spec
from datakit.ops.runner import OpOutput
from datakit.ops.runner import commit as commit_op
from datakit.registry.rows import records_to_frame
from datakit.registry.store import Registry
from datakit.schemas import Manifest, check_name
from datakit.secrets import MASK


class GenOptions(BaseModel):
    """How requests are sent; shared by every generation command (CLI flags of the same names)."""

    model_config = ConfigDict(extra="forbid")
    concurrency: int = Field(4, ge=1, description="requests in flight at once (openai generators)")
    timeout_s: float = Field(120.0, gt=0, description="per-request timeout in seconds")
    retries: int = Field(4, ge=0, description="retries of a timeout, connection error, 429 or 5xx")
    backoff_s: float = Field(1.0, ge=0, description="first retry delay; doubles per attempt, with jitter")
    allow_failed: bool = Field(False, description="commit even when some requests still failed after retries")


def secret_marks(masked_text: str) -> set[str]:
    """What identifies a masked key in rows built from this text: the mask with the words before it (builders
    strip and clean texts, so the whole completion may not survive, but the words around the mask do)."""
    marks, start = set(), 0
    while (i := masked_text.find(MASK, start)) >= 0:
        marks.add(masked_text[max(0, i - 16):i].lstrip() + MASK)
        start = i + len(MASK)
    return marks


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def flag_secret_rows(rows: list[dict[str, Any]], marks: set[str]) -> int:
    """Set meta.secret_masked on every row holding a masked key (so a reviewer can find and drop it); the count."""
    flagged = 0
    for row in rows:
        if any(mark in text for text in _strings({k: v for k, v in row.items() if k != "meta"}) for mark in marks):
            row["meta"] = {**(row.get("meta") or {}), "secret_masked": True}
            flagged += 1
    return flagged


def journal_path(reg: Registry, name: str) -> Path:
    """Where the journal of the command writing dataset `name` lives (inside the registry, beside its datasets)."""
    return reg.local_dir("journals") / f"{check_name(name)}.jsonl"


class GenJob:
    def __init__(self, reg: Registry, *, name: str, kind: str, op: str, options: GenOptions | None = None) -> None:
        self.reg, self.name, self.kind, self.op = reg, check_name(name), kind, op
        self.options = options or GenOptions()
        self.journal = Journal(journal_path(reg, name))
        self.requests = 0  # distinct requests across every generate() call
        self.from_journal = 0
        self.failures: dict[str, str] = {}  # request key -> error, for requests that failed every attempt
        self.rejected: list[dict[str, Any]] = []  # one per candidate a gate dropped
        self.filtered: Counter[str] = Counter()
        self.secret_marks: set[str] = set()  # the text just before each masked key, to flag the rows built from it

    def generate(self, spec: GeneratorSpec | str, requests: Sequence[Request]) -> list[Result]:
        """One Result per request, in order (journaled; failures recorded, not raised)."""
        spec = parse_spec(spec) if isinstance(spec, str) else spec
        o = self.options
        results = generate_all(spec, requests, journal=self.journal, concurrency=o.concurrency,
                               timeout_s=o.timeout_s, retries=o.retries, backoff_s=o.backoff_s)
        seen: set[str] = set()
        for res in results:
            if res.key in seen:
                continue
            seen.add(res.key)
            self.requests += 1
            self.from_journal += res.from_journal
            if not res.ok:
                self.failures[res.key] = res.error or "unknown error"
            if res.secret_masked and res.text:
                self.secret_marks |= secret_marks(res.text)
        return results

    def reject(self, reason: str, row: dict[str, Any], *, source: str | None = None) -> None:
        """A candidate a gate dropped: counted under `reason` and kept in rejected.parquet for inspection."""
        self.filtered[reason] += 1
        self.rejected.append({"reason": reason, "source_id": source,
                              "row": orjson.dumps(row, default=str).decode()})

    def __enter__(self) -> GenJob:
        return self

    def __exit__(self, *exc: object) -> None:
        self.journal.close()  # also when a step between generate() and commit() raised

    def stats(self, rows_out: int, passthrough: int = 0) -> dict[str, Any]:
        """Counts for the manifest; `passthrough` rows are kept input rows (not generated candidates)."""
        return {
            "requests": self.requests,
            "done": self.requests - len(self.failures),
            "failed": len(self.failures),
            "from_journal": self.from_journal,
            "filtered": dict(sorted(self.filtered.items())),
            "candidates": rows_out - passthrough + sum(self.filtered.values()),
            "rows_out": rows_out,
            "journal": str(self.journal.path),
        }

    def commit(self, rows: list[dict[str, Any]], *, inputs: list[Manifest], params: dict[str, Any],
               stats: dict[str, Any] | None = None, passthrough: int = 0) -> tuple[Manifest, bool, dict[str, Any]]:
        """Commit the kept rows once, with done/failed/filtered counts; refuse while requests failed.
        `passthrough`: how many of `rows` are input rows kept as they were (augment's sources)."""
        st = {**self.stats(len(rows), passthrough), **(stats or {})}
        if self.failures and not self.options.allow_failed:
            first = next(iter(self.failures.values()))
            self.journal.close()
            raise CheckFailed(
                f"{len(self.failures)} of {self.requests} generation requests failed (first: {first}); nothing was "
                f"committed. Rerun the same command to retry them (the {st['done']} finished ones come from "
                f"{self.journal.path}), or pass --allow-failed to commit without them.")
        if not rows:
            self.journal.close()
            raise DatakitError(f"{self.op}: every candidate was filtered ({st['filtered']}); nothing to commit to "
                               f"{self.name}. Look at the reasons, loosen the gate or change the generator.")
        extras = {}
        if self.rejected:
            extras["rejected.parquet"] = pl.DataFrame(self.rejected, schema={"reason": pl.String,
                                                                               "source_id": pl.String,
                                                                               "row": pl.String})
        if self.secret_marks:
            st["secret_masked"] = flag_secret_rows(rows, self.secret_marks)
        frame = records_to_frame(self.kind, rows)
        # Generators sample, so two rows can come out identical: keep one and count it (a plain copy teaches
        # repetition, FIELD_NOTES 3).
        unique = frame.unique(subset=[c for c in frame.columns if c not in ("id", "split", "meta")],
                              keep="first", maintain_order=True)
        if (dups := frame.height - unique.height):
            st["filtered"] = {**st["filtered"], "duplicate": st["filtered"].get("duplicate", 0) + dups}
            st["rows_out"] = unique.height
        m, created = commit_op(self.reg, name=self.name, kind=self.kind, inputs=inputs, op=self.op,
                               params={**params, "options": self.options.model_dump(exclude={"allow_failed"})},
                               out=OpOutput(unique, st, extras))
        self.journal.close()
        return m, created, st
