"""A full disk and a read-only registry, for real: a small tmpfs mounted by the test (the machine must allow
`mount`, as root in CI does; elsewhere these tests are skipped with the reason)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

# Mounting needs root (or CAP_SYS_ADMIN) and the mount tool: true in CI and here. Where it is not, these tests
# cannot create a full or read-only filesystem and say so; where it is, a failing mount is a test failure.
CAN_MOUNT = os.geteuid() == 0 and shutil.which("mount") is not None
pytestmark = pytest.mark.skipif(not CAN_MOUNT, reason="mounting a tmpfs needs root and the mount tool")

from datakit.registry.store import Registry
from tests.conftest import chat, write_jsonl


@pytest.fixture
def tmpfs(tmp_path):
    """A 3 MB tmpfs at tmp_path/mnt, unmounted afterwards; `remount_ro()` makes it read-only."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True, text=True)
    assert proc.returncode == 0, f"cannot mount a tmpfs as root: {proc.stderr.strip()}"

    class Mount:
        path = mnt

        @staticmethod
        def remount_ro() -> None:
            subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)

    yield Mount
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_says_disk_full_and_publishes_nothing_partial(cli, tmpfs, tmp_path, external):
    root = tmpfs.path / "registry"
    small = write_jsonl(tmp_path / "small.jsonl", [chat(f"q{i}", f"a{i}") for i in range(20)])
    assert cli("ingest", str(small), "--name", "small", "--kind", "sft", registry=root).returncode == 0
    rng = __import__("random").Random(0)
    rows = [{"text": rng.randbytes(1500).hex()} for _ in range(4000)]
    big = write_jsonl(tmp_path / "big.jsonl", rows)  # 12 MB of hex: its Parquet cannot fit in what is left
    p = cli("ingest", str(big), "--name", "big", "--kind", "cpt", registry=root)
    assert p.returncode == 1 and "disk full" in p.stderr and "Traceback" not in p.stderr, p.stderr[-2000:]
    reg = Registry(root)
    assert reg.names() == ["small"] and reg.storage.dirs("datasets/big/parts") == []  # nothing partial, even unpublished
    v = cli("registry", "verify", "--json", registry=root, check_json=True)
    assert v.returncode == 0 and v.json["checked"] == 1


def test_a_read_only_registry_reads_and_every_write_names_the_root(cli, tmpfs, tmp_path):
    root = tmpfs.path / "registry"
    src = write_jsonl(tmp_path / "a.jsonl", [chat(f"q{i}", f"a{i}") for i in range(20)])
    assert cli("ingest", str(src), "--name", "faq", "--kind", "sft", registry=root).returncode == 0
    tmpfs.remount_ro()
    for args in (("registry", "ls", "--json"), ("registry", "show", "faq", "--json"), ("registry", "verify"),
                 ("export", "faq", "--format", "jsonl", "--out", str(tmp_path / "out.jsonl"))):
        p = cli(*args, registry=root)
        assert p.returncode == 0, (args, p.stderr)
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 20
    for args in (("ingest", str(src), "--name", "faq2", "--kind", "sft"), ("registry", "tag", "faq@v1", "prod"),
                 ("dedup", "faq", "--name", "faq-d")):
        p = cli(*args, registry=root)
        assert p.returncode == 2 and "read-only" in p.stderr and str(root) in p.stderr, (args, p.stderr)
        assert "Traceback" not in p.stderr
    assert json.loads(cli("registry", "ls", "--json", registry=root).stdout)[0]["name"] == "faq"
