"""A registry in a bucket vs on local disk: commit, read back, one column, push and pull.

    python benchmarks/remote_bench.py [--rows 1000000] [--rounds 3] [--out benchmarks/results/remote_bench.json]

The bucket is moto's S3 server on loopback, in its own process (what `make test` starts, no Docker); a real
bucket adds network latency and bandwidth that this does not measure. Rounds alternate local and S3, medians
reported. Rows are ChatML SFT conversations (two turns, ~60 words), committed in parts of 100,000 rows.
- commit: stage the parts and publish the version (ids, content hash, Parquet, manifest)
- load: every row back as a DataFrame
- one column: the `id` column of the version, scanned straight from the store (polars reads only that column's
  pages), against downloading every part whole and reading the column from the copies
- push / pull: the whole dataset local -> bucket -> a fresh local registry, MB/s of Parquet moved
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PART_ROWS = 100_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_s3() -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(urllib.request.Request(f"{endpoint}/bench", method="PUT")).read()
            break
        except OSError:
            time.sleep(0.1)
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench-secret", AWS_REGION="us-east-1",
                      AWS_ENDPOINT_URL=endpoint, AWS_ALLOW_HTTP="true")
    return proc, endpoint


def chat_frame(n: int):
    from datakit.registry.rows import records_to_frame

    words = "the warranty covers panels inverters and batteries for ten years after installation".split()
    rows = [{"messages": [{"role": "user", "content": f"question {i}: what does item {i % 977} cover?"},
                          {"role": "assistant", "content": " ".join(words[(i + k) % len(words)] for k in range(50))}]}
            for i in range(n)]
    return records_to_frame("sft", rows).drop("id")


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def one_round(root: str, df, name: str) -> dict:
    from datakit.registry.store import Registry

    reg = Registry(root)

    def commit():
        with reg.stage(name, "sft") as st:
            for a in range(0, df.height, PART_ROWS):
                st.write(df[a:a + PART_ROWS])
            return st.commit(op="bench")[0]

    t_commit, m = timed(commit)
    t_load, back = timed(lambda: Registry(root).load(m))
    assert back.height == df.height
    t_col, ids = timed(lambda: Registry(root).scan(m).select("id").collect())

    def download_then_read():
        import io

        import polars as pl
        parts = [Registry(root).read_file(m, f) for f in m.data_files]
        return pl.concat([pl.read_parquet(io.BytesIO(p), columns=["id"]) for p in parts])

    t_whole, ids2 = timed(download_then_read)
    assert ids.equals(ids2)
    return {"commit_s": t_commit, "load_s": t_load, "one_column_s": t_col, "download_whole_then_column_s": t_whole,
            "bytes": sum(e.bytes for e in m.files.values())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "remote_bench.json")
    a = ap.parse_args()
    proc, _ = start_s3()
    try:
        df = chat_frame(a.rows)
        runs: dict[str, list[dict]] = {"local": [], "s3": []}
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(a.rounds):
                for where in (("local", "s3") if r % 2 == 0 else ("s3", "local")):
                    root = str(Path(tmp) / "local") if where == "local" else "s3://bench/registry"
                    runs[where].append(one_round(root, df, f"chat-{r}"))
                    print(where, r, {k: round(v, 2) for k, v in runs[where][-1].items()}, file=sys.stderr)
            from datakit.registry.remotes import copy_versions, select
            from datakit.registry.store import Registry

            src = Registry(str(Path(tmp) / "local"))
            todo = select(src, "chat-0", every=False)
            mb = sum(e.bytes for m in todo for e in m.files.values()) / 1e6
            t_push, _ = timed(lambda: copy_versions(src, Registry("s3://bench/pushed"), todo))
            t_pull, _ = timed(lambda: copy_versions(Registry("s3://bench/pushed"), Registry(str(Path(tmp) / "pulled")),
                                                    select(Registry("s3://bench/pushed"), "chat-0", every=False)))
    finally:
        proc.terminate()
    med = {w: {k: round(statistics.median(x[k] for x in rs), 3) for k in rs[0]} for w, rs in runs.items()}
    result = {"benchmark": "registry on local disk vs an S3 bucket (moto server on loopback)",
              "rows": a.rows, "rounds": a.rounds, "machine": {"cpus": os.cpu_count()},
              "local": med["local"], "s3": med["s3"],
              "rows_per_s": {w: {"commit": round(a.rows / med[w]["commit_s"]), "load": round(a.rows / med[w]["load_s"])}
                             for w in med},
              "push_mb_per_s": round(mb / t_push, 1), "pull_mb_per_s": round(mb / t_pull, 1), "dataset_mb": round(mb, 1),
              "one_column_speedup_vs_download": round(med["s3"]["download_whole_then_column_s"] / med["s3"]["one_column_s"], 1)}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
