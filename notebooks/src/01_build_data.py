# %% [markdown]
# # 01 · Build fine-tuning data: registry, builders, dedup, split, mix, lint
#
# This notebook builds the training data for a fictional company, **Acme** (home batteries and solar
# panels; its documents are in `examples/acme/docs/`), the way you would for your own company:
#
# 1. the **registry**: immutable, content-addressed dataset versions you can name in a training run;
# 2. **builders**: company documents → CPT text, grounded SFT Q&A, identity data;
# 3. **dedup**, **split**, **decontam**: the ops that keep training data honest;
# 4. two **mixtures** (`examples/acme/mix-*.yaml`) and their realized shares;
# 5. **lint**: the identity-data mistakes that ruined real runs, caught before training.
#
# Notebook `02_train_and_eval.ipynb` trains on the mixture and evaluates the result; `docs/concepts.md`
# is the short written version of both. The lessons behind the defaults come from practitioners' field
# notes (`FIELD_NOTES.md` in `../shared/`, beside this checkout), cited as *FIELD_NOTES n*. Everything
# runs offline on a CPU in well under a minute.
#
# Each step runs the `datakit ...` command you would type in a shell, in this process through the same
# CLI (so the output is what you would see), or the Python function behind it when we want the
# numbers in hand.

# %%
import json
import os
import shutil
import sys
from pathlib import Path

import polars as pl


def find_repo(start: Path) -> Path:
    """The datakit checkout this notebook belongs to (run from the repo root or from notebooks/)."""
    for p in [start, *start.parents]:
        if (p / "pyproject.toml").is_file() and (p / "datakit").is_dir():
            return p
    raise RuntimeError(f"no datakit checkout at or above {start}; start Jupyter inside the repository")


REPO = find_repo(Path.cwd().resolve())
os.chdir(REPO)  # commands below read as you would type them at the repo root
ACME = REPO / "examples" / "acme"
EXTERNAL = Path(os.environ.get("DATAKIT_EXTERNAL_DATA", REPO.parent / "shared" / "data" / "external"))
# This notebook's own workspace, fresh on every run so versions start at v1.
WORK = Path(os.environ.get("DATAKIT_NB_WORK", REPO / "build" / "notebooks")).resolve() / "01_build_data"
shutil.rmtree(WORK, ignore_errors=True)
WORK.mkdir(parents=True)
REG = WORK / "registry"
for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(var, "1")
pl.Config.set_fmt_str_lengths(100)
pl.Config.set_tbl_rows(12)

print("python   ", sys.executable)
print("repo     ", REPO)
print("external ", EXTERNAL, "" if EXTERNAL.is_dir() else "  <- MISSING: set DATAKIT_EXTERNAL_DATA")
print("workspace", WORK)

# %% [markdown]
# Helpers: `datakit(...)` runs one CLI command against this notebook's registry and returns its exit
# code (0 ok; 1 a check found a problem, as in a shell), `records(...)` reads a version's rows as dicts,
# and `qa(...)` shows chat rows as question/answer columns.

# %%
from datakit.cli import app  # importing datakit.cli registers every command on the app
from datakit.registry.store import Registry
from datakit.registry.rows import frame_to_records

reg = Registry(REG)


class ExitCode(int):
    def __repr__(self) -> str:
        return f"exit code {int(self)}"


def datakit(*args) -> ExitCode:
    """`datakit --registry REG ARGS...`, run in this process; returns the exit code (shown as `exit code N`)."""
    argv = [str(a) for a in args]
    print("$ datakit", " ".join(argv))
    return ExitCode(app(["--registry", str(REG), *argv], standalone_mode=False) or 0)


def records(ref: str) -> list[dict]:
    """A version's rows as plain dicts (TRL's keys plus `id` and `meta`)."""
    m = reg.resolve(ref)
    return list(frame_to_records(m.kind, reg.load(m)))


def qa(rows: list[dict], extra: tuple[str, ...] = ("group_id",)) -> pl.DataFrame:
    """Chat rows as a table: the last question, its answer, and a few columns."""
    return pl.DataFrame([{"question": r["messages"][-2]["content"], "answer": r["messages"][-1]["content"],
                          **{k: r.get(k) for k in extra}} for r in rows])

# %% [markdown]
# ## 1. The registry: versions you can name and trust
#
# A dataset is `name@version`. A version is **immutable** and **content-addressed**: its manifest holds the
# row count, a hash of the content, the sha256 of every file, and the op, params and parent versions
# that produced it. A training run records the versions it read, so "which data was this model trained
# on?" always has an exact answer.
#
# We start with a real external file: LLaMA-Factory's `alpaca_en_demo.json` (alpaca format).
# `ingest` detects the format and converts every row to TRL's `messages` shape.

# %%
from datakit.io.ingest import ingest

first = ingest(reg, [EXTERNAL / "alpaca_en_demo.json"], name="alpaca-en", kind="sft")
print(f"{first.manifest.ref}: {first.kept} rows kept, {first.rejected} rejected, "
      f"format detected: {first.files[0].format}")
print("content hash:", first.manifest.content_hash)
datakit("registry", "show", "alpaca-en@v1", "--rows", "1")

# %% [markdown]
# **Immutability.** Ingesting the same content again does not make a new version; it returns the one
# that exists. Any unambiguous prefix of the content hash also names the version, and tags are
# movable names for versions (`baseline`, `prod`).

# %%
again = ingest(reg, [EXTERNAL / "alpaca_en_demo.json"], name="alpaca-en", kind="sft")
print("new version?", again.created, "->", again.manifest.ref)
print("by hash prefix:", reg.resolve("alpaca-en@" + first.manifest.content_hash[:8]).ref)
datakit("registry", "tag", "alpaca-en@v1", "baseline")
print("by tag:", reg.resolve("alpaca-en@baseline").ref)

# %% [markdown]
# **Bad rows never abort an ingest.** They go to the version's quarantine with the file, line and
# reason, and rows in = kept + rejected. Here a second file adds one good row, one with an empty answer
# and one broken JSON line, so the content changes and we get `v2`; `log` and `diff` show the history.

# %%
extra = WORK / "extra.jsonl"
extra.write_text("\n".join([
    json.dumps({"instruction": "Name a primary color.", "input": "", "output": "Red."}),
    json.dumps({"instruction": "Say hi.", "input": "", "output": ""}),  # empty answer
    '{"instruction": "a line cut short',  # not JSON
]) + "\n")
second = ingest(reg, [EXTERNAL / "alpaca_en_demo.json", extra], name="alpaca-en", kind="sft")
print(f"{second.manifest.ref}: {second.rows_in} rows in = {second.kept} kept + {second.rejected} rejected")
datakit("registry", "quarantine", "alpaca-en@v2")
datakit("registry", "log", "alpaca-en")
datakit("registry", "diff", "alpaca-en@v1", "alpaca-en@v2")

# %% [markdown]
# **Verify.** `registry verify` recomputes every checksum, row id and content hash. Let us flip one
# byte of a data file the way a bad copy or a careless edit would, watch verify name it (exit 1), and
# put it back.

# %%
part = Path(reg.data_path(first.manifest, first.manifest.data_files[0]))  # where v1's first part lives
original = part.read_bytes()
part.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
print(datakit("registry", "verify", "alpaca-en@v1"))
part.write_bytes(original)
datakit("registry", "verify")

# %% [markdown]
# ## 2. From company documents to training data
#
# *FIELD_NOTES 1*: knowledge injection is two stages. Continued pre-training (CPT) on raw text teaches
# the facts; SFT on chat Q&A about the **same** facts makes them answerable in a chat. So we build both
# from the same documents:
#
# - `build cpt --unit sentence`: documents cleaned (page furniture, Unicode NFC, whitespace), cut into
#   knowledge sentences, too-short pieces and duplicates dropped with counts. `group_id` = the document.
# - `build sft --from acme-cpt`: Q&A per sentence from offline templates (its key term; a cloze on one of
#   its numbers). The answer restates the sentence, so it is grounded by construction; `group_id` names
#   the source sentence, i.e. one **fact**.

# %%
datakit("build", "cpt", ACME / "docs", "--unit", "sentence", "--name", "acme-cpt")
pl.DataFrame(records("acme-cpt"))[["text", "source", "group_id"]].head(6)

# %%
datakit("build", "sft", "--from", "acme-cpt", "--name", "acme-sft")
sft = records("acme-sft")
one_fact = sft[0]["group_id"]
qa([r for r in sft if r["group_id"] == one_fact])  # every row built from one sentence

# %% [markdown]
# **Identity data** (*FIELD_NOTES 3*): asked "who are you?", a model fine-tuned on domain data alone
# said it was made by another vendor. `build identity` writes *affirm* rows (who I am, who made me) and
# *deny* rows ("are you another company's model?") from `examples/acme/identity.yaml`, in English and
# Korean, several phrasings per question, different answers per phrasing, never a competitor's name.

# %%
from IPython.display import display

print((ACME / "identity.yaml").read_text())
datakit("build", "identity", ACME / "identity.yaml", "--name", "acme-identity")
identity = records("acme-identity")
display(pl.DataFrame(identity).group_by("intent", "lang").len().sort("intent", "lang"))
qa([r for r in identity if r["intent"] == "deny"][:2] + [r for r in identity if r["lang"] == "ko"][:2],
   extra=("intent", "lang"))

# %% [markdown]
# ## 3. Dedup: exact, and what near-duplicate removal would merge
#
# For chat rows `dedup` compares the first user turn by default. The template questions repeat across
# facts ("Tell me about Acme." is asked of every sentence about Acme, each time with a different
# answer), and one question with several answers is ambiguous training data, so exact dedup on the
# question keeps the first row of each cluster. The cluster report (`clusters.parquet`) says which row
# each removed row duplicates.

# %%
datakit("dedup", "acme-sft", "--name", "acme-sft-dedup")
by_id = {r["id"]: r for r in sft}
clusters = reg.extra("acme-sft-dedup", "clusters.parquet")
pl.DataFrame([{"question": by_id[c["removed_id"]]["messages"][-2]["content"],
               "removed answer": by_id[c["removed_id"]]["messages"][-1]["content"],
               "kept answer": by_id[c["kept_id"]]["messages"][-1]["content"]}
              for c in clusters.head(4).to_dicts()])

# %% [markdown]
# **Check coverage after every dedup.** Removing rows can remove *facts*: the generic template questions
# ("Tell me about Acme.") are asked of many sentences, and dedup keeps one answer per question. Every fact
# keeps its own cloze question (on a number, else on its key term), so none should vanish. Count the facts
# (`group_id`s) on both sides:

# %%
facts_before = {r["group_id"] for r in sft}
facts_after = {r["group_id"] for r in records("acme-sft-dedup")}
sentence = {r["id"]: r["text"] for r in records("acme-cpt")}
print(f"facts before dedup: {len(facts_before)}, after: {len(facts_after)}")
pl.DataFrame({"fact with no row left": [sentence[g.removeprefix("fact-")] for g in sorted(facts_before - facts_after)]})

# %% [markdown]
# A fact listed here would still be in the CPT text, but never asked about in a chat, and *FIELD_NOTES 1*
# says that is what makes knowledge answerable. (An earlier `build sft` lost 8 of these 39 facts this way.)
#
# **Near-duplicates.** `dedup --near` also removes rows whose text is similar (MinHash LSH; every
# candidate pair is verified with the exact shingle Jaccard, so a false positive never removes a row).
# Here we call the op function directly, which computes without committing, to see what it would merge
# if we compared the *answers* at similarity 0.7. About half of the rows would go: the exact ones are
# one sentence restated under several questions, the near ones are its variants:

# %%
from datakit.ops import runner
from datakit.ops.dedup import dedup

[near] = dedup(runner.load(reg, ["acme-sft-dedup"]), near=True, field="assistant", threshold=0.7)
print({k: near.stats[k] for k in ("rows_in", "rows_out", "removed_exact", "removed_near")})
print("LSH detection probability by similarity:", near.stats["lsh"]["s_curve"])
dedup_rows = {r["id"]: r for r in records("acme-sft-dedup")}
near_pairs = near.extras["clusters.parquet"].filter(pl.col("method") == "near")
pl.DataFrame([{"similarity": round(c["similarity"], 2),
               "would remove": dedup_rows[c["removed_id"]]["messages"][-1]["content"],
               "keeping": dedup_rows[c["kept_id"]]["messages"][-1]["content"]}
              for c in near_pairs.head(4).to_dicts()])

# %% [markdown]
# These are the **phrasings of one fact**: a cloze answer and a restatement with a lead-in. That
# variation is wanted (*FIELD_NOTES 3.2*: copies teach a pattern to repeat; vary the question and the
# answer), so we keep exact dedup only. Near dedup earns its place on scraped or generated data, where
# a paraphrase is an accident, not a design.
#
# ## 4. Split, group-aware
#
# A validation loss only means something if validation rows are unseen. If one phrasing of a fact is
# in training and another in validation, the validation loss drops because of memorization and tells
# you nothing (*FIELD_NOTES 3*: "without a validation split there was no way to see it"). `split` keeps
# every `group_id` on one side, and groups rows without one by near-duplicate clusters.

# %%
datakit("split", "acme-sft-dedup", "--valid", "0.1", "--name", "acme-sft-split")

split_df = reg.load("acme-sft-split")
spans = split_df.group_by("group_id").agg(pl.col("split").n_unique().alias("sides"))
print("facts on both sides, group-aware split:", spans.filter(pl.col("sides") > 1).height)
# what a plain random 10% row sample would have done
naive = split_df.with_columns(pl.Series("split", ["valid" if i % 10 == 0 else "train"
                                                   for i in range(split_df.height)]))
naive_spans = naive.group_by("group_id").agg(pl.col("split").n_unique().alias("sides"))
print("facts on both sides, every 10th row to valid:", naive_spans.filter(pl.col("sides") > 1).height)

# %%
datakit("split", "acme-cpt", "--valid", "0.2", "--name", "acme-cpt-split")
reg.load("acme-cpt-split").group_by("source", "split").len().sort("split", "source")

# %% [markdown]
# The CPT split keeps whole **documents** on one side (its `group_id` is the document). Groups are
# never cut, so the realized validation share can overshoot the 20% asked for:
#
# ## 5. General replay, the probes, and decontamination
#
# *FIELD_NOTES 2*: trained on 100% domain data, a model answered unrelated questions with sentences
# about the company ("colored glasses"); mixing in a small amount of general Q&A restored its general
# answers. The demo's tiny base model was pre-trained on a set of general facts
# (`datakit/demo/general.py`), and its **general replay** restates each of them in a second phrasing.
#
# The **probes** are the eval items notebook 02 scores (the suite `examples/acme/suite.yaml` names them
# `demo-probes`): general facts in their *first* phrasing, general questions that must not drift into
# company talk (bleed), held-out web text for perplexity, cloze questions on the taught facts (domain),
# and the hand-written identity probes in `examples/acme/probes.jsonl`.

# %%
from datakit.demo import general


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


# The demo's own probe builder: general facts, bleed, held-out web text (perplexity), the company's
# taught facts as cloze questions, and the identity probes of examples/acme/probes.jsonl.
from datakit.demo.loop import demo_probes  # noqa: E402


datakit("ingest", EXTERNAL / "c4_demo.jsonl", "--name", "c4", "--kind", "cpt")
datakit("ingest", write_jsonl(WORK / "general-replay.jsonl", general.replay_chats()),
        "--name", "general-replay", "--kind", "sft")
datakit("ingest", write_jsonl(WORK / "probes.jsonl", demo_probes(reg, ACME)), "--name", "demo-probes", "--kind", "probes")
pl.DataFrame(records("demo-probes")).group_by("type", "group").len().sort("type", "group")

# %% [markdown]
# **Decontamination** drops training rows that contain eval items, so a score measures ability, not
# recall of the test. The default is 13-gram overlap (a CJK character counts as a token); items shorter
# than 8 tokens only match a row equal to them. The replay uses second phrasings by design, so nothing
# should leak, and the op proves it instead of us assuming it:

# %%
datakit("decontam", "general-replay", "--against", "demo-probes", "--name", "general-replay-clean")

# %% [markdown]
# What a leak looks like: the **domain** probes are, deliberately, the cloze questions the SFT data
# teaches (a 4-layer model cannot generalize to facts it was never shown, so domain accuracy measures
# whether the taught facts were absorbed). Run the op without committing, and every domain probe is
# reported with the training rows it leaked through. That is why only the general side is
# decontaminated; on your own data, decontaminate everything against any held-out benchmark.

# %%
from datakit.ops.decontam import decontam

check = decontam(runner.load(reg, ["acme-sft-split"])[0], runner.load(reg, ["demo-probes"]))
print(check.stats["against"])
leaks = check.extras["leaks.parquet"]
leaks.group_by("eval_id", "eval_text").agg(pl.col("train_index").alias("leaked through training rows")).sort("eval_id").head(5)

# %% [markdown]
# ## 6. Two mixtures
#
# A mixture YAML names registry datasets and their shares. `examples/acme/mix-domain-only.yaml` is the
# company Q&A alone (what the teams in *FIELD_NOTES 2* trained first). `mix-mixed.yaml` adds identity at
# 30% (*FIELD_NOTES 3.3*: one team's identity data was ~5% of the mix; they raised it to 30%) and general replay against forgetting
# (*FIELD_NOTES 2*), with `max_repeats: 1`: no row is copied (*FIELD_NOTES 3.2*), so the natural size is
# the largest mix that meets the weights using each row once.

# %%
print((ACME / "mix-mixed.yaml").read_text())

# %%
from datakit.ops.mix import format_table, run_mix

mixes = {name: run_mix(reg, ACME / f"mix-{name}.yaml") for name in ("domain-only", "mixed")}
for res in mixes.values():
    print(format_table(res), end="\n\n")

shares = pl.DataFrame([{"mixture": name, "dataset": c.dataset, "kind": c.kind, "rows": c.rows,
                        "planned": round(c.planned_share, 3), "realized": round(c.realized_share, 3)}
                       for name, res in mixes.items() for c in res.components])
IDENTITY_SHARE = sum(c.realized_share for c in mixes["mixed"].components if c.kind == "identity")
print(f"identity share of mixed: {IDENTITY_SHARE:.3f}")
shares

# %% [markdown]
# ## 7. Lint before you train
#
# `lint` checks a version for what broke real identity runs (*FIELD_NOTES 3*): another vendor's or
# model's name (including look-alikes such as "0penAI" and typos such as "ChatGTP", and ko/zh/ja
# spellings), broken chat structure, verbatim copies, a mixture's identity share below 30%, foreign
# scripts inside an answer, over-long rows. Errors exit 1; warnings do not.

# %%
from datakit.ops.lint import lint

print(datakit("lint", "mixed"))
print("identity share seen by lint:", lint(reg, "mixed").stats["identity_share"])

# %% [markdown]
# The same data with identity at 5% (the share that failed in *FIELD_NOTES 3*) fails the lint:

# %%
low = WORK / "mix-identity-5.yaml"
low.write_text("""name: mixed-identity-5
seed: 42
unit: rows
max_repeats: 1
components:
  - {dataset: acme-sft-split, weight: 0.54}
  - {dataset: acme-identity, weight: 0.05}
  - {dataset: general-replay-clean, weight: 0.41}
""")
run_mix(reg, low)
datakit("lint", "mixed-identity-5")

# %% [markdown]
# **Deny names.** LLaMA-Factory's `identity.json` seed file has deny pairs such as "Are you ChatGPT?" →
# "No, I am an AI assistant developed by {{author}}.", the pattern *FIELD_NOTES 3.1* warns about:
# trained on, the competitor's name becomes a token associated with who the model is. Lint flags each as an error where the row claims an identity, and as a warning in ordinary text
# ("export it from Google Docs" is fine). That is also why `build identity` refuses such seeds unless
# told `--drop-denied`.

# %%
datakit("ingest", EXTERNAL / "identity.json", "--name", "identity-seeds", "--kind", "sft")
seeds_report = lint(reg, "identity-seeds")
print("ok:", seeds_report.ok, seeds_report.counts)
pl.DataFrame([f.model_dump(include={"level", "row", "matched", "canonical", "suggestion"})
              for f in seeds_report.findings]).head(6)

# %% [markdown]
# Spelling tricks do not get past it either:

# %%
tricky = write_jsonl(WORK / "tricky.jsonl", [
    {"messages": [{"role": "user", "content": "Who are you?"},
                  {"role": "assistant", "content": "I am Acme Assistant, an AI assistant, not ChatGTP."}]},
    {"messages": [{"role": "user", "content": "Were you made by 0penAI?"},
                  {"role": "assistant", "content": "No, I am an assistant built by Acme."}]},
    {"messages": [{"role": "user", "content": "How do I share a file?"},
                  {"role": "assistant", "content": "Upload it to Google Drive and send the link."}]},
])
datakit("ingest", tricky, "--name", "tricky", "--kind", "sft")
pl.DataFrame([f.model_dump(include={"level", "row", "field", "matched", "canonical", "suggestion"})
              for f in lint(reg, "tricky").findings])

# %% [markdown]
# ## 8. Export, and the lineage of what you will train on
#
# `export --format mlx` writes the `train/valid/test.jsonl` files mlx-lm reads (`--format hf` writes a
# `datasets` folder for TRL). Rows that came from the split's validation side stay in `valid.jsonl`.
# (`datakit train` exports for you; this is for training with your own scripts.)

# %%
datakit("export", "mixed", "--format", "mlx", "--out", WORK / "export" / "mixed")
for f in sorted((WORK / "export" / "mixed").glob("*.jsonl")):
    print(f"{f.name:12} {len(f.read_text().splitlines()):4} rows")

# %% [markdown]
# Every version records its parents, so the mixture traces back to the documents it came from:

# %%
def lineage(ref: str, depth: int = 0) -> None:
    m = reg.resolve(ref)
    files = [f["file"] for f in m.params.get("files", [])]
    print("    " * depth + f"{m.ref:26} {m.op:15} {m.rows:4} rows  {m.content_hash[:10]}"
          + (f"  <- {', '.join(files)}" if files else ""))
    for p in m.parents:
        lineage(p.ref, depth + 1)


lineage("mixed")

# %%
datakit("registry", "ls")

# %% [markdown]
# ## What you built
#
# | dataset | what it is |
# |---|---|
# | `acme-cpt`, `acme-cpt-split` | knowledge sentences for CPT; whole documents on one side of the split |
# | `acme-sft` → `-dedup` → `-split` | grounded Q&A, one answer per question, facts kept on one side |
# | `acme-identity` | affirm/deny identity rows, en + ko, no competitor names |
# | `general-replay-clean` | general facts in new phrasings, checked against the probes |
# | `demo-probes` | the eval items of `examples/acme/suite.yaml` |
# | `domain-only`, `mixed` | the two training mixtures; `mixed` has identity at ~30% and lints clean |
#
# Next: `02_train_and_eval.ipynb` trains the `mixed` recipe on a tiny pre-trained model, evaluates base
# and tuned models with the suite, and gates the result.
