"""Data ops on the command line: normalize, dedup, decontam, split, mix. Each writes new versions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from datakit.cli_common import JsonOpt, app, emit_json, out, reg, working
from datakit.errors import DatakitError
from datakit.registry import Registry
from datakit.schemas import Manifest

NameOpt = Annotated[list[str], typer.Option("--name", help="Output dataset name (one per REF, or one prefix for several).")]
FieldOpt = Annotated[str, typer.Option("--field", help="Text compared: auto, text, first_user, last_user, user, assistant, conversation, prompt, chosen.")]


def _names(refs: list[str], names: list[str]) -> list[str]:
    if len(names) == len(refs):
        return names
    if len(names) == 1 and len(refs) > 1:  # one prefix: <name>-<input name>
        return [f"{names[0]}-{ref.split('@')[0]}" for ref in refs]
    raise DatakitError(f"give one --name per REF ({len(refs)}), or a single --name used as a prefix")


def _commit_all(r: Registry, inputs: list[Manifest], outputs: list[Any], names: list[str], op: str,
                params: dict[str, Any], as_json: bool, parents: list[Manifest] | None = None) -> None:
    """One output per input; every output's lineage names `parents` (default: all inputs)."""
    from datakit.ops import runner

    results = []
    for m, o, name in zip(inputs, outputs, names):
        man, created = runner.commit(r, name=name, kind=m.kind, inputs=parents or inputs, op=op, params=params, out=o)
        results.append({"input": m.ref, "ref": man.ref, "created": created, "content_hash": man.content_hash, "stats": o.stats})
    if as_json:
        emit_json(results)
        return
    for x in results:
        s = x["stats"]
        tail = f", {s['removed']} removed" if "removed" in s else ""
        verb = "committed" if x["created"] else "unchanged:"
        out.print(f"{x['input']} -> {verb} [bold]{x['ref']}[/] ({s.get('rows_in')} rows in, {s.get('rows_out')} out{tail})")


@app.command()
def normalize(ref: str, name: NameOpt, as_json: JsonOpt = False) -> None:
    """Unicode NFC, whitespace and invisible-character cleanup of every text field."""
    from datakit.ops import runner
    from datakit.ops.normalize import normalize as op

    r = reg()
    inputs = runner.load(r, [ref])
    with working("normalizing"):
        o = op(inputs[0])
    _commit_all(r, [inputs[0][0]], [o], _names([ref], name), "normalize", {"input": ref}, as_json)


@app.command()
def dedup(
    refs: Annotated[list[str], typer.Argument(help="One or more dataset refs, deduplicated together.")],
    name: NameOpt,
    near: Annotated[bool, typer.Option("--near", help="Also remove near-duplicates (MinHash LSH, verified).")] = False,
    threshold: Annotated[float, typer.Option(help="Jaccard similarity at which rows count as near-duplicates.")] = 0.8,
    field: FieldOpt = "auto",
    keep: Annotated[str, typer.Option(help="Which row of a cluster stays: first, longest or score.")] = "first",
    score_field: Annotated[Optional[str], typer.Option(help="Column (or scores.<key>) for --keep score.")] = None,
    num_perm: Annotated[int, typer.Option(help="MinHash bins (a power of two).")] = 128,
    ngram: Annotated[int, typer.Option(help="Tokens per shingle.")] = 5,
    as_json: JsonOpt = False,
) -> None:
    """Remove exact and (with --near) near-duplicate rows; identity rows win cross-dataset clusters."""
    from datakit.ops import runner
    from datakit.ops.dedup import dedup as op

    if keep not in ("first", "longest", "score"):
        raise DatakitError(f"--keep {keep}: use first, longest or score")
    r = reg()
    inputs = runner.load(r, refs)
    params = {"inputs": [m.ref for m, _ in inputs], "near": near, "threshold": threshold, "field": field, "keep": keep,
              "score_field": score_field, "num_perm": num_perm, "ngram": ngram}
    with working("deduplicating"):
        outputs = op(inputs, field=field, near=near, threshold=threshold, keep=keep, score_field=score_field,  # type: ignore[arg-type]
                     num_perm=num_perm, ngram=ngram)
    _commit_all(r, [m for m, _ in inputs], outputs, _names(refs, name), "dedup", params, as_json)
    if near and not as_json:
        lsh = outputs[0].stats["lsh"]
        out.print(f"LSH {lsh['bands']} bands x {lsh['rows_per_band']} rows: detection probability "
                  f"{lsh['detection_probability_at_threshold']:.3f} at similarity {threshold}; "
                  f"{lsh['candidate_pairs']} candidates, {lsh['false_candidates_dropped']} dropped by verification")


@app.command()
def decontam(
    ref: str,
    against: Annotated[list[str], typer.Option("--against", help="Eval dataset refs (probes or any kind).")],
    name: NameOpt,
    method: Annotated[str, typer.Option(help="ngram (overlap, GPT-3 style) or near (MinHash similarity).")] = "ngram",
    ngram: Annotated[int, typer.Option(help="Tokens per n-gram (13 as in GPT-3).")] = 13,
    min_tokens: Annotated[int, typer.Option(help="Shorter eval items only match a row that equals them.")] = 8,
    threshold: Annotated[float, typer.Option(help="Similarity for --method near.")] = 0.8,
    field: FieldOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Drop training rows that contain eval items; the report says which items leaked through which rows."""
    from datakit.ops import runner
    from datakit.ops.decontam import decontam as op

    r = reg()
    train = runner.load(r, [ref])[0]
    evals = runner.load(r, against)
    params = {"input": train[0].ref, "against": [m.ref for m, _ in evals], "method": method, "ngram": ngram,
              "min_tokens": min_tokens, "threshold": threshold, "field": field}
    with working("checking for contamination"):
        o = op(train, evals, field=field, method=method, ngram=ngram, min_tokens=min_tokens, threshold=threshold)  # type: ignore[arg-type]
    # the eval sets are parents too: the version's lineage says what it was checked against
    _commit_all(r, [train[0]], [o], _names([ref], name), "decontam", params, as_json,
                parents=[train[0], *[m for m, _ in evals]])
    if not as_json:
        for eref, v in o.stats["against"].items():
            out.print(f"  {eref}: {v['items_leaked']} of {v['items']} eval items leaked")


@app.command()
def split(
    ref: str,
    name: NameOpt,
    valid: Annotated[float, typer.Option(help="Fraction of rows for validation.")],
    test: Annotated[float, typer.Option(help="Fraction of rows for test.")] = 0.0,
    seed: int = 0,
    field: FieldOpt = "auto",
    threshold: Annotated[float, typer.Option(help="Similarity that joins rows without group_id into one group.")] = 0.7,
    as_json: JsonOpt = False,
) -> None:
    """Group-aware, seeded split: a group_id (or a near-duplicate cluster) never spans two sides."""
    from datakit.ops import runner
    from datakit.ops.split import split as op

    r = reg()
    inp = runner.load(r, [ref])[0]
    params = {"input": inp[0].ref, "valid": valid, "test": test, "seed": seed, "field": field, "threshold": threshold}
    with working("splitting"):
        o = op(inp, valid=valid, test=test, seed=seed, field=field, threshold=threshold)
    _commit_all(r, [inp[0]], [o], _names([ref], name), "split", params, as_json)
    if not as_json:
        s = o.stats
        out.print("  " + ", ".join(f"{k} {s['rows'][k]} rows / {s['groups'][k]} groups" for k in ("train", "valid", "test")))


@app.command()
def mix(
    spec: Annotated[Path, typer.Argument(help="Mixture YAML (schemas/mixture.schema.json).")],
    name: Annotated[Optional[str], typer.Option("--name", help="Output name (overrides the spec's).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Mix datasets by share of rows or tokens; prints planned vs realized shares."""
    from datakit.ops.mix import format_table, run_mix

    with working("mixing"):
        res = run_mix(reg(), spec, name=name)
    if as_json:
        emit_json(res.model_dump(mode="json", exclude={"manifest"}) | {"ref": res.manifest.ref, "content_hash": res.manifest.content_hash})
        return
    out.print(format_table(res))  # ends with the committed/unchanged line
