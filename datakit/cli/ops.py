"""Data ops on the command line: normalize, dedup, decontam, split, mix. Each writes new versions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from datakit.cli.common import JsonOpt, RefArg, app, committed, emit_json, out, reg, step_progress, working

NameOpt = Annotated[list[str], typer.Option("--name", help="Output dataset name (one per REF, or one prefix for several).")]
EngineOpt = Annotated[Optional[str], typer.Option("--engine", help="local (default, or DATAKIT_ENGINE) or ray: the same op on a Ray cluster.")]
RayAddressOpt = Annotated[Optional[str], typer.Option("--ray-address", help="Ray cluster to join (auto, ray://host:10001; or DATAKIT_RAY_ADDRESS); default: start a local one.")]
FieldOpt = Annotated[str, typer.Option("--field", help="Text compared: auto, text, first_user, last_user, user, assistant, conversation, prompt, chosen.")]


def _print(results: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        emit_json(results)
        return
    for x in results:
        s = x["stats"]
        tail = f", {s['removed']} removed" if "removed" in s else ""
        out.print(f"{x['input']} -> {committed(x['created'])} [bold]{x['ref']}[/] ({s.get('rows_in')} rows in, "
                  f"{s.get('rows_out')} out{tail})")


@app.command()
def normalize(ref: RefArg, name: NameOpt, engine: EngineOpt = None, ray_address: RayAddressOpt = None,
              as_json: JsonOpt = False) -> None:
    """Unicode NFC, whitespace and invisible-character cleanup of every text field (streamed, bounded memory)."""
    from datakit.ops.normalize import run_normalize

    with working("normalizing"):
        _print(run_normalize(reg(), ref, name, engine=engine, ray_address=ray_address), as_json)


@app.command()
def dedup(
    refs: Annotated[list[str], typer.Argument(help="One or more dataset refs, deduplicated together.")],
    name: NameOpt,
    near: Annotated[bool, typer.Option("--near", help="Also remove near-duplicates (MinHash LSH, verified).")] = False,
    threshold: Annotated[float, typer.Option(help="Jaccard similarity (0-1) at which rows count as "
                                                  "near-duplicates.")] = 0.8,
    field: FieldOpt = "auto",
    keep: Annotated[str, typer.Option(help="Which row of a cluster stays: first, longest or score.")] = "first",
    score_field: Annotated[Optional[str], typer.Option(help="Column (or scores.<key>) for --keep score; the highest "
                                                            "stays.")] = None,
    num_perm: Annotated[int, typer.Option(help="MinHash bins (a power of two).")] = 128,
    ngram: Annotated[Optional[int], typer.Option(help="Words per shingle (same as --shingle word:N; default: from "
                                                      "--shingle).")] = None,
    shingle: Annotated[str, typer.Option("--shingle", help="word:N, char:N or auto (char:5 for short or CJK rows, else word:3).")] = "auto",
    trim_boilerplate: Annotated[bool, typer.Option("--trim-boilerplate", help="Ignore short prefixes/suffixes that repeat across many rows ('Reposted - ', 'Read more.').")] = False,
    engine: EngineOpt = None,
    ray_address: RayAddressOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove exact and (with --near) near-duplicate rows; identity rows win cross-dataset clusters.
    Memory stays bounded (inputs streamed, working files in the registry's .staging); --engine ray runs the
    same work on a Ray cluster."""
    from datakit.ops.dedup import run_dedup

    with step_progress("dedup") as progress:
        results = run_dedup(reg(), refs, name, field=field, near=near, threshold=threshold, keep=keep,  # type: ignore[arg-type]
                            score_field=score_field, num_perm=num_perm, ngram=ngram, shingle=shingle,
                            trim_boilerplate=trim_boilerplate, progress=progress, engine=engine,
                            ray_address=ray_address)
    _print(results, as_json)
    if near and not as_json:
        lsh = results[0]["stats"]["lsh"]
        out.print(f"LSH {lsh['bands']} bands x {lsh['rows_per_band']} rows: detection probability "
                  f"{lsh['detection_probability_at_threshold']:.3f} at similarity {threshold}; "
                  f"{lsh['candidate_pairs']} candidates, {lsh['false_candidates_dropped']} dropped by verification")


@app.command()
def decontam(
    ref: Annotated[str, typer.Argument(help="Training dataset to clean: name, name@v2, name@TAG or name@HASH.",
                                       show_default=False)],
    against: Annotated[list[str], typer.Option("--against", help="Eval dataset refs (probes or any kind).")],
    name: NameOpt,
    method: Annotated[str, typer.Option(help="ngram (overlap, GPT-3 style) or near (MinHash similarity).")] = "ngram",
    ngram: Annotated[int, typer.Option(help="Tokens per n-gram (words; a CJK character is one token; 13 as in "
                                            "GPT-3).")] = 13,
    min_tokens: Annotated[int, typer.Option(help="Eval items shorter than this many tokens only match a row that "
                                                 "equals them.")] = 8,
    threshold: Annotated[float, typer.Option(help="Similarity (0-1) at which a row matches an eval item, with "
                                                  "--method near.")] = 0.8,
    field: FieldOpt = "auto",
    engine: EngineOpt = None,
    ray_address: RayAddressOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Drop training rows that contain eval items; the report says which items leaked through which rows.
    The training rows are streamed (bounded memory); --engine ray checks their batches on a Ray cluster."""
    from datakit.ops.decontam import run_decontam

    with working("checking for contamination"):
        results = run_decontam(reg(), ref, against, name, field=field, method=method, ngram=ngram,  # type: ignore[arg-type]
                               min_tokens=min_tokens, threshold=threshold, engine=engine, ray_address=ray_address)
    _print(results, as_json)
    if not as_json:
        for eref, v in results[0]["stats"]["against"].items():
            out.print(f"  {eref}: {v['items_leaked']} of {v['items']} eval items leaked")


@app.command()
def split(
    ref: RefArg,
    name: NameOpt,
    valid: Annotated[float, typer.Option(help="Fraction of rows for validation (0-1).")],
    test: Annotated[float, typer.Option(help="Fraction of rows for test (0-1; 0: no test side).")] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of the group shuffle: same seed and rows, same split.")] = 0,
    field: FieldOpt = "auto",
    threshold: Annotated[float, typer.Option(help="Similarity (0-1) that joins rows without group_id into one "
                                                  "group.")] = 0.7,
    as_json: JsonOpt = False,
) -> None:
    """Group-aware, seeded split: a group_id (or a near-duplicate cluster) never spans two sides."""
    from datakit.ops.split import run_split

    with working("splitting"):
        results = run_split(reg(), ref, name, valid=valid, test=test, seed=seed, field=field, threshold=threshold)
    _print(results, as_json)
    if not as_json:
        s = results[0]["stats"]
        out.print("  " + ", ".join(f"{k} {s['rows'][k]} rows / {s['groups'][k]} groups" for k in ("train", "valid", "test")))


@app.command()
def mix(
    spec: Annotated[Path, typer.Argument(help="Mixture YAML (schemas/mixture.schema.json).")],
    name: Annotated[Optional[str], typer.Option("--name", help="Output name (overrides the spec's).")] = None,
    engine: EngineOpt = None,
    ray_address: RayAddressOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Mix datasets by share of rows or tokens; prints planned vs realized shares. Memory holds the plan, not
    the rows (they stream through the registry's .staging); --engine (or engine: in the YAML) ray runs it on Ray."""
    from datakit.ops.mix import format_table, run_mix

    with step_progress("mix") as progress:
        res = run_mix(reg(), spec, name=name, engine=engine, ray_address=ray_address, progress=progress)
    if as_json:
        emit_json(res.model_dump(mode="json", exclude={"manifest"}) | {"ref": res.manifest.ref, "content_hash": res.manifest.content_hash})
        return
    out.print(format_table(res))  # ends with the committed/unchanged line
