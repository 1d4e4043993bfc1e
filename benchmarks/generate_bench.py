"""Generation through a real `mlx_lm.server`: datakit `generate_all` at concurrency 1, 4 and 16 vs the plain
`openai` client, plus the journal's own cost per row.

    python benchmarks/generate_bench.py [--requests 128] [--repeats 3] [--journal-rows 20000]
                                        [--out benchmarks/results/generate_bench.json]

A tiny Llama (2 layers, 64 wide) is built on the spot and served by `python -m mlx_lm server` on a free loopback
port; every contender sends the same distinct chat requests (max_tokens 16, temperature 0) and runs in its own
process, so peak memory is the client's own (the server is shared and not counted). Requests/s counts answered
requests per second of wall time; latency is per request (datakit: Result.seconds). The contenders take turns
for --repeats rounds and each reports its median round (other work shares the 2 cores).
- datakit: `generate_all` with a fresh journal, concurrency 1, 4 and 16 (retries and backoff as shipped). It sends
  `seed` in every request, and mlx_lm.server batches only requests without one, so one more run at 16 sends
  `extra={"seed": None}` (a JSON null) to let the server batch.
- openai loop: what a user would otherwise write, `OpenAI().chat.completions.create` in a for loop.
- openai gather: `asyncio.gather` over every request with `AsyncOpenAI`, no bound. Both send the same body as
  datakit and have no journal and no retries (max_retries=0).
- resume: the concurrency-4 job run again on its complete journal (journal load included): nothing is sent.
- journal: `Journal.append` of realistic result rows (one fsync per line, as shipped) next to a plain
  write+flush loop, the time to reopen (load) a journal of that size, and to resume that whole job from it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import peak_rss_mb, run_child

MODEL = {"layers": 2, "hidden": 64}
MAX_TOKENS = 16
TOPICS = ["billing", "shipping", "warranty", "returns", "pricing", "security", "support", "refunds"]


def requests(n: int) -> list[list[dict]]:
    return [[{"role": "user", "content": f"Question {i}: how does {TOPICS[i % len(TOPICS)]} work for plan {i % 7}?"}]
            for i in range(n)]


def latency(seconds: list[float]) -> dict:
    s = sorted(seconds) or [0.0]
    pick = lambda q: s[min(len(s) - 1, round(q * (len(s) - 1)))]  # noqa: E731 - nearest rank
    return {"p50_ms": round(pick(0.5) * 1000, 1), "p95_ms": round(pick(0.95) * 1000, 1)}


# ---- contenders, each in its own process ---------------------------------------------------------


def run_datakit(url: str, n: int, concurrency: int, journal: Path, no_seed: bool = False) -> dict:
    import openai  # noqa: F401 - imported before the clock, as in the openai contenders (datakit imports it lazily)

    from datakit.generate import Journal, Request, generate_all

    extra = {"seed": None} if no_seed else {}
    reqs = [Request(messages=m, max_tokens=MAX_TOKENS, temperature=0.0, extra=extra) for m in requests(n)]
    t = time.perf_counter()
    with Journal(journal) as j:
        res = generate_all(f"openai:default_model@{url}", reqs, journal=j, concurrency=concurrency)
    wall = time.perf_counter() - t
    return {"wall_s": wall, "ok": sum(r.ok for r in res), "failed": sum(not r.ok for r in res),
            "retries": sum(max(0, r.attempts - 1) for r in res), "from_journal": sum(r.from_journal for r in res),
            **latency([r.seconds for r in res if r.ok and not r.from_journal])}


def run_openai_loop(url: str, n: int) -> dict:
    import openai

    client = openai.OpenAI(base_url=url, api_key="not-needed", max_retries=0)
    secs, failed = [], 0
    t = time.perf_counter()
    for m in requests(n):
        s = time.perf_counter()
        try:
            client.chat.completions.create(model="default_model", messages=m, max_tokens=MAX_TOKENS, temperature=0.0,
                                           seed=0)
            secs.append(time.perf_counter() - s)
        except openai.OpenAIError:
            failed += 1
    return {"wall_s": time.perf_counter() - t, "ok": n - failed, "failed": failed, "retries": 0, **latency(secs)}


def run_openai_gather(url: str, n: int) -> dict:
    import openai

    async def main() -> tuple[list, float]:
        client = openai.AsyncOpenAI(base_url=url, api_key="not-needed", max_retries=0)

        async def one(m: list[dict]) -> float:
            s = time.perf_counter()
            await client.chat.completions.create(model="default_model", messages=m, max_tokens=MAX_TOKENS,
                                                 temperature=0.0, seed=0)
            return time.perf_counter() - s

        t = time.perf_counter()
        out = await asyncio.gather(*(one(m) for m in requests(n)), return_exceptions=True)
        wall = time.perf_counter() - t
        await client.close()
        return out, wall

    out, wall = asyncio.run(main())
    secs = [x for x in out if isinstance(x, float)]
    errors = sorted({type(x).__name__ for x in out if isinstance(x, BaseException)})
    return {"wall_s": wall, "ok": len(secs), "failed": n - len(secs), "retries": 0, "errors": errors, **latency(secs)}


def run_journal(work: Path, rows: int) -> dict:
    """Rows as generate_all writes them for `rows` distinct requests (an answer of 200-1,200 characters each),
    appended one by one; then the journal reopened, then the whole job resumed from it (nothing is sent)."""
    import openai  # noqa: F401 - imported before the clock

    from datakit.generate import Journal, Request, Result, generate_all

    spec = "openai:default_model@http://127.0.0.1:9/v1"  # never contacted: every request is in the journal
    reqs = [Request(messages=m, max_tokens=MAX_TOKENS) for m in requests(rows)]
    rng = random.Random(0)
    words = ["the", "plan", "billing", "refund", "step", "check", "account", "서울", "item", "service", "confirm"]
    data = [Result(key=r.key(spec), text=" ".join(rng.choices(words, k=rng.randint(35, 200))),
                   finish_reason=rng.choice(["stop", "length"]), attempts=1, seconds=rng.uniform(0.05, 3.0)
                   ).model_dump(exclude={"from_journal"}) for r in reqs]
    path, each = work / "journal.jsonl", []
    with Journal(path) as j:
        for row in data:
            t = time.perf_counter()
            j.append(row)
            each.append(time.perf_counter() - t)
    t = time.perf_counter()
    with open(work / "plain.jsonl", "a", encoding="utf-8") as fh:  # the same lines, flushed but never fsync'd
        for row in data:
            fh.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
            fh.flush()
    plain_s = time.perf_counter() - t
    t = time.perf_counter()
    with Journal(path) as j:
        loaded = j.counts()["done"]
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    with Journal(path) as j:
        resumed = sum(r.from_journal for r in generate_all(spec, reqs, journal=j))
    resume_s = time.perf_counter() - t
    each.sort()
    return {"rows": rows, "file_mb": round(path.stat().st_size / 2**20, 1),
            "append_us_per_row": round(sum(each) / rows * 1e6, 1), "append_p50_us": round(each[rows // 2] * 1e6, 1),
            "plain_write_us_per_row": round(plain_s / rows * 1e6, 1),
            "load_s": round(load_s, 3), "load_rows_per_s": round(loaded / load_s),
            "resume_s": round(resume_s, 3), "resume_requests_per_s": round(resumed / resume_s)}


def child(which: str, a: argparse.Namespace) -> None:
    if which == "journal":
        res = run_journal(a.work, a.journal_rows)
    elif which == "openai-loop":
        res = run_openai_loop(a.url, a.requests)
    elif which == "openai-gather":
        res = run_openai_gather(a.url, a.requests)
    else:
        res = run_datakit(a.url, a.requests, a.concurrency, a.work / a.journal, no_seed=which == "datakit-noseed")
    res["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(res))


# (label, child, concurrency, journal): a round's rerun reopens the journal its concurrency-4 run completed.
CONTENDERS = [
    ("datakit `generate_all`", "datakit", 1, "c1"),
    ("datakit `generate_all`", "datakit", 4, "c4"),
    ("datakit `generate_all`", "datakit", 16, "c16"),
    ('datakit, `extra={"seed": None}` (server batches)', "datakit-noseed", 16, "noseed"),
    ("openai `OpenAI` for loop", "openai-loop", 1, ""),
    ("openai `AsyncOpenAI` gather, unbounded", "openai-gather", 0, ""),
    ("datakit rerun on the complete concurrency-4 journal", "datakit", 4, "c4"),
]


def measure(contender: tuple, url: str, n: int, work: Path, round_: int) -> dict:
    _, which, concurrency, journal = contender
    r = run_child(__file__, which, "--url", url, "--requests", str(n), "--work", str(work),
                  "--concurrency", str(concurrency or n), "--journal", f"{journal or which}-r{round_}.jsonl")
    return {"requests_per_s": round(r.pop("ok") / r["wall_s"], 1),
            **{k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()}}


def median_run(contender: tuple, runs: list[dict]) -> dict:
    """The run with the median requests/s (the 2 cores are shared, so single runs wander), plus every round's rate."""
    mid = sorted(runs, key=lambda r: r["requests_per_s"])[len(runs) // 2]
    return {"contender": contender[0], "concurrency": contender[2] or "all", **mid,
            "requests_per_s_rounds": [r["requests_per_s"] for r in runs]}


# ---- the server ----------------------------------------------------------------------------------


def start_server(model: Path, work: Path) -> tuple[subprocess.Popen, str, float]:
    """`mlx_lm server` on a free loopback port, logging to a file (a never-read pipe fills and stalls it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (work / "hf-cache").mkdir()  # its /v1/models scans the HF cache and fails when there is none
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(work / "hf-cache")}
    log = open(work / "server.log", "wb")  # noqa: SIM115 - lives as long as the server
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "mlx_lm", "server", "--model", str(model), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=log, stderr=log, env=env)
    url = f"http://127.0.0.1:{port}/v1"
    while True:
        try:
            urllib.request.urlopen(url + "/models", timeout=1).read()
            break
        except OSError:
            if proc.poll() is not None or time.perf_counter() - t > 60:
                proc.kill()
                raise SystemExit(f"mlx_lm server did not start:\n{(work / 'server.log').read_text()[-2000:]}") from None
            time.sleep(0.1)
    return proc, url, time.perf_counter() - t


def warm_up(url: str) -> None:
    body = {"model": "default_model", "messages": [{"role": "user", "content": "warm up"}], "max_tokens": MAX_TOKENS}
    for seed in (0, None):  # one-at-a-time path and batched path
        req = urllib.request.Request(url + "/chat/completions", data=json.dumps({**body, "seed": seed}).encode(),
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=60).read()


def table(result: dict) -> str:
    lines = ["| contender | concurrency | requests/s | p50 latency | p95 latency | failed | retries | wall | "
             "peak memory |", "|---|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        lines.append(f"| {r['contender']} | {r['concurrency']} | {r['requests_per_s']:,} | {r['p50_ms']} ms | "
                     f"{r['p95_ms']} ms | {r['failed']} | {r['retries']} | {r['wall_s']} s | "
                     f"{round(r['peak_rss_mb'])} MB |")
    j = result["journal"]
    lines += ["", "| journal rows | file | append, fsync per line (mean / median) | plain write+flush | "
              "reopen (load) | resume the whole job |", "|---|---|---|---|---|---|",
              f"| {j['rows']:,} | {j['file_mb']} MB | {j['append_us_per_row']} / {j['append_p50_us']} µs/row | "
              f"{j['plain_write_us_per_row']} µs/row | {j['load_rows_per_s']:,} rows/s ({j['load_s']} s) | "
              f"{j['resume_requests_per_s']:,} requests/s ({j['resume_s']} s) |"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=128)
    ap.add_argument("--journal-rows", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=3, help="rounds over every contender; each reports its median")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "generate_bench.json")
    ap.add_argument("--child")
    ap.add_argument("--url")
    ap.add_argument("--work", type=Path)
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--journal", default="j.jsonl")
    a = ap.parse_args()
    if a.child:
        child(a.child, a)
        return
    import mlx_lm

    from datakit.tiny import build_llama

    rounds = range(a.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = build_llama(work / "model", **MODEL)
        server, url, startup_s = start_server(model, work)
        try:
            warm_up(url)
            by = [[] for _ in CONTENDERS]
            for r in rounds:  # round-robin, so a noisy minute on the shared cores hits every contender alike
                for i, c in enumerate(CONTENDERS):
                    by[i].append(measure(c, url, a.requests, work, r))
            runs = [median_run(c, got) for c, got in zip(CONTENDERS, by)]
        finally:
            server.kill()
            server.wait(timeout=10)
        result = {
            "benchmark": "chat requests through a real mlx_lm.server (tiny Llama, CPU) and the generation journal",
            "model": MODEL, "requests": a.requests, "repeats": a.repeats, "max_tokens": MAX_TOKENS,
            "temperature": 0.0,
            "server": {"mlx_lm": mlx_lm.__version__, "startup_s": round(startup_s, 2)},
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "runs": runs,
            "journal": run_child(__file__, "journal", "--work", str(work), "--journal-rows", str(a.journal_rows)),
        }
    result["journal"]["peak_rss_mb"] = round(result["journal"]["peak_rss_mb"])
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(table(result))


if __name__ == "__main__":
    main()
