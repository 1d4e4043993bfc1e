"""Review queues without a browser: decisions saved one object each (crash-safe, never overwritten, several
reviewers at once), edits checked, agreement statistics, the commit and its lineage, the CLI, and the UI's
token when it is bound off loopback."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient

from datakit.errors import DatakitError
from datakit.io.ingest import ingest
from datakit.ops import review as rv
from datakit.ops import review_queue as rq
from datakit.ui.app import create_app


@pytest.fixture
def generated(reg, external) -> str:
    ingest(reg, [external / "alpaca_en_demo.json"], name="generated", kind="sft")
    return "generated"


def test_a_queue_is_one_seeded_sample_reopened_by_anyone_and_refused_with_other_arguments(reg, generated):
    q = rq.open_queue(reg, generated, sample=12, seed=5)
    assert len(q.rows) == 12 and q.rows == sorted(q.rows) and q.ref == "generated@v1"
    assert rq.open_queue(reg, generated, sample=12, seed=5).rows == q.rows  # reopened, same rows
    with pytest.raises(DatakitError, match="already exists"):
        rq.open_queue(reg, generated, sample=12, seed=6)
    assert rq.open_queue(reg, generated, sample=12, seed=6, queue="second").rows != q.rows
    assert len(rq.open_queue(reg, generated).rows) == reg.resolve(generated).rows  # --all
    with pytest.raises(DatakitError, match="invalid reviewer"):
        rv.decide(reg, q.queue, row=q.rows[0], reviewer="../alice", decision="accept")


def test_reviewers_deciding_at_once_never_lose_or_overwrite_a_decision(reg, generated):
    q = rq.open_queue(reg, generated, sample=20, seed=1)

    def work(name: str) -> None:
        for r in q.rows:
            rv.decide(reg, q.queue, row=r, reviewer=name, decision="accept" if (r + len(name)) % 3 else "reject",
                      reason="off topic")

    threads = [threading.Thread(target=work, args=(n,)) for n in ("alice", "bob", "carol")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = rq.decisions(reg, q)
    assert len(everything) == 60 and {d.reviewer for d in everything} == {"alice", "bob", "carol"}
    for name in ("alice", "bob", "carol"):
        assert len(rq.latest(everything, name)) == 20


def test_agreement_is_percent_and_cohens_kappa_over_the_rows_both_reviewed(reg, generated):
    q = rq.open_queue(reg, generated, sample=10, seed=2)
    a = ["accept"] * 6 + ["reject"] * 4
    b = ["accept"] * 5 + ["reject"] * 5  # they differ on one row
    for r, x, y in zip(q.rows, a, b):
        rv.decide(reg, q.queue, row=r, reviewer="alice", decision=x, reason="bad")
        rv.decide(reg, q.queue, row=r, reviewer="bob", decision=y, reason="bad")
    [ag] = rq.agreement(rq.decisions(reg, q))
    # p_o = 0.9; p_e = 0.6*0.5 + 0.4*0.5 = 0.5; kappa = (0.9 - 0.5) / 0.5 = 0.8
    assert (ag.reviewers, ag.rows_both, ag.agreed, ag.percent, ag.cohen_kappa) == (("alice", "bob"), 10, 9, 90.0, 0.8)


def test_edits_are_checked_and_a_changed_mind_is_the_newest_decision(reg, generated):
    q = rq.open_queue(reg, generated, sample=3, seed=0)
    rec = rv.row_record(reg, q, q.rows[0])
    with pytest.raises(DatakitError, match="not a valid sft row"):
        rv.decide(reg, q.queue, row=q.rows[0], reviewer="alice", decision="edit",
                  edited={"messages": [{"role": "assistant", "content": "only an answer"}]})
    with pytest.raises(DatakitError, match="editable fields"):
        rv.decide(reg, q.queue, row=q.rows[0], reviewer="alice", decision="edit", edited={"id": "x"})
    with pytest.raises(DatakitError, match="needs a reason"):
        rv.decide(reg, q.queue, row=q.rows[0], reviewer="alice", decision="reject")
    assert rq.decisions(reg, q) == []  # nothing refused was saved
    msgs = rec["messages"]
    msgs[-1]["content"] = "Fixed."
    rv.decide(reg, q.queue, row=q.rows[0], reviewer="alice", decision="reject", reason="wrong answer")
    rv.decide(reg, q.queue, row=q.rows[0], reviewer="alice", decision="edit", edited={"messages": msgs})
    for r in q.rows[1:]:
        rv.decide(reg, q.queue, row=r, reviewer="alice", decision="accept")
    res = rv.commit_review(reg, q.queue, "reviewed")
    rows = reg.load(res["ref"])
    assert rows.height == 3 and rows["messages"][0][-1]["content"] == "Fixed."
    assert rows["id"][0] != rec["id"]  # an edited row is a new row
    side = reg.extra(res["ref"], rv.REVIEW_FILE)
    assert side.height == 4 and side.filter(side["row"] == q.rows[0])["final"].to_list() == [False, True]


def test_commit_refuses_undecided_rows_unless_told_to_leave_them_out(reg, generated):
    q = rq.open_queue(reg, generated, sample=4, seed=0)
    rv.decide(reg, q.queue, row=q.rows[0], reviewer="alice", decision="accept")
    with pytest.raises(DatakitError, match="3 of 4 rows .* are undecided"):
        rv.commit_review(reg, q.queue, "reviewed")
    res = rv.commit_review(reg, q.queue, "reviewed", allow_undecided=True)
    assert res["stats"]["rows_out"] == 1 and res["stats"]["undecided"] == 3


def test_the_cli_opens_reports_and_commits_a_queue(reg, cli, generated):
    made = cli("review", generated, "--sample", "3", "--seed", "4", "--json", check_json=True)
    queue = made.json["queue"]
    assert made.json["rows"] == 3 and queue == "generated-v1-sample3"
    for r in rq.load_queue(reg, queue).rows:
        rv.decide(reg, queue, row=r, reviewer="alice", decision="accept")
    status = cli("review", queue, "--status", "--json", check_json=True)
    assert status.json["progress"]["accept"] == 3
    done = cli("review", queue, "--commit", "--name", "generated-ok")
    assert done.returncode == 0 and "generated-ok@v1" in done.stdout and "3 accepted" in done.stdout
    bad = cli("review", generated)
    assert bad.returncode == 2 and "--sample N" in bad.stderr and "Traceback" not in bad.stderr
    missing = cli("review", "nope", "--status")
    assert missing.returncode == 2 and "no review queue 'nope'" in missing.stderr


def test_off_loopback_the_ui_needs_the_token_and_keeps_it_in_a_cookie(reg, generated):
    client = TestClient(create_app(reg, runs_dir=None, token="s3cret-token"))
    assert client.get("/").status_code == 403
    assert client.get("/v/generated@v1?token=wrong").status_code == 403
    ok = client.get("/?token=s3cret-token")
    assert ok.status_code == 200 and "generated" in ok.text
    assert client.get("/v/generated@v1").status_code == 200  # the cookie set above
    stranger = TestClient(create_app(reg, runs_dir=None, token="s3cret-token"))
    stranger.cookies.set("datakit_token", "wrong")
    assert stranger.post("/api/review/x/decide", json={}).status_code == 403


def test_datakit_ui_serves_on_loopback_and_off_it_only_with_the_printed_token(reg, generated, tmp_path):
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def serve(*args: str) -> tuple[subprocess.Popen, str]:
        env = {**os.environ, "DATAKIT_REGISTRY": str(reg.root)}
        proc = subprocess.Popen([sys.executable, "-m", "datakit.cli", "ui", *args], env=env, cwd=tmp_path,
                                stderr=subprocess.PIPE, text=True)
        line = proc.stderr.readline()  # "datakit ui at URL (Ctrl+C to stop)"
        url = line.split(" at ")[1].split()[0]
        for _ in range(100):
            try:
                urllib.request.urlopen(url.split("?")[0].rsplit("/", 1)[0] + "/favicon.ico", timeout=1)
            except urllib.error.HTTPError:
                break  # answering
            except OSError:
                time.sleep(0.1)
        return proc, url

    proc, url = serve("--port", str(free_port()))
    try:
        assert url.startswith("http://127.0.0.1:") and "token" not in url
        assert "generated" in urllib.request.urlopen(url, timeout=5).read().decode()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    proc, url = serve("--port", str(free_port()), "--host", "0.0.0.0")
    try:
        assert "?token=" in url
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(url.split("?")[0], timeout=5)
        assert denied.value.code == 403
        assert urllib.request.urlopen(url, timeout=5).status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
