"""The round trip with the review tools teams already use: Argilla (v2) and Label Studio.

`export_for_review` opens a review queue (the same as `datakit review`) and writes its rows for the tool:
  argilla:       records.json (Argilla v2 record dicts: fields, metadata, suggestions, as `Record.from_dict` reads
                 them) and load_into_argilla.py (creates the dataset with its settings and logs the records);
  label-studio:  tasks.json (tasks to import) and label_config.xml (the labeling interface to paste).
Reviewers answer three questions: decision (accept / reject / edit), reason, and the edited answer (or text).
`import_reviews` reads what the tool exports (Argilla's `dataset.records.to_json`, Label Studio's JSON export)
and records every answer as a decision in the queue, through the same checks as the web UI; the queue's
lineage is kept, so `datakit review QUEUE --commit --name NAME` finishes the job.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from datakit.errors import DatakitError
from datakit.ops import review as rv
from datakit.ops.fields import CHAT_KINDS
from datakit.ops import review_queue as rq
from datakit.registry.store import Registry

TOOLS = ("argilla", "label-studio")
LABEL_CONFIG = """<View>
  <Header value="Review: accept, reject (say why) or edit the answer"/>
  <Paragraphs name="chat" value="$chat" layout="dialogue" nameKey="role" textKey="content"/>
  <Choices name="decision" toName="chat" choice="single" required="true">
    <Choice value="accept"/>
    <Choice value="reject"/>
    <Choice value="edit"/>
  </Choices>
  <TextArea name="reason" toName="chat" placeholder="why is this row wrong? (reject)" maxSubmissions="1"/>
  <TextArea name="edited" toName="chat" value="$answer" editable="true" maxSubmissions="1" rows="6"/>
</View>
"""
ARGILLA_SCRIPT = '''"""Create the Argilla dataset for datakit review queue {queue} and log its records.
Run: ARGILLA_API_URL=... ARGILLA_API_KEY=... python load_into_argilla.py [DATASET_NAME]"""
import json, os, sys
from pathlib import Path

import argilla as rg

client = rg.Argilla(api_url=os.environ["ARGILLA_API_URL"], api_key=os.environ["ARGILLA_API_KEY"])
settings = rg.Settings(
    guidelines="Accept a correct row, reject a wrong one (say why), or edit the answer.",
    fields=[rg.ChatField(name="chat", title="conversation"), rg.TextField(name="answer", title="answer to review")],
    questions=[
        rg.LabelQuestion(name="decision", labels=["accept", "reject", "edit"]),
        rg.TextQuestion(name="reason", title="why is this row wrong?", required=False),
        rg.TextQuestion(name="edited", title="the corrected answer (edit)", required=False),
    ],
    metadata=[rg.TermsMetadataProperty(name="queue"), rg.IntegerMetadataProperty(name="row")],
    allow_extra_metadata=True,
)
dataset = rg.Dataset(name=sys.argv[1] if len(sys.argv) > 1 else {queue!r}, settings=settings, client=client).create()
records = json.loads((Path(__file__).parent / "records.json").read_text())
dataset.records.log([rg.Record.from_dict(r) for r in records])
print(f"logged {{len(records)}} records; when reviewed: dataset.records.to_json('reviewed.json'), then "
      "datakit review import reviewed.json")
'''


class ImportResult(BaseModel):
    queue: str
    tool: str
    answers: int
    saved: int
    refused: list[str]   # "row N (reviewer): why" for answers the checks refused
    skipped: int         # records or tasks with no answer yet


def _texts(kind: str, rec: dict[str, Any]) -> tuple[list[dict[str, str]], str]:
    """The conversation to show and the text a reviewer may edit (the last answer, or a cpt row's text)."""
    if kind in CHAT_KINDS:
        msgs = [{"role": m["role"], "content": m.get("content") or ""} for m in rec["messages"]]
        return msgs, msgs[-1]["content"] if msgs else ""
    return [{"role": "document", "content": rec["text"]}], rec["text"]  # cpt


def export_for_review(reg: Registry, ref: str, tool: str, out: Path, *, sample: int | None = None,
                      seed: int = 0) -> dict[str, Any]:
    if tool not in TOOLS:
        raise DatakitError(f"--format {tool}: use {' or '.join(TOOLS)}")
    kind = reg.resolve(ref).kind
    if kind not in (*CHAT_KINDS, "cpt"):
        raise DatakitError(f"export for review supports sft, identity, magpie and cpt rows, not {kind}")
    q = rq.open_queue(reg, ref, sample=sample, seed=seed)
    rows = rv.queue_rows(reg, q)
    out.mkdir(parents=True, exist_ok=True)
    items = []
    for r in rows:
        chat, answer = _texts(q.kind, r)
        meta = {"queue": q.queue, "row": r["row"], "datakit_id": r["id"]}
        if tool == "argilla":
            items.append({"id": f"{q.queue}:{r['row']}", "fields": {"chat": chat, "answer": answer}, "metadata": meta,
                          "suggestions": {"edited": {"value": answer, "score": None, "agent": "datakit"}}})
        else:
            items.append({"data": {"chat": chat, "answer": answer, **meta}})
    if tool == "argilla":
        (out / "records.json").write_text(json.dumps(items, ensure_ascii=False, indent=1))
        (out / "load_into_argilla.py").write_text(ARGILLA_SCRIPT.format(queue=q.queue))
        files = ["records.json", "load_into_argilla.py"]
    else:
        (out / "tasks.json").write_text(json.dumps(items, ensure_ascii=False, indent=1))
        (out / "label_config.xml").write_text(LABEL_CONFIG)
        files = ["tasks.json", "label_config.xml"]
    return {"ref": q.ref, "queue": q.queue, "format": tool, "rows": len(items), "files": [str(out / f) for f in files]}


def _answers_argilla(item: dict[str, Any]) -> list[dict[str, Any]]:
    """One answer per user: decision, reason and edited text from Argilla's `responses`."""
    by_user: dict[str, dict[str, Any]] = {}
    for question, responses in (item.get("responses") or {}).items():
        for resp in responses or []:
            user = str(resp.get("user_id") or "unknown")
            by_user.setdefault(user, {"reviewer": f"argilla-{user}"})[question] = resp.get("value")
    return list(by_user.values())


def _answers_label_studio(item: dict[str, Any]) -> list[dict[str, Any]]:
    """One answer per (not cancelled) annotation: its choices and text areas, by control name."""
    out = []
    for ann in item.get("annotations") or []:
        if ann.get("was_cancelled"):
            continue
        who = ann.get("completed_by")
        name = who.get("email") or who.get("id") if isinstance(who, dict) else who
        answer: dict[str, Any] = {"reviewer": f"label-studio-{str(name).split('@')[0]}", "time": ann.get("created_at")}
        for res in ann.get("result") or []:
            value = res.get("value") or {}
            if "choices" in value:
                answer[res.get("from_name")] = (value["choices"] or [None])[0]
            elif "text" in value:
                text = value["text"]
                answer[res.get("from_name")] = "\n".join(text) if isinstance(text, list) else text
        out.append(answer)
    return out


def _detect(items: list[Any], path: Path) -> str:
    first = next((i for i in items if isinstance(i, dict)), {})
    if "fields" in first or "responses" in first:
        return "argilla"
    if "data" in first:
        return "label-studio"
    raise DatakitError(f"{path}: neither an Argilla records export (records with fields and responses) nor a Label "
                       "Studio JSON export (tasks with data and annotations)")


def import_reviews(reg: Registry, path: Path, *, deny_file: Path | None = None) -> ImportResult:
    try:
        items = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DatakitError(f"{path}: not a JSON export ({e})") from None
    if not isinstance(items, list) or not items:
        raise DatakitError(f"{path}: expected a JSON list of records or tasks")
    tool = _detect(items, path)
    queues, answers, saved, skipped, refused = set(), 0, 0, 0, []
    for n, item in enumerate(items, start=1):
        meta = (item.get("metadata") if tool == "argilla" else item.get("data")) or {}
        if "queue" not in meta or "row" not in meta:
            raise DatakitError(f"{path}: item {n} has no datakit queue and row; export it with "
                               "`datakit export REF --format argilla|label-studio`")
        queues.add(meta["queue"])
        got = _answers_argilla(item) if tool == "argilla" else _answers_label_studio(item)
        if not got:
            skipped += 1
        for a in got:
            answers += 1
            try:
                _save(reg, meta, a, deny_file)
                saved += 1
            except DatakitError as e:
                refused.append(f"row {meta['row']} ({a['reviewer']}): {e}")
    if len(queues) != 1:
        raise DatakitError(f"{path}: items of {len(queues)} queues ({', '.join(sorted(queues))}); import one export at a time")
    return ImportResult(queue=queues.pop(), tool=tool, answers=answers, saved=saved, refused=refused, skipped=skipped)


def _save(reg: Registry, meta: dict[str, Any], answer: dict[str, Any], deny_file: Path | None) -> None:
    q = rq.load_queue(reg, meta["queue"])
    assert q is not None
    decision = answer.get("decision")
    if decision not in rq.DECISIONS:
        raise DatakitError(f"decision {decision!r} is not one of {', '.join(rq.DECISIONS)}")
    edited = None
    if decision == "edit":
        rec = rv.row_record(reg, q, int(meta["row"]))
        new = (answer.get("edited") or "").strip()
        if q.kind in CHAT_KINDS:
            messages = rec["messages"]
            messages[-1] = {**messages[-1], "content": new}
            edited = {"messages": messages}
        else:
            edited = {"text": new}
    rv.decide(reg, q.queue, row=int(meta["row"]), reviewer=answer["reviewer"], decision=decision,
              reason=answer.get("reason"), edited=edited, deny_file=deny_file, expect_id=meta.get("datakit_id"))
