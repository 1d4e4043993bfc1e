"""`datakit demo`: the whole loop on a fictional company, as the commands a user would type.

Each step prints the `datakit ...` command it runs, then runs it through the command runner it was given (the
CLI passes one that runs the command in this process), so the demo doubles as a script to copy. The demo never
imports the CLI: it sits beside it, on top of the library. Steps: pre-train a tiny base model (cached) -> build cpt, sft and identity
data -> general replay and probes -> dedup, decontam, two mixtures, splits, lint -> train both candidates
(CPT then SFT from the CPT adapter) -> evaluate base and both -> compare with a gate -> report.
"""

from __future__ import annotations

import json
import shlex
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from rich.console import Console

from datakit.demo import general
from datakit.demo.base_model import BaseSpec, pretrain
from datakit.errors import CheckFailed, DatakitError
from datakit.progress import progress_bar
from datakit.registry.rows import frame_to_records
from datakit.registry.store import Registry

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "acme"
CANDIDATES = ("domain-only", "mixed")

# Runs one `datakit` invocation (argv without the program name) and returns its exit code; a failed check
# may also raise CheckFailed, as the in-process CLI does.
CommandRunner = Callable[[list[str]], int]


class DemoConfig(BaseModel):
    """Where the demo writes and how big it runs (`--quick` shrinks the training and the suite)."""

    model_config = ConfigDict(extra="forbid")
    example: Path = EXAMPLE
    external: Path
    work: Path = Path("build/demo")  # base model and data files
    registry: Path = Path("build/demo/registry")
    runs: Path = Path("runs/demo")  # training runs, eval results, the report
    backend: str = "hf"
    base_model: Path | None = None  # a real model folder instead of the pre-trained tiny one
    base_cache: Path = Path("build/demo/base")  # where the tiny base is pre-trained once and reused
    base: BaseSpec = BaseSpec()
    overrides: list[str] = []  # `datakit train --set` flags for both candidates


def quick(cfg: DemoConfig) -> DemoConfig:
    """The --quick size: the same base model (cached) and steps, a shorter CPT stage. (The full demo already
    takes about 2 minutes on 2 cores; shorter SFT stops the domain-only model from learning the domain.)"""
    return cfg.model_copy(update={"overrides": ["stages.0.train.iters=60"]})


class Demo:
    def __init__(self, cfg: DemoConfig, console: Console, run_command: CommandRunner) -> None:
        self.cfg, self.console, self.run_command = cfg, console, run_command
        self.registry = cfg.registry
        self.timings: dict[str, float] = {}

    # ---- plumbing -----------------------------------------------------------------------------
    def datakit(self, *args: str | Path, ok_codes: tuple[int, ...] = (0,)) -> int:
        """Run one command, printing it first as a user would type it."""
        argv = [str(a) for a in args]
        self.console.print(f"[dim]$[/] [bold]datakit {shlex.join(argv)}[/]")
        try:
            code = self.run_command(["--registry", str(self.registry), *argv])
        except CheckFailed as e:  # a gate or lint verdict, which the demo expects for domain-only
            self.console.print(f"[yellow]exit {e.exit_code}:[/] {e}")
            code = e.exit_code
        if code not in ok_codes:
            raise DatakitError(f"demo step `datakit {shlex.join(argv)}` exited {code}")
        return code

    def step(self, title: str) -> Callable[[], None]:
        self.console.rule(f"[bold]{title}")
        start = time.monotonic()
        return lambda: self.timings.__setitem__(title, round(time.monotonic() - start, 1))

    # ---- the steps ----------------------------------------------------------------------------
    def base_model(self) -> Path:
        done = self.step("1. a base model that has something to forget")
        if self.cfg.base_model is not None:
            self.console.print(f"using {self.cfg.base_model}")
            done()
            return self.cfg.base_model
        web = web_texts(Registry(self.registry))
        with progress_bar("pre-training the tiny llama", self.cfg.base.steps, console=self.console,
                          fields={"loss": None}) as update:
            path = pretrain(self.cfg.base_cache, web, self.cfg.base, progress=lambda s, n, loss: update(s, loss=loss))
        info = json.loads((path / "pretrain.json").read_text())
        self.console.print(f"base model: {path} ({self.cfg.base.layers} layers x {self.cfg.base.hidden}, "
                           f"{info['documents']} documents, final loss {info['final_loss']:.3f}, {info['seconds']} s; "
                           "cached for the next run)")
        done()
        return path

    def data(self) -> None:
        ex, work = self.cfg.example, self.cfg.work
        done = self.step("2. build the company's data")
        self.datakit("build", "cpt", ex / "docs", "--unit", "sentence", "--name", "acme-cpt")
        self.datakit("build", "sft", "--from", "acme-cpt", "--name", "acme-sft")
        self.datakit("build", "identity", ex / "identity.yaml", "--name", "acme-identity")
        done()
        done = self.step("3. dedup and split the company's Q&A, general replay, the probes")
        # exact dedup on the question: one question with two different answers is ambiguous training data
        self.datakit("dedup", "acme-sft", "--name", "acme-sft-dedup")
        # group-aware: every phrasing of one fact lands on the same side
        self.datakit("split", "acme-sft-dedup", "--valid", "0.1", "--name", "acme-sft-split")
        self.datakit("split", "acme-cpt", "--valid", "0.1", "--name", "acme-cpt-split")
        replay = _write_jsonl(work / "general-replay.jsonl", general.replay_chats())
        self.datakit("ingest", replay, "--name", "general-replay", "--kind", "sft")
        probes = _write_jsonl(work / "probes.jsonl", demo_probes(Registry(self.registry), ex))
        self.datakit("ingest", probes, "--name", "demo-probes", "--kind", "probes")
        self.datakit("decontam", "general-replay", "--against", "demo-probes", "--name", "general-replay-clean")
        done()
        done = self.step("4. two mixtures, linted")
        for cand in CANDIDATES:
            self.datakit("mix", ex / f"mix-{cand}.yaml")
        self.datakit("lint", "mixed", ok_codes=(0, 1))
        done()

    def train(self) -> dict[str, Path]:
        adapters = {}
        for cand in CANDIDATES:
            done = self.step(f"5. train {cand}: CPT, then SFT from the CPT adapter")
            args = ["train", self.cfg.example / "recipes" / f"{cand}.yaml", "--run-id", "demo", "--backend",
                    self.cfg.backend]
            args += ["--base-model", self.cfg.base_model or self.cfg.base_cache,
                     "--set", f"output_dir={self.cfg.runs / 'train'}"]
            for kv in self.cfg.overrides:
                args += ["--set", kv]
            self.datakit(*args)
            adapters[cand] = self.cfg.runs / "train" / cand / "demo" / "2-sft" / "adapter"
            done()
        return adapters

    def evaluate(self, base: Path, adapters: dict[str, Path]) -> None:
        done = self.step("6. evaluate the base model and both candidates")
        suite, ev = self.cfg.example / "suite.yaml", self.cfg.runs / "eval"
        self.datakit("eval", suite, "--model", base, "--backend", self.cfg.backend, "--out", ev / "base")
        for cand, adapter in adapters.items():
            self.datakit("eval", suite, "--model", base, "--adapter", adapter, "--backend", self.cfg.backend,
                         "--out", ev / cand)
        done()
        done = self.step("7. compare against the gate")
        self.datakit("compare", ev / "base", *(ev / c for c in CANDIDATES), "--names", ",".join(["base", *CANDIDATES]),
                     "--gate", self.cfg.example / "gate.yaml", "--out", self.cfg.runs / "report", ok_codes=(0, 1))
        done()


def web_texts(reg: Registry) -> list[str]:
    """The c4 documents (ingested in step 0) as the base model's web text: the first ones pre-train it,
    the last ten are its held-out perplexity probes."""
    return [r["text"][:600] for r in _records(reg, "c4")]


def demo_probes(reg: Registry, example: Path = EXAMPLE) -> list[dict[str, Any]]:
    """General probes from the facts; domain probes from the cloze questions `build sft` wrote for the facts
    in acme-sft-split's training split (with the taught answer as the reference for `domain.answer_nll`) (held-out facts are never taught, so they measure nothing a tiny
    model can do); identity probes from examples/acme/probes.jsonl; bleed and perplexity probes."""
    domain = []
    for rec in _records(reg, "acme-sft-split"):
        q, a = rec["messages"][-2]["content"], rec["messages"][-1]["content"]
        if rec.get("split") == "train" and q.startswith(("Fill in the blank:", "빈칸을 채우세요:")):
            domain.append({"id": f"domain-{rec['id'][:10]}", "type": "knowledge", "group": "domain",
                           "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                           "expect": a.split(".", 1)[0].split(":", 1)[0].strip()})
    fixed = [json.loads(line) for line in (example / "probes.jsonl").read_text().splitlines() if line.strip()]
    held_out = [t[:400] for t in web_texts(reg)[-10:]]
    return general.probes() + general.bleed_probes() + general.perplexity_probes(held_out) + domain + fixed


def _records(reg: Registry, ref: str) -> list[dict[str, Any]]:
    m = reg.resolve(ref)
    return list(frame_to_records(m.kind, reg.load(m)))


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def keep_previous_run(runs: Path) -> Path | None:
    """Make room for a fresh run without losing the last one: `runs` moves to `<runs>.prev` (replacing an older
    .prev); returns where it went, or None when there was nothing to keep."""
    if not runs.exists():
        return None
    prev = runs.with_name(runs.name + ".prev")
    if prev.is_dir() and not prev.is_symlink():
        shutil.rmtree(prev)
    elif prev.exists() or prev.is_symlink():
        prev.unlink()
    runs.rename(prev)  # same folder, so a rename: the whole tree moves at once
    return prev


def run_demo(cfg: DemoConfig, console: Console, run_command: CommandRunner) -> Path:
    """The whole loop, each step through `run_command`; returns the report folder (printed last)."""
    from datakit.demo.summary import summarize

    start = time.monotonic()
    if not cfg.external.is_dir():
        raise DatakitError(f"{cfg.external}: demo data folder not found; pass --data path/to/shared/data/external")
    demo = Demo(cfg, console, run_command)
    cfg.work.mkdir(parents=True, exist_ok=True)
    if (prev := keep_previous_run(cfg.runs)) is not None:  # a fresh run each time; the cache and registry stay
        console.print(f"previous demo run moved to {prev}", markup=False, highlight=False)
    done = demo.step("0. ingest real external datasets (7 formats)")
    demo.datakit("demo", "--ingest-only", "--data", cfg.external)
    done()
    base = demo.base_model()
    demo.data()
    adapters = demo.train()
    demo.evaluate(base, adapters)
    report = summarize(cfg.runs / "report", timings={**demo.timings, "total": round(time.monotonic() - start, 1)},
                       console=console)
    return report
