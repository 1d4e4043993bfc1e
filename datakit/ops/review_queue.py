"""A review queue: rows of one version that people accept, reject (with a reason) or edit, one decision at a time.

Stored in the registry itself (local root or bucket), next to the datasets:
    reviews/<queue>/queue.json                               the version (pinned) and the rows to review
    reviews/<queue>/decisions/<reviewer>/<ns>-<row>.json     one object per decision, written create-only
A decision is saved the moment it is made, as its own object that nothing overwrites, so a crash loses at most
the decision being clicked, another reviewer can pick the queue up, and two reviewers on one queue never touch
each other's decisions. A row's decision is its newest (a reviewer who changes their mind adds a newer one).
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any, Literal

import numpy as np
import orjson
from pydantic import BaseModel

from datakit.errors import DatakitError
from datakit.registry.names import check_name
from datakit.registry.store import Registry
from datakit.schemas import Manifest

Decision = Literal["accept", "reject", "edit"]
DECISIONS: tuple[Decision, ...] = ("accept", "reject", "edit")
REVIEWER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


class Queue(BaseModel):
    queue: str
    ref: str            # name@vN, pinned at creation
    content_hash: str
    kind: str
    rows: list[int]     # row indexes of the version, in review order
    sample: int | None  # None: every row
    seed: int
    created: str


class ReviewDecision(BaseModel):
    row: int                     # index in the version
    id: str                      # the row's id, as reviewed
    reviewer: str
    decision: Decision
    reason: str | None = None    # why a row was rejected (or what an edit fixed)
    time: str
    after: dict[str, Any] | None = None  # the edited record (decision edit)


def check_reviewer(name: str) -> str:
    if not REVIEWER_RE.fullmatch(name):
        raise DatakitError(f"invalid reviewer name {name!r}: use letters, digits, '.', '_', '-' or '@' (up to 64), "
                           "e.g. --reviewer alice")
    return name


def queue_name(m: Manifest, sample: int | None) -> str:
    return f"{m.name}-{m.version}" + (f"-sample{sample}" if sample is not None else "")


def _key(queue: str, *parts: str) -> str:
    return "/".join(["reviews", queue, *parts])


def open_queue(reg: Registry, ref: str, *, sample: int | None = None, seed: int = 0, queue: str | None = None) -> Queue:
    """The queue for `ref` (every row, or a seeded sample of `sample` rows): created the first time, reopened
    after (by anyone: the same arguments give the same queue)."""
    m = reg.resolve(ref)
    if sample is not None and sample <= 0:
        raise DatakitError(f"--sample {sample}: give a positive number of rows, or --all")
    name = check_name(queue or queue_name(m, sample), "queue name")
    existing = load_queue(reg, name, missing_ok=True)
    if existing is not None:
        if existing.content_hash != m.content_hash or existing.sample != sample or existing.seed != seed:
            raise DatakitError(f"review queue {name} already exists for {existing.ref} (sample {existing.sample}, "
                               f"seed {existing.seed}); reopen it with the same arguments or name another with --queue")
        return existing
    rows = np.arange(m.rows) if sample is None else np.sort(
        np.random.default_rng(seed).choice(m.rows, size=min(sample, m.rows), replace=False))
    q = Queue(queue=name, ref=m.ref, content_hash=m.content_hash, kind=m.kind, rows=[int(i) for i in rows],
              sample=sample, seed=seed, created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    if not reg.storage.put(_key(name, "queue.json"), orjson.dumps(q.model_dump()), create=True):
        return load_queue(reg, name)  # another reviewer created it a moment ago: theirs is the same queue
    return q


def load_queue(reg: Registry, name: str, *, missing_ok: bool = False) -> Queue | None:
    data = reg.storage.get(_key(check_name(name, "queue name"), "queue.json"))
    if data is None:
        if missing_ok:
            return None
        known = ", ".join(queues(reg)) or "none yet"
        raise DatakitError(f"no review queue {name!r} in {reg.root} (queues: {known}); start one with "
                           "`datakit review REF --sample N` or `--all`")
    return Queue.model_validate_json(data)


def queues(reg: Registry) -> list[str]:
    return reg.storage.dirs("reviews")


def save_decision(reg: Registry, q: Queue, d: ReviewDecision) -> ReviewDecision:
    """Write one decision as its own create-only object (a retry after a crash cannot overwrite one)."""
    check_reviewer(d.reviewer)
    if d.row not in set(q.rows):
        raise DatakitError(f"row {d.row} is not in review queue {q.queue}")
    for _ in range(100):
        key = _key(q.queue, "decisions", d.reviewer, f"{time.time_ns():020d}-{d.row:09d}.json")
        if reg.storage.put(key, orjson.dumps(d.model_dump(exclude_none=True)), create=True):
            return d
    raise DatakitError(f"could not save the decision on row {d.row} of {q.queue}; try again")


def decisions(reg: Registry, q: Queue) -> list[ReviewDecision]:
    """Every decision ever made on the queue, oldest first (object keys start with their time in ns)."""
    found = sorted(reg.storage.list(_key(q.queue, "decisions")),
                   key=lambda o: (o["path"].rsplit("/", 1)[-1], o["path"]))
    out = []
    for o in found:
        data = reg.storage.get(o["path"])
        if data is not None:
            out.append(ReviewDecision.model_validate_json(data))
    return out


def latest(all_decisions: list[ReviewDecision], reviewer: str | None = None) -> dict[int, ReviewDecision]:
    """Each row's newest decision (of one reviewer, or of anyone)."""
    out: dict[int, ReviewDecision] = {}
    for d in all_decisions:
        if reviewer is None or d.reviewer == reviewer:
            out[d.row] = d
    return out


class QueueProgress(BaseModel):
    rows: int
    decided: int
    accept: int
    reject: int
    edit: int
    by_reviewer: dict[str, int]


def progress(q: Queue, all_decisions: list[ReviewDecision]) -> QueueProgress:
    final = latest(all_decisions)
    counts = {k: sum(1 for d in final.values() if d.decision == k) for k in DECISIONS}
    by: dict[str, set[int]] = defaultdict(set)
    for d in all_decisions:
        by[d.reviewer].add(d.row)
    return QueueProgress(rows=len(q.rows), decided=len(final), **counts, by_reviewer={r: len(v) for r, v in sorted(by.items())})


class Agreement(BaseModel):
    reviewers: tuple[str, str]
    rows_both: int
    agreed: int
    percent: float
    cohen_kappa: float | None  # None when chance agreement is 1 (both always gave the same single answer)


def agreement(all_decisions: list[ReviewDecision]) -> list[Agreement]:
    """For every two reviewers who decided the same rows: how often their newest decisions match (accept, reject
    and edit as three answers), and Cohen's kappa, which discounts the agreement chance alone would give."""
    per = {r: latest(all_decisions, r) for r in sorted({d.reviewer for d in all_decisions})}
    out = []
    names = list(per)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            both = sorted(set(per[a]) & set(per[b]))
            if not both:
                continue
            x = [per[a][r].decision for r in both]
            y = [per[b][r].decision for r in both]
            agreed = sum(u == v for u, v in zip(x, y))
            p_o = agreed / len(both)
            p_e = sum((x.count(k) / len(both)) * (y.count(k) / len(both)) for k in DECISIONS)
            kappa = None if p_e >= 1 else round((p_o - p_e) / (1 - p_e), 4)
            out.append(Agreement(reviewers=(a, b), rows_both=len(both), agreed=agreed, percent=round(100 * p_o, 2),
                                 cohen_kappa=kappa))
    return out
