"""Group-aware, deterministic splits that never cut a group."""

from __future__ import annotations

import json
import random

import polars as pl
import pytest

from datakit.errors import DatakitError
from datakit.io.ingest import ingest
from datakit.ops import runner
from datakit.ops.split import split
from tests.conftest import write_jsonl


def grouped_alpaca(tmp_path, external, n_groups=60, per_group=4):
    src = json.loads((external / "alpaca_en_demo.json").read_text())
    rows = []
    for g in range(n_groups):  # paraphrase-like variants of one row share a group
        r = src[g]
        rows += [{"instruction": f"{pre}{r['instruction']}", "input": r["input"], "output": r["output"], "group_id": f"g{g}"}
                 for pre in ("", "Please: ", "Quick question. ", "Help me out. ")[:per_group]]
    rows += [{k: v for k, v in r.items()} for r in src[n_groups:400]]
    path = tmp_path / "grouped.json"
    path.write_text(json.dumps(rows))
    return path


def test_no_group_is_ever_cut_and_fractions_are_close(reg, tmp_path, external):
    ingest(reg, [grouped_alpaca(tmp_path, external)], name="g", kind="sft")
    out = split(runner.load(reg, ["g"])[0], valid=0.1, test=0.1, seed=1)
    df = out.frame
    sides = df.filter(pl.col("group_id").is_not_null()).group_by("group_id").agg(pl.col("split").n_unique().alias("n"))
    assert (sides["n"] == 1).all()
    assert df.height == reg.resolve("g").rows and df["id"].to_list() == reg.load("g")["id"].to_list()
    for s, f in (("valid", 0.1), ("test", 0.1)):
        assert abs(out.stats["rows"][s] / df.height - f) < 0.02
    assert sum(out.stats["rows"].values()) == df.height


def test_near_duplicates_without_group_id_stay_on_one_side(reg, tmp_path, external):
    c4 = [json.loads(x) for x in (external / "c4_demo.jsonl").read_text(encoding="utf-8").splitlines()]
    rng = random.Random(0)
    copies = []
    for i in range(0, 300, 10):
        words = c4[i]["text"].split(" ")
        words[rng.randrange(len(words))] = "edited"
        copies.append({"text": " ".join(words)})
    ingest(reg, [write_jsonl(tmp_path / "c.jsonl", c4 + copies)], name="c", kind="cpt")
    out = split(runner.load(reg, ["c"])[0], valid=0.3, seed=5)
    labels = out.frame["split"].to_list()
    for k, i in enumerate(range(0, 300, 10)):
        assert labels[i] == labels[300 + k], f"row {i} and its edited copy were split apart"
    assert out.stats["groups_merged_by_similarity"] >= 25


def test_split_is_deterministic_by_seed(reg, tmp_path, external):
    ingest(reg, [external / "alpaca_en_demo.json"], name="a", kind="sft")
    inp = runner.load(reg, ["a"])[0]
    a, b, c = (split(inp, valid=0.2, seed=s).frame["split"].to_list() for s in (7, 7, 8))
    assert a == b and a != c


def test_split_version_carries_labels_and_lineage(reg, external):
    ingest(reg, [external / "identity.json"], name="idn", kind="sft")
    inp = runner.load(reg, ["idn"])[0]
    m, _ = runner.commit(reg, name="idn-split", kind="sft", inputs=[inp[0]], op="split", params={"valid": 0.2},
                         out=split(inp, valid=0.2))
    stored = reg.load(m)
    assert set(stored["split"].unique()) == {"train", "valid"}
    assert stored["id"].to_list() == inp[1]["id"].to_list()  # labels do not change row ids
    assert m.content_hash != inp[0].content_hash


@pytest.mark.parametrize("valid,test", [(0.6, 0.5), (-0.1, 0.0)])
def test_impossible_fractions_are_refused(reg, external, valid, test):
    ingest(reg, [external / "identity.json"], name="idn", kind="sft")
    with pytest.raises(DatakitError, match="must be >= 0 and sum to less than 1"):
        split(runner.load(reg, ["idn"])[0], valid=valid, test=test)


def test_cli_split_prints_rows_and_groups(cli, external):
    cli("ingest", str(external / "identity.json"), "--name", "idn", "--kind", "sft")
    p = cli("split", "idn", "--valid", "0.2", "--name", "idn-split")
    assert p.returncode == 0, p.stderr and "valid" in p.stdout
    assert "groups" in p.stdout
