"""The mixture op: planned shares, policies, natural size, repeats, determinism, kinds, tokens, lineage."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from datakit.errors import DatakitError
from datakit.io.ingest import ingest
from datakit.ops import mix_plan
from datakit.ops.mix import SOURCES_FILE, format_table, load_spec, run_mix
from datakit.ops.mix_spec import MixtureSpec
from datakit.registry.rows import records_to_frame, row_ids
from datakit.registry.store import Registry
from datakit.schemas import stored_schema

ROOT = Path(__file__).resolve().parent.parent
DEMO = [("identity.json", "identity-seeds"), ("alpaca_en_demo.json", "alpaca-en"), ("alpaca_zh_demo.json", "alpaca-zh")]


def demo(reg: Registry, external: Path) -> dict[str, int]:
    """The three real chat datasets, ingested as sft; returns their unique row counts."""
    for fname, name in DEMO:
        ingest(reg, [external / fname], name=name, kind="sft")
    return {name: reg.load(name)["id"].n_unique() for _, name in DEMO}


def spec(**kw) -> MixtureSpec:
    weights = kw.pop("weights", {"identity-seeds": 0.2, "alpaca-en": 0.5, "alpaca-zh": 0.3})
    return MixtureSpec.model_validate({
        "name": "mixed", "seed": 7, **kw,
        "components": [{"dataset": d, "weight": w} for d, w in weights.items()],
    })


def min_share(dataset: str, share: float) -> dict:
    return {"min_share": {"dataset": dataset, "share": share}}


def sources(reg: Registry, res) -> pl.DataFrame:
    return reg.extra(res.manifest, SOURCES_FILE)


def by_component(res) -> dict:
    return {c.dataset.split("@")[0]: c for c in res.components}


# ---- shares, policies, size ---------------------------------------------------------------


def test_rows_unit_hits_every_planned_share_within_one_point_and_the_exact_total(reg, external):
    demo(reg, external)
    res = run_mix(reg, spec(total=1500, max_repeats=4))
    comps = by_component(res)
    assert res.rows_out == res.manifest.rows == 1500
    assert {n: c.rows for n, c in comps.items()} == {"identity-seeds": 300, "alpaca-en": 750, "alpaca-zh": 450}
    counts = sources(reg, res).group_by("component").len()
    for ref, n in counts.iter_rows():
        c = comps[ref.split("@")[0]]
        assert n == c.rows and abs(n / 1500 - c.planned_share) < 0.01
    assert res.manifest.stats["rows_in"] == 91 + 999 + 1000 and "removed" not in res.manifest.stats


def test_min_share_raises_identity_to_30_percent_and_scales_the_others_in_their_ratio(reg, external):
    demo(reg, external)
    weights = {"identity-seeds": 0.1, "alpaca-en": 0.6, "alpaca-zh": 0.3}
    res = run_mix(reg, spec(weights=weights, total=1000, max_repeats=4, policies=[min_share("identity-seeds", 0.3)]))
    comps = by_component(res)
    assert comps["identity-seeds"].planned_share == pytest.approx(0.3)
    assert comps["alpaca-en"].planned_share == pytest.approx(0.7 * 0.6 / 0.9, abs=1e-6)
    assert comps["alpaca-zh"].planned_share == pytest.approx(0.7 * 0.3 / 0.9, abs=1e-6)
    realized = sources(reg, res)["component"].value_counts(normalize=True)
    for ref, share in realized.iter_rows():
        assert abs(share - comps[ref.split("@")[0]].planned_share) < 0.01


def test_max_share_caps_one_component_and_min_and_max_combine():
    shares = mix_plan.solve_shares([0.6, 0.3, 0.1], [0.0, 0.0, 0.0], [0.4, 1.0, 1.0])
    assert shares.tolist() == pytest.approx([0.4, 0.45, 0.15])
    shares = mix_plan.solve_shares([0.8, 0.1, 0.1], [0.0, 0.0, 0.3], [0.5, 1.0, 1.0])
    assert shares.tolist() == pytest.approx([0.5, 0.2, 0.3])


def test_policies_that_cannot_all_hold_are_refused_with_their_sum(tmp_path):
    path = tmp_path / "mix.yaml"
    path.write_text("name: m\ncomponents: [{dataset: a, weight: 1}, {dataset: b, weight: 1}]\n"
                    "policies: [{min_share: {dataset: a, share: 0.7}}, {min_share: {dataset: b, share: 0.5}}]\n")
    with pytest.raises(DatakitError, match=r"min_share values sum to 1\.200 \(over 1\)"):
        load_spec(path)
    with pytest.raises(DatakitError, match="sum to 1.200, over 1"):
        mix_plan.solve_shares([1, 1], [0.7, 0.5], [1, 1])


def test_omitted_total_is_the_natural_size_at_which_no_row_repeats(reg, external):
    unique = demo(reg, external)
    res = run_mix(reg, spec(weights={"identity-seeds": 0.3, "alpaca-en": 0.4, "alpaca-zh": 0.3}))
    assert res.total == math.floor(unique["identity-seeds"] / 0.3) == 303
    assert res.manifest.stats["total_from"] == "natural"
    assert all(c.max_repeat == 1 and c.rows <= c.unique_rows for c in res.components)
    assert sources(reg, res)["repeat"].max() == 0


# ---- which rows ---------------------------------------------------------------------------


def test_upsampling_uses_every_unique_row_before_any_repeat_and_never_exceeds_max_repeats(reg, external):
    demo(reg, external)
    res = run_mix(reg, spec(total=1250, max_repeats=3))  # identity: 250 rows from 91 unique
    ident = sources(reg, res).filter(pl.col("component") == "identity-seeds@v1")
    per_row = ident.group_by("source_id").len()["len"]
    assert ident.height == 250 and per_row.len() == 91
    assert (per_row.min(), per_row.max()) == (2, 3)  # 250 = 2 * 91 + 68: everyone twice before anyone thrice
    assert ident.filter(pl.col("repeat") == 0)["source_id"].n_unique() == 91
    assert ident["repeat"].value_counts().sort("repeat")["count"].to_list() == [91, 91, 68]
    assert by_component(res)["identity-seeds"].max_repeat == 3


def test_downsampling_covers_as_many_groups_as_it_can_before_a_second_variant(reg, external):
    demo(reg, external)
    seeds = reg.load("identity-seeds").drop("id").with_columns(
        pl.format("fact-{}", pl.int_range(pl.len()) // 3).alias("group_id"))  # 31 groups of up to 3 variants
    reg.commit_frame("identity-grouped", "sft", seeds, op="test")
    res = run_mix(reg, spec(weights={"identity-grouped": 0.31, "alpaca-en": 0.69}, total=100))
    picked = sources(reg, res).filter(pl.col("component") == "identity-grouped@v1")["source_index"]
    groups = seeds["group_id"].gather(picked.to_numpy())
    assert picked.len() == 31 and groups.n_unique() == 31 and picked.n_unique() == 31


def test_a_share_beyond_max_repeats_stops_naming_the_component_and_the_rows_it_lacks(reg, external):
    demo(reg, external)
    with pytest.raises(DatakitError) as e:
        run_mix(reg, spec(weights={"identity-seeds": 0.3, "alpaca-en": 0.7}, total=2000, max_repeats=3))
    assert str(e.value) == (
        "identity-seeds@v1 needs 600 rows for a 30.0% share of 2,000 but has 91 unique rows; max_repeats 3 "
        "allows 273: add 109 more unique rows (datakit augment) or raise max_repeats")
    assert "mixed" not in reg.names()


# ---- determinism and kinds ----------------------------------------------------------------


def test_same_spec_and_inputs_give_the_same_content_hash_in_two_registries_and_processes(tmp_path, external):
    a, b = Registry(tmp_path / "a"), Registry(tmp_path / "b")
    demo(a, external), demo(b, external)
    ra = run_mix(a, spec(total=800, max_repeats=2))
    # the second run in another process with another PYTHONHASHSEED: nothing may depend on hash()
    code = ("import sys; from datakit.registry.store import Registry; from datakit.ops.mix import run_mix; "
            "from tests.test_mix import spec; print(run_mix(Registry(sys.argv[1]), spec(total=800, max_repeats=2)).manifest.content_hash)")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    proc = subprocess.run([sys.executable, "-c", code, str(b.root)], capture_output=True, text=True, cwd=ROOT, env=env, check=True)
    assert proc.stdout.strip() == ra.manifest.content_hash
    assert sources(a, ra).equals(b.extra("mixed", SOURCES_FILE))


def test_another_seed_keeps_the_counts_but_changes_the_rows_and_their_order(reg, external):
    demo(reg, external)
    r7 = run_mix(reg, spec(total=800, max_repeats=2))
    r8 = run_mix(reg, spec(total=800, max_repeats=2, seed=8), name="mixed-seed8")
    assert [c.rows for c in r7.components] == [c.rows for c in r8.components]
    assert r7.manifest.content_hash != r8.manifest.content_hash
    s7, s8 = sources(reg, r7), sources(reg, r8)
    assert s7["source_id"].to_list() != s8["source_id"].to_list()
    assert s7.filter(pl.col("component") == "alpaca-en@v1")["source_id"].sort().to_list() != \
        s8.filter(pl.col("component") == "alpaca-en@v1")["source_id"].sort().to_list()
    assert s7.head(50)["component"].n_unique() == 3  # training order interleaves components


def test_components_of_incompatible_kinds_are_refused_naming_each_one(reg, external):
    demo(reg, external)
    ingest(reg, [external / "c4_demo.jsonl"], name="c4", kind="cpt")
    with pytest.raises(DatakitError, match=r"cannot mix alpaca-en@v1 \(sft\), c4@v1 \(cpt\): mix chat kinds"):
        run_mix(reg, spec(weights={"alpaca-en": 0.5, "c4": 0.5}, total=100))


def test_identity_rows_mix_into_sft_and_the_side_file_keeps_their_intent_and_lang(reg, external):
    demo(reg, external)
    seeds = reg.load("identity-seeds").drop("id").with_columns(intent=pl.lit("affirm"), lang=pl.lit("en"))
    reg.commit_frame("acme-identity", "identity", seeds.select(list(stored_schema("identity"))[1:]), op="test")
    res = run_mix(reg, spec(weights={"acme-identity": 0.3, "alpaca-en": 0.7}, total=200, max_repeats=1))
    assert res.manifest.kind == "sft" and reg.load(res.manifest).columns == list(stored_schema("sft"))
    side = sources(reg, res)
    ident = side.filter(pl.col("component") == "acme-identity@v1")
    assert ident.height == 60 and set(ident["dropped_fields"]) == {'{"intent":"affirm","lang":"en"}'}
    assert side.filter(pl.col("component") == "alpaca-en@v1")["dropped_fields"].null_count() == 140


# ---- tokens -------------------------------------------------------------------------------


def test_token_estimate_counts_cjk_characters_singly_and_other_text_by_four():
    df = records_to_frame("sft", [{"messages": [{"role": "user", "content": "你好世界"},
                                                {"role": "assistant", "content": "hello world!"}]}])
    # "你好世界\nhello world!": 4 CJK + ceil(13 / 4) other, plus 4 template tokens per message
    assert mix_plan.estimate_tokens("sft", df).tolist() == [4 + 4 + 2 * 4]


def test_tokens_unit_with_the_estimate_meets_token_shares_within_one_point(reg, external):
    demo(reg, external)
    weights = {"identity-seeds": 0.05, "alpaca-en": 0.6, "alpaca-zh": 0.35}
    res = run_mix(reg, spec(weights=weights, unit="tokens", total=60_000, max_repeats=2,
                            policies=[min_share("identity-seeds", 0.1)]))
    stats = res.manifest.stats
    assert stats["token_count"] == "estimate" and stats["unit"] == "tokens"
    assert by_component(res)["identity-seeds"].planned_share == pytest.approx(0.1)
    assert by_component(res)["identity-seeds"].max_repeat == 2  # 6,000 of its 5,027 tokens: some rows twice
    for c in res.components:
        assert abs(c.realized_share - c.planned_share) < 0.01
        assert abs(c.tokens - c.planned_share * 60_000) < 0.01 * 60_000
    side = sources(reg, res)
    for c in res.components:  # the reported tokens are the picked rows' estimates
        rows = reg.load(c.dataset)
        est = mix_plan.estimate_tokens("sft", rows)
        picked = side.filter(pl.col("component") == c.dataset)["source_index"].to_numpy()
        assert int(est[picked].sum()) == c.tokens


def test_tokens_unit_with_a_local_tokenizer_counts_the_chat_template_rendering(reg, external, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    demo(reg, external)
    texts = reg.load("alpaca-en")["messages"].list.eval(pl.element().struct.field("content")).list.join(" ").to_list()
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<|im_start|>", "<|im_end|>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    chatml = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>", eos_token="<|im_end|>",
                            chat_template=chatml).save_pretrained(tmp_path / "tok")
    res = run_mix(reg, spec(unit="tokens", tokenizer=str(tmp_path / "tok")))  # natural size
    assert res.manifest.stats["token_count"] == "tokenizer"
    tok = AutoTokenizer.from_pretrained(tmp_path / "tok")
    side = sources(reg, res)
    for c in res.components:
        assert abs(c.realized_share - c.planned_share) < 0.01
        picked = side.filter(pl.col("component") == c.dataset)["source_index"].to_list()
        rows = reg.load(c.dataset)["messages"].to_list()
        convs = [[{"role": m["role"], "content": m["content"]} for m in rows[i]] for i in picked]
        assert sum(len(x) for x in tok.apply_chat_template(convs, tokenize=True, return_dict=False)) == c.tokens


# ---- lineage, spec files, the example -----------------------------------------------------


def test_lineage_names_the_component_versions_and_the_side_file_maps_every_output_row(reg, external):
    demo(reg, external)
    res = run_mix(reg, spec(total=500, max_repeats=2))
    m = res.manifest
    assert [(p.ref, p.content_hash) for p in m.parents] == [(r.ref, r.content_hash) for r in
                                                            (reg.resolve(n) for _, n in DEMO)]
    assert m.op == "mix" and [c["dataset"] for c in m.params["components"]] == [f"{n}@v1" for _, n in DEMO]
    assert m.params["total"] == 500 and m.stats["components"][0]["content_hash"] == m.parents[0].content_hash
    side, out = sources(reg, res), reg.load(m)
    assert side.height == out.height == m.rows
    assert side["source_id"].to_list() == out["id"].to_list()  # sft into sft: each row is its source row
    assert row_ids("sft", out) == out["id"].to_list()


def test_a_mixture_file_reports_every_bad_field_with_the_file_name(tmp_path):
    path = tmp_path / "bad-mix.yaml"
    path.write_text("seed: 1\nunit: bytes\nratio: 2\ncomponents:\n  - {dataset: Acme/SFT, weight: -1}\n")
    with pytest.raises(DatakitError) as e:
        load_spec(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: 5 problem(s) in the mixture:")
    for field in ("name: Field required", "unit: Input should be 'rows' or 'tokens'", "ratio: Extra inputs",
                  "components.0.dataset: invalid dataset name 'Acme/SFT'", "components.0.weight: Input should be greater than 0"):
        assert field in msg


def test_the_example_mixture_runs_on_the_demo_datasets(reg, external):
    demo(reg, external)
    example = load_spec(ROOT / "recipes" / "mixtures" / "example-mix.yaml")
    res = run_mix(reg, ROOT / "recipes" / "mixtures" / "example-mix.yaml")
    assert res.manifest.ref == f"{example.name}@v1" and res.rows_out == example.total
    assert all(abs(c.realized_share - c.planned_share) < 0.01 for c in res.components)
    table = format_table(res)
    assert "planned" in table and "realized" in table and "identity-seeds@v1" in table and "30.0%" in table
    again = run_mix(reg, ROOT / "recipes" / "mixtures" / "example-mix.yaml", name="other-name")
    assert again.manifest.content_hash == res.manifest.content_hash and again.total == res.total
