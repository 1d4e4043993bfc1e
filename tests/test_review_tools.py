"""The round trip with Argilla and Label Studio: rows exported for the tool, the tool's own export of the answers
imported as review decisions (through the same checks as the web UI), and the reviewed version committed."""

from __future__ import annotations

import json
import uuid
import xml.etree.ElementTree as ET

from datakit.ops import review as rv
from datakit.ops import review_queue as rq
from tests.test_review import generated  # noqa: F401 (fixture)

ALICE, BOB = uuid.UUID(int=1), uuid.UUID(int=2)


def test_argilla_records_load_in_argilla_and_its_export_comes_back_as_decisions(reg, cli, generated, tmp_path):  # noqa: F811
    import argilla as rg  # a dev dependency (make test installs it); its records need no server
    from argilla.records._io import JsonIO  # what dataset.records.to_json writes with

    made = cli("export", generated, "--format", "argilla", "--sample", "5", "--seed", "2", "--out", str(tmp_path / "ar"),
               "--json", check_json=True)
    assert made.returncode == 0 and made.json["rows"] == 5, made.stderr
    script = (tmp_path / "ar" / "load_into_argilla.py").read_text()
    compile(script, "load_into_argilla.py", "exec")
    records = [rg.Record.from_dict(d) for d in json.loads((tmp_path / "ar" / "records.json").read_text())]
    assert [r.fields["chat"][0]["role"] for r in records] == ["user"] * 5
    answers = [("accept", None, None), ("reject", "wrong year", None), ("edit", None, "A better answer."),
               ("accept", None, None), ("edit", None, "I am ChatGPT, made by OpenAI.")]  # the last one is refused
    answered = []  # each record as the server returns it, with two users' responses
    for r, (decision, reason, edited) in zip(records, answers):
        d = r.to_dict()
        d["responses"] = {"decision": [{"value": decision, "user_id": str(ALICE)}]}
        d["responses"]["decision"].append({"value": "accept", "user_id": str(BOB)})
        if reason:
            d["responses"]["reason"] = [{"value": reason, "user_id": str(ALICE)}]
        if edited:
            d["responses"]["edited"] = [{"value": edited, "user_id": str(ALICE)}]
        answered.append(rg.Record.from_dict(d))
    JsonIO.to_json(answered, tmp_path / "reviewed.json")

    imported = cli("review", "import", str(tmp_path / "reviewed.json"), "--json", check_json=True)
    assert imported.returncode == 1  # one answer was refused: said, and the rest kept
    res = imported.json
    assert (res["tool"], res["answers"], res["saved"], len(res["refused"])) == ("argilla", 10, 9, 1)
    assert "ChatGPT" in res["refused"][0] and f"argilla-{ALICE}" in res["refused"][0]
    q = rq.load_queue(reg, res["queue"])
    everything = rq.decisions(reg, q)
    alice = rq.latest(everything, f"argilla-{ALICE}")
    assert [alice[r].decision for r in q.rows if r in alice] == ["accept", "reject", "edit", "accept"]
    [agree] = rq.agreement(everything)
    assert agree.rows_both == 4 and agree.agreed == 2


def test_label_studio_tasks_and_config_match_and_its_export_comes_back_as_decisions(reg, cli, generated, tmp_path):  # noqa: F811
    made = cli("export", generated, "--format", "label-studio", "--sample", "4", "--out", str(tmp_path / "ls"), "--json",
               check_json=True)
    assert made.returncode == 0, made.stderr
    config = ET.fromstring((tmp_path / "ls" / "label_config.xml").read_text())
    names = {el.get("name"): el.tag for el in config.iter() if el.get("name")}
    assert names == {"chat": "Paragraphs", "decision": "Choices", "reason": "TextArea", "edited": "TextArea"}
    tasks = json.loads((tmp_path / "ls" / "tasks.json").read_text())
    assert all(t["data"]["chat"][-1]["content"] == t["data"]["answer"] for t in tasks)

    def result(name: str, kind: str, value: dict) -> dict:
        return {"from_name": name, "to_name": "chat", "type": kind, "value": value}

    exported = []  # the shape of Label Studio's JSON export: tasks with their annotations
    for i, t in enumerate(tasks):
        anns = []
        if i == 0:
            anns.append({"completed_by": {"id": 7, "email": "kim@acme.example"}, "was_cancelled": False,
                         "result": [result("decision", "choices", {"choices": ["accept"]})]})
            anns.append({"completed_by": 9, "was_cancelled": True, "result": []})  # skipped in the tool: ignored
        elif i == 1:
            anns.append({"completed_by": {"id": 7, "email": "kim@acme.example"}, "was_cancelled": False,
                         "result": [result("decision", "choices", {"choices": ["reject"]}),
                                    result("reason", "textarea", {"text": ["made-up facts"]})]})
        elif i == 2:
            anns.append({"completed_by": 8, "was_cancelled": False,
                         "result": [result("decision", "choices", {"choices": ["edit"]}),
                                    result("edited", "textarea", {"text": ["The fixed answer."]})]})
        exported.append({"id": 100 + i, "data": t["data"], "annotations": anns})  # the fourth: not annotated yet
    (tmp_path / "ls-export.json").write_text(json.dumps(exported))

    imported = cli("review", "import", str(tmp_path / "ls-export.json"), "--json", check_json=True)
    assert imported.returncode == 0, imported.stderr
    assert (imported.json["saved"], imported.json["skipped"], imported.json["refused"]) == (3, 1, [])
    queue = imported.json["queue"]
    res = rv.commit_review(reg, queue, "generated-ls", allow_undecided=True)
    rows = reg.load(res["ref"])
    assert res["stats"]["accepted"] == 1 and res["stats"]["rejected"] == 1 and res["stats"]["undecided"] == 1
    assert rows.height == 2 and rows["messages"][1][-1]["content"] == "The fixed answer."
    side = reg.extra(res["ref"], rv.REVIEW_FILE)
    assert set(side["reviewer"]) == {"label-studio-kim", "label-studio-8"}
    assert side.filter(side["decision"] == "reject")["reason"].to_list() == ["made-up facts"]


def test_an_export_of_another_tool_or_kind_is_a_clear_error(reg, cli, generated, tmp_path):  # noqa: F811
    (tmp_path / "x.json").write_text(json.dumps([{"foo": 1}]))
    bad = cli("review", "import", str(tmp_path / "x.json"))
    assert bad.returncode == 2 and "neither an Argilla records export" in bad.stderr
    pairs = tmp_path / "p.jsonl"
    pairs.write_text(json.dumps({"prompt": "q?", "chosen": "good", "rejected": "bad"}) + "\n")
    assert cli("ingest", str(pairs), "--name", "pairs", "--kind", "preference").returncode == 0
    refused = cli("export", "pairs", "--format", "argilla", "--out", str(tmp_path / "p"))
    assert refused.returncode == 2 and "supports sft, identity, magpie and cpt rows, not preference" in refused.stderr
