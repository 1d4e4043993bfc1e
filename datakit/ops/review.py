"""Expert review into a new version: decide rows (`review_queue`), check edits, commit what was kept.

`decide` is what the UI calls for every click: an edit is merged into the row, validated against the kind's
schema (`validate_record`) and linted for other vendors' names (`lint.rows_findings`) before it is saved; an
error refuses it with the reason, so a reviewer cannot save a broken or mislabelled row. `commit_review`
writes the accepted and edited rows (in the version's order) as a new version whose parent is the reviewed
one, with every decision (reviewer, time, reason, before and after) in `review.parquet`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

from datakit.errors import DatakitError
from datakit.io.validate import validate_record
from datakit.ops.lint import rows_findings
from datakit.ops.review_queue import (Decision, Queue, ReviewDecision, agreement, check_reviewer, decisions, latest,
                                      load_queue, progress, save_decision)
from datakit.registry.rows import dumps, frame_to_records, records_to_frame
from datakit.registry.store import Registry
from datakit.schemas import content_columns

REVIEW_FILE = "review.parquet"
REVIEW_SCHEMA = {"row": pl.Int64, "source_id": pl.String, "reviewer": pl.String, "decision": pl.String,
                 "reason": pl.String, "time": pl.String, "final": pl.Boolean, "before": pl.String, "after": pl.String}


def queue_rows(reg: Registry, q: Queue) -> list[dict[str, Any]]:
    """The queue's rows as records, in review order, each with its `row` index."""
    df = reg.load(q.ref).with_row_index("_row")
    picked = df.filter(pl.col("_row").is_in(q.rows))
    records = frame_to_records(q.kind, picked.drop("_row"))
    return [{"row": int(i), **rec} for i, rec in zip(picked["_row"], records)]


def row_record(reg: Registry, q: Queue, row: int) -> dict[str, Any]:
    """One row of the queue as a record, with its `row` index."""
    if row not in set(q.rows):
        raise DatakitError(f"row {row} is not in review queue {q.queue}")
    return {"row": row, **next(frame_to_records(q.kind, reg.scan(q.ref).slice(row, 1).collect()))}


def check_edit(kind: str, original: dict[str, Any], edited: dict[str, Any], *,
               deny_file: str | Path | None = None) -> tuple[dict[str, Any], list[str]]:
    """The original record with the edited content fields, validated; returns it and any warnings. Raises
    DatakitError naming every problem (schema, structure, another vendor's name where the model says who it is)."""
    editable = set(content_columns(kind))
    unknown = sorted(set(edited) - editable)
    if unknown:
        raise DatakitError(f"cannot edit {', '.join(unknown)}: the editable fields of a {kind} row are "
                           f"{', '.join(sorted(editable))}")
    merged = {k: v for k, v in original.items() if k not in ("id", "row")} | edited
    try:
        clean = validate_record(kind, merged)
    except (ValueError, TypeError) as e:  # pydantic's ValidationError is a ValueError
        raise DatakitError(f"the edit is not a valid {kind} row: {_first_line(e)}") from None
    findings = rows_findings(kind, records_to_frame(kind, [clean]), deny_file=deny_file)
    errors = [f.message for f in findings if f.level == "error"]
    if errors:
        raise DatakitError("the edit fails the lint: " + "; ".join(errors))
    return clean, [f.message for f in findings if f.level != "error"]


def _first_line(e: Exception) -> str:
    lines = [x for x in str(e).splitlines() if x.strip()]
    return " ".join(lines[:3]) if lines else type(e).__name__


def decide(reg: Registry, queue: str, *, row: int, reviewer: str, decision: Decision, reason: str | None = None,
           edited: dict[str, Any] | None = None, deny_file: str | Path | None = None,
           expect_id: str | None = None) -> tuple[ReviewDecision, list[str]]:
    """Record one reviewer's decision on one row (an edit checked first); returns it and the edit's warnings.
    `expect_id`: the row id the reviewer saw (an imported answer), refused if the queue's row is another."""
    q = load_queue(reg, queue)
    assert q is not None
    check_reviewer(reviewer)
    original, warnings, after = row_record(reg, q, row), [], None
    if expect_id is not None and expect_id != original["id"]:
        raise DatakitError(f"row {row} of {queue} is {original['id']}, not the {expect_id} that was reviewed")
    if decision == "reject" and not (reason or "").strip():
        raise DatakitError("a rejection needs a reason (what is wrong with the row), so the team can fix the source")
    if decision == "edit":
        if not edited:
            raise DatakitError("an edit needs the edited fields")
        after, warnings = check_edit(q.kind, original, edited, deny_file=deny_file)
    elif edited:
        raise DatakitError(f"edited fields come with decision edit, not {decision}")
    d = ReviewDecision(row=row, id=original["id"], reviewer=reviewer, decision=decision, reason=(reason or None),
                       time=datetime.now(timezone.utc).isoformat(timespec="milliseconds"), after=after)
    return save_decision(reg, q, d), warnings


def commit_review(reg: Registry, queue: str, name: str, *, allow_undecided: bool = False) -> dict[str, Any]:
    """Commit the queue's accepted and edited rows as version `name`; refuses while rows are undecided (unless
    `allow_undecided`, which leaves them out, counted)."""
    q = load_queue(reg, queue)
    assert q is not None
    everything = decisions(reg, q)
    final = latest(everything)
    undecided = [r for r in q.rows if r not in final]
    if undecided and not allow_undecided:
        raise DatakitError(f"{len(undecided)} of {len(q.rows)} rows of {queue} are undecided (first: row "
                           f"{undecided[0]}); review them, or commit with --allow-undecided to leave them out")
    records = {r["row"]: r for r in queue_rows(reg, q)}
    kept: list[dict[str, Any]] = []
    for r in q.rows:  # version order
        d = final.get(r)
        if d is None or d.decision == "reject":
            continue
        rec = records[r] if d.decision == "accept" else {**d.after, "meta": records[r].get("meta")}  # type: ignore[dict-item]
        kept.append({k: v for k, v in rec.items() if k not in ("row", "id")})
    if not kept:
        raise DatakitError(f"nothing to commit: no row of {queue} was accepted or edited")
    prog = progress(q, everything)
    stats = {"rows_in": len(q.rows), "rows_out": len(kept), "removed": len(q.rows) - len(kept),
             "accepted": prog.accept, "edited": prog.edit, "rejected": prog.reject, "undecided": len(undecided),
             "reviewers": prog.by_reviewer, "decisions": len(everything),
             "agreement": [a.model_dump() for a in agreement(everything)]}
    final_keys = {(d.row, d.reviewer, d.time) for d in final.values()}
    side = pl.DataFrame([{
        "row": d.row, "source_id": d.id, "reviewer": d.reviewer, "decision": d.decision, "reason": d.reason,
        "time": d.time, "final": (d.row, d.reviewer, d.time) in final_keys,
        "before": dumps({k: v for k, v in records[d.row].items() if k != "row"}) if d.decision == "edit" else None,
        "after": dumps(d.after) if d.after is not None else None,
    } for d in everything], schema=REVIEW_SCHEMA)
    source = reg.resolve(q.ref)
    params = {"queue": q.queue, "input": q.ref, "sample": q.sample, "seed": q.seed}
    manifest, created = reg.commit_frame(name, q.kind, records_to_frame(q.kind, kept), op="review", params=params,
                                         parents=[reg.parent_of(source)], stats=stats, extras={REVIEW_FILE: side})
    return {"input": q.ref, "ref": manifest.ref, "created": created, "content_hash": manifest.content_hash,
            "stats": stats}


def summary(reg: Registry, queue: str) -> dict[str, Any]:
    """Where a queue stands: progress, per-reviewer counts, agreement (for `datakit review --status`)."""
    q = load_queue(reg, queue)
    assert q is not None
    everything = decisions(reg, q)
    return {"queue": q.queue, "ref": q.ref, "progress": progress(q, everything).model_dump(),
            "agreement": [a.model_dump() for a in agreement(everything)]}
