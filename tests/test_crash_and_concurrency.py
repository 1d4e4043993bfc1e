"""Commits are atomic under SIGKILL and safe when two processes commit at once."""

from __future__ import annotations

import os
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


def test_sigkill_at_many_points_leaves_whole_versions_or_nothing(tmp_path):
    reg = Registry(tmp_path / "registry")
    delays = [0.0, 0.003, 0.007, 0.011, 0.017, 0.023, 0.031, 0.043, 0.057, 0.071, 0.089, 0.13, 0.19, 0.27, 0.41]
    start, interrupted = 0, 0
    for delay in delays:
        proc = spawn(str(reg.root), "crash", str(start), "0")
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        start += 1000  # next run writes new content

        checked, problems = verify(reg)
        assert problems == [], problems
        vdirs = [p for p in (reg.root / "datasets" / "crash").iterdir() if VERSION_RE.match(p.name)] \
            if (reg.root / "datasets" / "crash").exists() else []
        assert all((p / "manifest.json").exists() for p in vdirs), "a version folder without manifest is visible"
        numbers = sorted(int(p.name[1:]) for p in vdirs)
        assert numbers == list(range(1, len(numbers) + 1)), "version numbers must stay contiguous"
        for m in reg.versions("crash"):
            i = m.params["i"]
            assert m.rows == ROWS and m.content_hash == expected_hash(i)
        interrupted += bool(gc(reg))
        staging = reg.root / ".staging"
        assert not staging.exists() or list(staging.iterdir()) == []
    assert len(reg.versions("crash")) >= 3, "the kills should land after some commits too"
    assert interrupted >= 3, "the kills should land inside commits, leaving staging leftovers for gc"


def test_two_processes_committing_at_once_both_succeed(tmp_path):
    reg = Registry(tmp_path / "registry")
    barrier = tmp_path / "go"
    a = spawn(str(reg.root), "shared", "0", "6", "--wait", str(barrier))
    b = spawn(str(reg.root), "shared", "100", "6", "--wait", str(barrier))
    same1 = spawn(str(reg.root), "same", "7", "3", "--wait", str(barrier))
    same2 = spawn(str(reg.root), "same", "7", "3", "--wait", str(barrier))
    procs = [a, b, same1, same2]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    barrier.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [o[1][-2000:] for o in outs]

    versions = reg.versions("shared")
    assert [m.version for m in versions] == [f"v{i}" for i in range(1, 13)]
    assert sorted(m.params["i"] for m in versions) == list(range(6)) + list(range(100, 106))
    assert {m.content_hash for m in versions} == {expected_hash(i) for i in list(range(6)) + list(range(100, 106))}
    # identical content from two writers: one version each, both writers told the same version
    assert [m.params["i"] for m in reg.versions("same")] == [7, 8, 9]
    said1 = [ln.split()[1:] for ln in outs[2][0].splitlines() if ln.startswith("committed")]
    said2 = [ln.split()[1:] for ln in outs[3][0].splitlines() if ln.startswith("committed")]
    assert said1 == said2
    assert verify(reg)[1] == []
    assert not any((reg.root / ".staging").iterdir())
    assert os.listdir(reg.root / "datasets" / "shared").count(".lock") == 1
