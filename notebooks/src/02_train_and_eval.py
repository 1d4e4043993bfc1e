# %% [markdown]
# # 02 · Train and evaluate: recipes, eval suites, gates, the report
#
# Notebook 01 built the training data for Acme's assistant. This one closes the loop on a tiny model:
#
# 1. a **base model** that knows some general facts (so it has something to forget);
# 2. a **recipe**: CPT on the company's text, then SFT on the `mixed` mixture from the CPT adapter;
# 3. an **eval suite** run on the base model and on the tuned one;
# 4. a **gate**: did the fine-tune learn the domain and its identity without forgetting the rest?
# 5. the **report**, read back as data.
#
# Everything runs offline on a CPU. The base model is a 4-layer Llama pre-trained from scratch in
# about 1–2 minutes the first time, then cached in `build/demo/base` (the same cache `datakit demo`
# uses). The fine-tune here is shorter than the demo's, so it takes well under a minute.

# %%
import json
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

import polars as pl


def find_repo(start: Path) -> Path:
    """The datakit checkout this notebook belongs to (run from the repo root or from notebooks/)."""
    for p in [start, *start.parents]:
        if (p / "pyproject.toml").is_file() and (p / "datakit").is_dir():
            return p
    raise RuntimeError(f"no datakit checkout at or above {start}; start Jupyter inside the repository")


REPO = find_repo(Path.cwd().resolve())
os.chdir(REPO)
ACME = REPO / "examples" / "acme"
EXTERNAL = Path(os.environ.get("DATAKIT_EXTERNAL_DATA", REPO.parent / "shared" / "data" / "external"))
WORK = Path(os.environ.get("DATAKIT_NB_WORK", REPO / "build" / "notebooks")).resolve() / "02_train_and_eval"
shutil.rmtree(WORK, ignore_errors=True)
WORK.mkdir(parents=True)
REG = WORK / "registry"
# shared with `datakit demo`: pre-trained once per machine (DATAKIT_BASE_CACHE moves it, as the tests do)
BASE = Path(os.environ.get("DATAKIT_BASE_CACHE") or REPO / "build" / "demo" / "base")
for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_PROGRESS_BARS"):
    os.environ.setdefault(var, "1")
# progress bars drawn for a terminal only clutter a notebook
warnings.filterwarnings("ignore", message='install "ipywidgets"')
warnings.filterwarnings("ignore", message="IProgress not found")
pl.Config.set_fmt_str_lengths(100)
pl.Config.set_tbl_rows(20)

print("python   ", sys.executable)
print("repo     ", REPO)
print("external ", EXTERNAL, "" if EXTERNAL.is_dir() else "  <- MISSING: set DATAKIT_EXTERNAL_DATA")
print("workspace", WORK)

# %%
from datakit.cli import app  # importing datakit.cli registers every command on the app
from datakit.registry.store import Registry
from datakit.registry.rows import frame_to_records

reg = Registry(REG)


class ExitCode(int):
    def __repr__(self) -> str:
        return f"exit code {int(self)}"


def datakit(*args) -> ExitCode:
    """`datakit --registry REG ARGS...`, run in this process; returns the exit code (1: a check found a problem)."""
    argv = [str(a) for a in args]
    print("$ datakit", " ".join(argv))
    return ExitCode(app(["--registry", str(REG), *argv], standalone_mode=False) or 0)


def records(ref: str) -> list[dict]:
    m = reg.resolve(ref)
    return list(frame_to_records(m.kind, reg.load(m)))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path

# %% [markdown]
# ## 1. The data, as notebook 01 built it
#
# The same commands as notebook 01, without the commentary: build the company's CPT text, Q&A and
# identity data; dedup and split; general replay; the probes of the eval suite; decontaminate; mix.

# %%
from datakit.demo import general


# The demo's own probe builder: general facts, bleed, held-out web text (perplexity), the company's
# taught facts as cloze questions, and the identity probes of examples/acme/probes.jsonl.
from datakit.demo.loop import demo_probes, web_texts  # noqa: E402


steps = [
    ("ingest", EXTERNAL / "c4_demo.jsonl", "--name", "c4", "--kind", "cpt"),
    ("build", "cpt", ACME / "docs", "--unit", "sentence", "--name", "acme-cpt"),
    ("build", "sft", "--from", "acme-cpt", "--name", "acme-sft"),
    ("build", "identity", ACME / "identity.yaml", "--name", "acme-identity"),
    ("dedup", "acme-sft", "--name", "acme-sft-dedup"),
    ("split", "acme-sft-dedup", "--valid", "0.1", "--name", "acme-sft-split"),
    ("split", "acme-cpt", "--valid", "0.2", "--name", "acme-cpt-split"),
    ("ingest", write_jsonl(WORK / "general-replay.jsonl", general.replay_chats()),
     "--name", "general-replay", "--kind", "sft"),
]
for step in steps:
    datakit(*step)
datakit("ingest", write_jsonl(WORK / "probes.jsonl", demo_probes(reg, ACME)), "--name", "demo-probes", "--kind", "probes")
datakit("decontam", "general-replay", "--against", "demo-probes", "--name", "general-replay-clean")
datakit("mix", ACME / "mix-mixed.yaml")
datakit("lint", "mixed")

# %% [markdown]
# ## 2. A base model with something to forget
#
# Forgetting can only be measured on a model that knows something. `datakit.demo.base_model.pretrain`
# builds a byte-level BPE tokenizer with a ChatML template and pre-trains a 4-layer, 128-wide Llama
# from scratch on the general facts of `datakit/demo/general.py` (capitals, colors, animal sounds,
# opposites, weekdays, sums; in English and Korean), a few generic "I am a helpful assistant" chats,
# background sentences, and the first c4 web documents. It is cached by a hash of its spec and
# corpus: the first run takes a minute or two, later runs (and `datakit demo`) reuse it.
#
# With a real model you skip this step and point the recipe at its folder (`--base-model PATH`);
# `docs/real-models.md` lists what else changes (learning rates, memory, stop tokens).

# %%
from datakit.demo.base_model import BaseSpec, pretrain

web = web_texts(reg)  # the same web text `datakit demo` gives it (same cache key)
start = time.monotonic()
pretrain(BASE, web, BaseSpec(),
         progress=lambda step, total, loss: print(f"  step {step}/{total} loss {loss:.3f}") if step % 100 == 0 else None)
info = json.loads((BASE / "pretrain.json").read_text())
print(f"base model in {BASE} ({time.monotonic() - start:.1f} s here; "
      f"pre-training took {info['seconds']} s on {info['documents']} documents, final loss {info['final_loss']:.3f})")

# %% [markdown]
# ## 3. The recipe
#
# One YAML per experiment (*FIELD_NOTES 6*). `examples/acme/recipes/mixed.yaml` runs two stages
# (*FIELD_NOTES 1*): **CPT** on the company's sentences teaches the facts, then **SFT** on the `mixed`
# mixture (domain Q&A + identity at 30% + general replay) makes them answerable in chat. The SFT stage
# starts from the CPT adapter, so the result is one LoRA adapter holding both. Data are registry
# refs; the run pins them to versions and content hashes in `lineage.json`.

# %%
RECIPE = ACME / "recipes" / "mixed.yaml"
print(RECIPE.read_text())

# %% [markdown]
# `datakit demo` trains the recipe as written. Here we shorten it to about half the steps with
# overrides, the same `KEY=VALUE` paths `datakit train --set` takes: overrides beat the YAML, and
# nothing else is changed behind your back. `base_model` and `output_dir` point at the shared tiny
# model and this notebook's workspace.

# %%
from datakit.train.recipe import load_recipe

CPT_ITERS, SFT_EPOCHS = 60, 10  # the recipe says 100 and 12
overrides = {"base_model": str(BASE), "output_dir": str(WORK / "runs"),
             "stages.0.train.iters": CPT_ITERS, "stages.1.train.epochs": SFT_EPOCHS}
recipe = load_recipe(RECIPE, overrides=overrides)
pl.DataFrame([{"stage": s.stage, "data": s.data, "lora rank": s.lora.rank, "iters": s.train.iters,
               "epochs": s.train.epochs, "batch": s.train.batch_size, "lr": s.train.lr,
               "max_seq_len": s.train.max_seq_len} for s in recipe.stages])

# %% [markdown]
# **Dry run first.** `--dry-run` checks everything that can be checked without training (the base model
# folder, every data ref, the stage kinds, split sizes, the adapter chain) and prints the plan. Stage 2
# starts from stage 1's adapter.

# %%
datakit("train", RECIPE, "--dry-run", "--run-id", "nb", "--base-model", BASE, "--set", f"output_dir={WORK / 'runs'}",
        "--set", f"stages.0.train.iters={CPT_ITERS}", "--set", f"stages.1.train.epochs={SFT_EPOCHS}")

# %% [markdown]
# A broken recipe fails at load, with **every** problem at once, each naming the field, the value given
# and the rule:

# %%
from datakit.errors import DatakitError

bad = WORK / "bad-recipe.yaml"
bad.write_text("""name: Acme SFT
backend: tpu
base_model: build/demo/base
stages:
  - stage: sft
    data: mixed
    train: {lr: -1, batch_size: 0}
""")
try:
    load_recipe(bad)
except DatakitError as e:
    print(e)

# %% [markdown]
# ## 4. Train
#
# `datakit.train.runner.run` is what `datakit train` calls. Per stage it exports the data version to the
# backend's format, runs **preflight** (the chat template renders every row, every assistant turn ends
# with the end-of-turn token and that token is in the stop set, lengths fit), trains with loss on
# assistant tokens only, and after a chat stage runs a **stop check**: do greedy generations end on the
# end-of-turn token (*FIELD_NOTES 3.4*)? The engines' own log lines go to stderr; the numbers also land
# in each stage's `metrics.jsonl`.

# %%
import contextlib
import io

from datakit.train.runner import run

start = time.monotonic()
engine_log = io.StringIO()
with contextlib.redirect_stderr(engine_log):  # short notebook; print(engine_log.getvalue()) shows the engine's log
    plan, results = run(reg, recipe, recipe_dir=RECIPE.parent, run_id="nb")
print(f"trained in {time.monotonic() - start:.0f} s: {plan.run_dir}")
ADAPTER = Path(results[-1]["adapter"])
pl.DataFrame([{"stage": r["stage"], "steps": r["steps"], "best val loss": r["best_val_loss"],
               "at step": r["best_step"], "adapter": str(Path(r["adapter"]).relative_to(WORK)),
               "stopped on <|im_end|>": f"{r['stop_check']['stopped']}/{r['stop_check']['prompts']}"
               if "stop_check" in r else "-"} for r in results])

# %% [markdown]
# The run folder holds the pinned recipe, `lineage.json` (data refs with content hashes, the base
# model's fingerprint, library versions, seed) and per stage the exported data, `preflight.json`,
# `metrics.jsonl`, `adapter/`, `checkpoints/`, `result.json` and `stopcheck.json`. The validation loss
# below is on held-out *facts*, which training cannot teach, so it stops falling early and climbs as
# the model fits the training facts. That is why the recipe hands on the last adapter
# (`final_adapter: last`) rather than the one with the best validation loss: here the validation loss
# shows memorization; it does not pick the checkpoint.

# %%
run_dir = Path(plan.run_dir)
lineage = json.loads((run_dir / "lineage.json").read_text())
print(json.dumps({k: lineage[k] for k in ("data", "seed", "versions")}, indent=1))
sft_metrics = pl.read_ndjson(run_dir / "2-sft" / "metrics.jsonl", infer_schema_length=None)  # one row per report: train or validation loss
(sft_metrics.group_by("step").agg(pl.col("train_loss").drop_nulls().first(), pl.col("val_loss").drop_nulls().first())
 .filter(pl.col("val_loss").is_not_null()).sort("step"))

# %% [markdown]
# ## 5. Evaluate base and tuned
#
# `examples/acme/suite.yaml` names the probes (`demo-probes`, built above), who the assistant must say
# it is, and the domain terms that must not leak into general answers. Generation is greedy and
# batched through the model's chat template, stopping on its end-of-turn token. Each probe type has a
# metric, reported per type and per group:
#
# | metric | probes | good when |
# |---|---|---|
# | `general.accuracy` | general facts the base model knows, in a phrasing the fine-tuning data never uses | stays near the base (forgetting shows here first) |
# | `domain.accuracy` | cloze questions on the company's taught facts ("Fill in the blank: …") | rises from ~0 |
# | `knowledge.accuracy` | every knowledge probe, general and domain pooled | – |
# | `identity.pass_rate` | "Who are you?", "Who made you?" in en/ko: the answer names Acme Assistant and Acme, and no other vendor | rises to ~1 |
# | `bleed.rate` (= `general.rate`) | general questions whose answer must not mention Acme, Fusion Core, … | stays ~0 ("colored glasses", *FIELD_NOTES 2*) |
# | `perplexity.general` (= `general.nll`) | NLL per token of held-out web text (lower is better) | does not rise |
#
# Every item is kept in `results.json` (prompt, output, score, pass/fail) so the comparison can be
# paired item by item.

# %%
from datakit.evals.run import evaluate

SUITE = ACME / "suite.yaml"
EVAL = WORK / "eval"
start = time.monotonic()
base_res = evaluate(reg, SUITE, backend="hf", model=BASE, out_dir=EVAL / "base")
tuned_res = evaluate(reg, SUITE, backend="hf", model=BASE, adapter=ADAPTER, out_dir=EVAL / "mixed")
print(f"evaluated {len(base_res.items)} probes on each model in {time.monotonic() - start:.0f} s")
pl.DataFrame([{"metric": name, "base": round(base_res.metrics[name].value, 3),
               "tuned": round(m.value, 3), "± stderr (tuned)": round(m.stderr, 3), "n": m.n}
              for name, m in tuned_res.metrics.items() if name in base_res.metrics])

# %% [markdown]
# Numbers hide what the model actually said. The same probes, side by side:

# %%
base_items = {it.id: it for it in base_res.items}
show = [it for it in tuned_res.items if it.type == "identity"][:3]
show += [it for it in tuned_res.items if it.group == "domain"][:2]
show += [it for it in tuned_res.items if it.group == "general" and it.type == "knowledge"][:2]
pl.DataFrame([{"probe": it.id, "prompt": it.prompt[:60], "base says": (base_items[it.id].output or "")[:60],
               "pass": base_items[it.id].passed, "tuned says": (it.output or "")[:60], "pass ": it.passed}
              for it in show])

# %% [markdown]
# ## 6. Compare against the gate
#
# A gate file states what "no regression" means. `examples/acme/gate.yaml`:

# %%
print((ACME / "gate.yaml").read_text())

# %% [markdown]
# `compare` pairs the runs on the same items: paired bootstrap intervals for each change, exact
# McNemar tests for pass/fail flips, sign-flip tests for continuous scores such as `general.answer_nll`
# (the teacher-forced NLL of each general fact's reference answer), Holm correction across the gates of a
# candidate. A relative gate (`max_drop`) with `require_significance` fails only when the drop is past the
# limit *and* significant. No relative gate passes silently: each reports its **MDE**, the smallest drop
# the comparison could have detected (80% power); when that is larger than the margin the verdict is
# **underpowered** (63 general probes resolve an accuracy drop of about 0.12, which is why this gate's
# margin is 0.15 and why it also gates the more sensitive answer likelihood; `docs/gate-power.md`).
# Absolute gates (`min`, `max`) judge the candidate's own value. The command writes `report.md`,
# `report.html` (with plots) and `report.json`, and exits 1 when any gate fails: the line to put in CI.

# %%
REPORT = WORK / "report"
print(datakit("compare", EVAL / "base", EVAL / "mixed", "--names", "base,mixed",
              "--gate", ACME / "gate.yaml", "--out", REPORT))
print("\n".join((REPORT / "report.md").read_text().splitlines()[:16]))

# %% [markdown]
# ## 7. Read the report as data
#
# `report.json` is the whole comparison; `read_report` loads it back into the same typed object
# `report_runs` returns. `models` holds each run's metric values, `verdicts` each candidate's gate
# verdicts, and `comparisons` the paired changes, intervals, p-values and the item ids that flipped.

# %%
from datakit.evals.report import read_report

report = read_report(REPORT / "report.json")
print("runs:", [(r.name, r.role) for r in report.runs], "| verdict:", report.verdict, report.candidate_verdicts)
pl.DataFrame([{"metric": m, **{name: round(vals.get(m, float("nan")), 3) for name, vals in report.models.items()}}
              for m in report.metrics])

# %% [markdown]
# Each gate's p-value answers the question that gate asks. For `general.accuracy` (relative, with
# `require_significance`) it is McNemar's test of "no change" on the paired items; for the absolute gates
# it is the evidence that the true value lies on the wrong side of the limit (small is bad). With
# `holm: true` they are adjusted for testing five gates at once. `mde` is in the gate's units; `test` names
# the test each p-value comes from.

# %%
cand = report.candidates()[0]
pl.DataFrame([{"gate": g.rule, "verdict": g.verdict, "base": round(g.base_value, 3), "tuned": round(g.cand_value, 3),
               "p (Holm)": g.p_adjusted, "mde": g.mde, "test": g.test, "n": g.n} for g in cand.gates])

# %%
print("verdicts:", report.verdicts)
print(f"newly failed ({len(cand.flips.newly_failed)}):", cand.flips.newly_failed[:8])
print(f"newly passed ({len(cand.flips.newly_passed)}):", cand.flips.newly_passed[:8])

# %% [markdown]
# ## Reading the result
#
# - **identity.pass_rate**: the base model says "I am a helpful assistant"; identity rows at 30% of the
#   mixture teach the name and the maker, in both languages.
# - **bleed.rate**: the general replay keeps company talk out of general answers.
# - **general.accuracy**: the replay keeps what the base model knew. A few flips are normal; the gate
#   fails only if the drop is past 5 points *and* significant, so noise alone cannot fail a run.
# - **domain.accuracy**: from ~0 to most of the taught facts. A shorter run learns fewer of them; when
#   this falls under the gate's `min: 0.5`, the gate fails the candidate and `compare` exits 1, which is
#   the gate doing its job on an under-trained model.
# - **perplexity.general**: NLL per token on held-out web text; a rise would mean the language model
#   itself was damaged, not just some facts.
#
# To see what the mixture buys, train `examples/acme/recipes/domain-only.yaml` the same way (the
# `domain-only` mixture from notebook 01) and pass both candidates to `datakit compare`: general
# accuracy collapses, identity fails, and bleed appears (*FIELD_NOTES 2*). `datakit demo` does exactly
# that and writes the report to `runs/demo/report/`.
