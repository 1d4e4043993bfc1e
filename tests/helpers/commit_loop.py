"""Test helper: commit versions of one dataset as fast as possible (killed by the crash test).

    python -m tests.helpers.commit_loop REGISTRY NAME START COUNT [--wait FILE] [--pause-after-parts S]
Commits COUNT versions (forever if COUNT is 0) whose rows are derived from START + i, each in
three parts, printing "ready" first and "committed <version> <hash>" after each commit. With
--pause-after-parts, every commit after the first prints "parts-written" once its parts are written and waits
S seconds before publishing: a kill then lands inside a commit whatever the machine's speed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import polars as pl

from datakit.registry.rows import records_to_frame
from datakit.registry.store import Registry

ROWS = 600
_BASE: list[pl.DataFrame] = []


def frame_for(i: int) -> pl.DataFrame:
    """Rows unique to iteration i, built cheaply so the loop spends its time committing."""
    if not _BASE:
        _BASE.append(records_to_frame("sft", [
            {"messages": [{"role": "user", "content": f"question {k}"}, {"role": "assistant", "content": f"answer {k} " * 4}]}
            for k in range(ROWS)]).drop("id"))
    return _BASE[0].with_columns(group_id=pl.lit(f"iteration-{i}"))


def main() -> None:
    root, name, start, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    reg = Registry(root)
    print("ready", flush=True)
    if "--wait" in sys.argv:  # start together with the other writers
        barrier = Path(sys.argv[sys.argv.index("--wait") + 1])
        while not barrier.exists():
            time.sleep(0.001)
    pause = float(sys.argv[sys.argv.index("--pause-after-parts") + 1]) if "--pause-after-parts" in sys.argv else None
    i = start
    while count == 0 or i < start + count:
        df = frame_for(i)
        with reg.stage(name, "sft") as st:
            for part in (df[:200], df[200:400], df[400:]):
                st.write(part)
            if pause is not None and i > start:
                print("parts-written", flush=True)
                time.sleep(pause)
            m, _ = st.commit(op="loop", params={"i": i})
        print(f"committed {m.version} {m.content_hash}", flush=True)
        i += 1


if __name__ == "__main__":
    main()
