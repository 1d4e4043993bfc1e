"""Commits are atomic under SIGKILL and safe when many processes commit at once, on a local folder and on a
bucket of the loopback S3 server (the same create-only-manifest protocol on both)."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from datakit.registry.rows import content_hash, with_ids
from datakit.registry.store import VERSION_RE, Registry
from datakit.registry.verify import gc, verify
from tests.helpers.commit_loop import ROWS, frame_for

ROOT = Path(__file__).resolve().parent.parent


def spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.helpers.commit_loop", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def expected_hash(i: int) -> str:
    df = with_ids("sft", frame_for(i))
    return content_hash("sft", [df])[0]


def test_sigkill_at_random_points_leaves_whole_versions_or_nothing(any_reg: Registry):
    """Kill a writer that commits in a loop after its first commit: at a random instant (even trials) or, on odd
    trials, once the parts of its next commit are written and before it publishes, so kills land inside a commit
    (left parts for gc) however fast or busy the machine: every visible version is whole, numbers contiguous."""
    reg, rng = any_reg, random.Random(0)
    start, interrupted, trials = 0, 0, 0
    while trials < 8:
        trials += 1
        inside = trials % 2 == 1
        proc = spawn(str(reg.root), "crash", str(start), "0", *(["--pause-after-parts", "30"] if inside else []))
        assert proc.stdout.readline().strip() == "ready"
        assert proc.stdout.readline().startswith("committed"), proc.stderr.read()[-2000:]  # one whole commit first
        if inside:
            assert proc.stdout.readline().strip() == "parts-written"
        else:
            time.sleep(rng.uniform(0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        start += 1000  # next run writes new content

        _, problems = verify(reg)
        assert problems == [], problems
        numbers = sorted(int(v[1:]) for v in reg.storage.dirs("datasets/crash") if VERSION_RE.match(v))
        assert numbers == list(range(1, len(numbers) + 1)), "version numbers must stay contiguous"
        for m in reg.versions("crash"):
            assert m.rows == ROWS and m.content_hash == expected_hash(m.params["i"])
        leftovers = gc(reg, grace_s=0)  # the writer is dead: its unpublished parts are leftovers
        assert leftovers or not inside, "a kill between parts and manifest must leave parts for gc"
        interrupted += bool(leftovers)
        used = {m.location.split("/")[1] for m in reg.versions("crash")}
        assert set(reg.storage.dirs("datasets/crash/parts")) == used
    assert interrupted >= 4 and len(reg.versions("crash")) >= trials


def test_sixteen_writers_racing_lose_nothing_and_duplicate_nothing(any_reg: Registry, tmp_path):
    """12 writers commit 3 distinct versions each to one name while 4 more commit the same 3 contents."""
    reg = any_reg
    barrier = tmp_path / "go"
    distinct = [spawn(str(reg.root), "shared", str(100 * k), "3", "--wait", str(barrier)) for k in range(12)]
    same = [spawn(str(reg.root), "same", "7", "3", "--wait", str(barrier)) for _ in range(4)]
    procs = distinct + same
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    barrier.touch()
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 16, [o[1][-2000:] for o in outs if o[1]]

    versions = reg.versions("shared")
    wanted = [100 * k + j for k in range(12) for j in range(3)]
    assert [m.version for m in versions] == [f"v{i}" for i in range(1, 37)]  # contiguous, none lost
    assert sorted(m.params["i"] for m in versions) == sorted(wanted)
    assert sorted(m.content_hash for m in versions) == sorted(expected_hash(i) for i in wanted)  # each once
    # identical content from four writers: one version each, every writer told the same versions
    assert sorted(m.params["i"] for m in reg.versions("same")) == [7, 8, 9]
    said = [sorted(ln.split()[1:] for ln in out.splitlines() if ln.startswith("committed")) for out, _ in outs[12:]]
    assert all(s == said[0] for s in said) and len(said[0]) == 3
    assert verify(reg) == (39, [])
    assert gc(reg, grace_s=0) == []  # losers removed their own parts


def test_a_stopped_writer_blocks_no_one(any_reg: Registry):
    """No locks: a writer frozen mid-loop (SIGSTOP) cannot hold up another; when it resumes both finish."""
    reg = any_reg
    frozen = spawn(str(reg.root), "stuck", "0", "0")
    assert frozen.stdout.readline().strip() == "ready"
    assert frozen.stdout.readline().startswith("committed")
    time.sleep(0.01)
    frozen.send_signal(signal.SIGSTOP)
    try:
        other = spawn(str(reg.root), "stuck", "500", "3")
        out, errs = other.communicate(timeout=120)
        assert other.returncode == 0, errs[-2000:]
        assert len([ln for ln in out.splitlines() if ln.startswith("committed")]) == 3
    finally:
        frozen.send_signal(signal.SIGCONT)
        time.sleep(0.2)
        frozen.send_signal(signal.SIGKILL)
        frozen.communicate()
    gc(reg, grace_s=0)
    assert verify(reg)[1] == []
    numbers = [int(m.version[1:]) for m in reg.versions("stuck")]
    assert numbers == list(range(1, len(numbers) + 1)) and {500, 501, 502} <= {m.params["i"] for m in reg.versions("stuck")}
