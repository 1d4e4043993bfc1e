"""`datakit mix`: registry versions in planned shares -> one new version, every row traceable.

A mixture (`MixtureSpec`, YAML) lists components with weights. How it becomes rows:
1. Shares: weights normalized, then held within min_share / max_share policies; the free
   components keep their weight ratios (`mix_plan.solve_shares`).
2. Total: as given, or the natural size, the largest total at which no component repeats a
   row: min over components of unique_rows / share (tokens / share for unit tokens).
3. Counts: rows by largest remainder (they sum to the total exactly); tokens: each component
   takes rows until its share of the token budget is closest.
4. Rows: each component's unique rows (distinct `id`) in a seeded spread order (round robin
   over `group_id` groups); all of them once before any copy, never past max_repeats.
5. The picks are shuffled (seeded) into training order; `mix_sources.parquet` maps every
   output row back to its component, source row and repeat number.
Realized shares are within 1/total of the plan for rows (1 pp from 100 rows on).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from pydantic import BaseModel

from datakit.errors import DatakitError
from datakit.ops import mix_plan as plan
from datakit.ops import runner
from datakit.ops.mix_spec import MixtureSpec
from datakit.ops.runner import OpOutput
from datakit.registry.rows import with_ids
from datakit.registry.store import Registry
from datakit.schemas import FRAME_SCHEMAS, Manifest, check_name, stored_schema
from datakit.specfile import load_spec_file

OUTPUT_KIND = {"sft": "sft", "identity": "sft", "magpie": "sft", "cpt": "cpt", "preference": "preference", "kto": "kto"}
SOURCES_FILE = "mix_sources.parquet"


class ComponentReport(BaseModel):
    dataset: str
    content_hash: str
    kind: str
    rows_in: int
    unique_rows: int
    weight: float
    planned_share: float
    realized_share: float
    rows: int
    tokens: int | None = None
    max_repeat: int


class MixResult(BaseModel):
    manifest: Manifest
    created: bool
    unit: str
    total: int
    rows_out: int
    components: list[ComponentReport]


# ---- the spec -----------------------------------------------------------------------------


def load_spec(path: Path) -> MixtureSpec:
    """Read a mixture YAML; every problem is reported at once, with the file and the field."""
    return load_spec_file(path, MixtureSpec, "mixture", "mixture.schema.json")


def planned_shares(spec: MixtureSpec) -> np.ndarray:
    lo = {p.min_share.dataset: p.min_share.share for p in spec.policies if p.min_share}
    hi = {p.max_share.dataset: p.max_share.share for p in spec.policies if p.max_share}
    names = [c.dataset for c in spec.components]
    return plan.solve_shares([c.weight for c in spec.components], [lo.get(n, 0.0) for n in names],
                             [hi.get(n, 1.0) for n in names])


def output_kind(manifests: list[Manifest]) -> str:
    """Chat kinds mix into sft; cpt with cpt; preference with preference. Anything else is refused."""
    kinds = {OUTPUT_KIND.get(m.kind, m.kind) for m in manifests}
    if len(kinds) == 1 and next(iter(kinds)) in OUTPUT_KIND:
        return kinds.pop()
    listed = ", ".join(f"{m.ref} ({m.kind})" for m in manifests)
    raise DatakitError(f"cannot mix {listed}: mix chat kinds (sft, identity, magpie) together, cpt with cpt, "
                       "or preference with preference; make one mixture per kind")


# ---- the op -------------------------------------------------------------------------------


@dataclass
class _Component:
    manifest: Manifest
    frame: pl.DataFrame
    pool: np.ndarray                 # row index of the first copy of each distinct id
    order: np.ndarray                # positions in `pool`, in picking order
    tokens: np.ndarray | None = None  # per pool row, for unit tokens

    @property
    def unique(self) -> int:
        return len(self.pool)


def _prepare(m: Manifest, df: pl.DataFrame, rng: np.random.Generator) -> _Component:
    df = df if "id" in df.columns else with_ids(m.kind, df)  # a frame built in memory may lack ids
    pool = df.select("id", "group_id").with_row_index("i").filter(pl.col("id").is_first_distinct())
    return _Component(m, df, pool["i"].to_numpy().astype(np.int64), plan.spread_order(pool["group_id"], rng))


def _count_tokens(kind: str, comps: list[_Component], spec: MixtureSpec) -> str:
    tok = plan.load_tokenizer(spec.tokenizer) if spec.tokenizer else None
    for c in comps:
        rows = c.frame[pl.Series(c.pool)]
        c.tokens = plan.estimate_tokens(kind, rows) if tok is None else plan.tokenizer_tokens(kind, rows, tok)
    return "estimate" if tok is None else "tokenizer"


def _repeat_problem(ref: str, need: int, share: float, total: int, have: int, unit: str, rows: int,
                    max_repeats: int) -> str:
    allowed = have * max_repeats
    if unit == "rows":
        more = math.ceil(need / max_repeats) - have
        return (f"{ref} needs {need:,} rows for a {share:.1%} share of {total:,} but has {have:,} unique rows; "
                f"max_repeats {max_repeats} allows {allowed:,}: add {more:,} more unique rows (datakit augment) "
                "or raise max_repeats")
    more = math.ceil((need / max_repeats - have) / max(have / max(rows, 1), 1e-9))
    return (f"{ref} needs {need:,} tokens for a {share:.1%} share of {total:,} but has {have:,} tokens in {rows:,} "
            f"unique rows; max_repeats {max_repeats} allows {allowed:,}: add about {more:,} more unique rows "
            "(datakit augment) or raise max_repeats")


def _plan_counts(comps: list[_Component], shares: np.ndarray, spec: MixtureSpec) -> tuple[int, list[int]]:
    """The total (given or natural) and how many rows each component gives; refuses too many repeats."""
    sizes = [c.unique if c.tokens is None else int(c.tokens.sum()) for c in comps]
    total = spec.total or plan.natural_total(sizes, shares)
    if total == 0:
        empty = ", ".join(c.manifest.ref for c, h in zip(comps, sizes) if h == 0)
        raise DatakitError(f"the natural size is 0: {empty} has no {spec.unit}; drop it or fill it first")
    need = plan.largest_remainder(shares, total) if spec.unit == "rows" else np.round(shares * total).astype(np.int64)
    problems = [_repeat_problem(c.manifest.ref, int(n), float(s), total, h, spec.unit, c.unique, spec.max_repeats)
                for c, n, s, h in zip(comps, need, shares, sizes) if n > h * spec.max_repeats]
    if problems:
        raise DatakitError("\n".join(problems))
    if spec.unit == "rows":
        return total, [int(n) for n in need]
    return total, [plan.count_for_budget(c.tokens[c.order], float(b), c.unique * spec.max_repeats)  # type: ignore[index]
                   for c, b in zip(comps, need)]


def _dropped_fields(m: Manifest, df: pl.DataFrame, kind: str) -> pl.Series:
    """Kind-specific fields (identity intent/lang, magpie scores) the output kind has no column for."""
    dropped = [c for c in FRAME_SCHEMAS[m.kind] if c not in FRAME_SCHEMAS[kind]]
    if not dropped:
        return pl.Series("dropped_fields", [None] * df.height, dtype=pl.String)
    return df.select(pl.struct(dropped).struct.json_encode().alias("dropped_fields")).to_series()


def _assemble(comps: list[_Component], picks: list[tuple[np.ndarray, np.ndarray]], kind: str,
              seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Every pick in seeded training order: the rows (one gather) and where each came from."""
    offsets = np.cumsum([0] + [c.frame.height for c in comps[:-1]])
    source_index = np.concatenate([c.pool[pos] for c, (pos, _) in zip(comps, picks)])
    comp = np.concatenate([np.full(len(pos), i, np.int64) for i, (pos, _) in enumerate(picks)])
    repeat = np.concatenate([r for _, r in picks])
    perm = plan.rng_for(seed, "training-order").permutation(len(comp))
    comp, source_index, repeat = comp[perm], source_index[perm], repeat[perm]
    at = pl.Series(offsets[comp] + source_index)
    cols = list(stored_schema(kind))
    # one contiguous chunk first: a gather across chunks of nested lists is ~30x slower
    frame = pl.concat([c.frame.select(cols) for c in comps], rechunk=True)[at]
    refs = dict(enumerate(c.manifest.ref for c in comps))
    sources = pl.DataFrame({
        "component": pl.Series(comp).replace_strict(refs, return_dtype=pl.String),
        "source_id": frame["id"],
        "source_index": source_index,
        "repeat": repeat.astype(np.int32),
        "dropped_fields": pl.concat([_dropped_fields(c.manifest, c.frame, kind) for c in comps], rechunk=True).gather(at),
    })
    return frame, sources


def mix(components: list[tuple[Manifest, pl.DataFrame]], spec: MixtureSpec) -> OpOutput:
    """Mix loaded component versions (in `spec.components` order) into one frame; no disk access."""
    if len(components) != len(spec.components):
        raise DatakitError(f"mix got {len(components)} loaded components for {len(spec.components)} in the spec")
    kind = output_kind([m for m, _ in components])
    shares = planned_shares(spec)
    names = [m.name for m, _ in components]
    # each component's RNG comes from the seed and its name: its picking order does not depend on the others
    comps = [_prepare(m, df, plan.rng_for(spec.seed, m.name if names.count(m.name) == 1 else m.ref))
             for m, df in components]
    token_count = _count_tokens(kind, comps, spec) if spec.unit == "tokens" else None
    total, counts = _plan_counts(comps, shares, spec)
    picks = [plan.take(c.order, n) for c, n in zip(comps, counts)]
    frame, sources = _assemble(comps, picks, kind, spec.seed)

    tokens = [int(c.tokens[pos].sum()) for c, (pos, _) in zip(comps, picks)] if token_count else None
    realized = np.asarray(tokens or counts, dtype=np.float64)
    realized /= max(realized.sum(), 1)
    table = [ComponentReport(
        dataset=c.manifest.ref, content_hash=c.manifest.content_hash, kind=c.manifest.kind, rows_in=c.manifest.rows,
        unique_rows=c.unique, weight=sc.weight, planned_share=round(float(s), 6), realized_share=round(float(r), 6),
        rows=n, tokens=tokens[i] if tokens else None, max_repeat=math.ceil(n / c.unique) if c.unique else 0,
    ) for i, (c, sc, s, r, n) in enumerate(zip(comps, spec.components, shares, realized, counts))]
    stats = {
        "kind": kind, "rows_in": sum(c.manifest.rows for c in comps), "rows_out": frame.height, "unit": spec.unit,
        "total": total, "total_from": "spec" if spec.total else "natural", "seed": spec.seed,
        "max_repeats": spec.max_repeats, "components": [t.model_dump(exclude_none=True) for t in table],
    }
    if tokens is not None:
        stats |= {"tokens_out": sum(tokens), "token_count": token_count}
    same_kind = all(c.manifest.kind == kind for c in comps)  # a row moved to another kind hashes other columns
    return OpOutput(frame=frame, stats=stats, extras={SOURCES_FILE: sources}, rows_unchanged=same_kind)


# ---- against the registry -----------------------------------------------------------------


def run_mix(reg: Registry, spec: MixtureSpec | Path, *, name: str | None = None) -> MixResult:
    """Resolve the components, mix, and commit as `name` (default spec.name) with lineage."""
    if not isinstance(spec, MixtureSpec):
        spec = load_spec(Path(spec))
    name = check_name(name or spec.name)
    inputs = runner.load(reg, [c.dataset for c in spec.components])
    out = mix(inputs, spec)
    manifest, created = runner.commit(reg, name=name, kind=out.stats["kind"], inputs=[m for m, _ in inputs],
                                      op="mix", params=_resolved(spec, name, inputs, out.stats["total"]), out=out)
    return MixResult(manifest=manifest, created=created, unit=spec.unit, total=out.stats["total"],
                     rows_out=out.stats["rows_out"], components=out.stats["components"])


def _resolved(spec: MixtureSpec, name: str, inputs: list[tuple[Manifest, pl.DataFrame]], total: int) -> dict:
    """The spec as run: refs pinned to versions and the total filled in, so it reproduces this version."""
    pinned = {c.dataset: m.ref for c, (m, _) in zip(spec.components, inputs)}
    params = spec.model_dump(mode="json", exclude_none=True) | {"name": name, "total": total}
    for c in params["components"]:
        c["dataset"] = pinned[c["dataset"]]
    for p in params["policies"]:
        for bound in p.values():
            bound["dataset"] = pinned[bound["dataset"]]
    return params


def format_table(result: MixResult) -> str:
    """Planned vs realized shares per component, as aligned text for a terminal."""
    head = ["dataset", "kind", "unique", "weight", "planned", "realized", "rows", "tokens", "max repeat"]
    body = [[c.dataset, c.kind, f"{c.unique_rows:,}", f"{c.weight:g}", f"{c.planned_share:.1%}",
             f"{c.realized_share:.1%}", f"{c.rows:,}", "-" if c.tokens is None else f"{c.tokens:,}",
             str(c.max_repeat)] for c in result.components]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))
             for r in [head, *body]]
    verb = "committed" if result.created else "unchanged, identical content already at"
    lines.append(f"{verb} {result.manifest.ref} ({result.manifest.kind}, {result.rows_out:,} rows, "
                 f"total {result.total:,} {result.unit}, hash {result.manifest.content_hash[:12]})")
    return "\n".join(lines)
