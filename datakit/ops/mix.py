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
Only ids, group ids and token counts are held whole; the rows stream through an external shuffle
(`mix_rows`), on the local engine or on Ray (`engine:` in the YAML, --engine), with the same version.
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
from datakit.ops.batches import Progress, Source, frame_source, no_progress, registry_source
from datakit.ops.engine import Engine, LocalEngine, engine_name, make_engine
from datakit.ops.mix_rows import MixRows, training_order
from datakit.ops.mix_spec import MixtureSpec
from datakit.ops.runner import OpOutput
from datakit.ops.spill import Spill, spill_area
from datakit.registry.rows import empty_frame, with_ids
from datakit.registry.store import Registry
from datakit.schemas import Manifest, check_name
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
    source: Source
    pool: np.ndarray                 # row index of the first copy of each distinct id
    order: np.ndarray                # positions in `pool`, in picking order
    tokens: np.ndarray | None = None  # per pool row, for unit tokens

    @property
    def manifest(self) -> Manifest:
        return self.source.manifest

    @property
    def unique(self) -> int:
        return len(self.pool)


def _prepare(source: Source, rng: np.random.Generator) -> _Component:
    """The component's distinct rows and its picking order, from its ids and group ids alone."""
    keys = [df for df in source.batches(columns=["id", "group_id"])]
    ids = pl.concat(keys) if keys else pl.DataFrame(schema={"id": pl.String, "group_id": pl.String})
    pool = ids.with_row_index("i").filter(pl.col("id").is_first_distinct())
    return _Component(source, pool["i"].to_numpy().astype(np.int64), plan.spread_order(pool["group_id"], rng))


def _count_tokens(kind: str, comps: list[_Component], spec: MixtureSpec) -> str:
    """Tokens of every distinct row, counted a batch at a time."""
    tok = plan.load_tokenizer(spec.tokenizer) if spec.tokenizer else None
    for c in comps:
        in_pool = np.zeros(c.source.height, dtype=bool)
        in_pool[c.pool] = True
        counts, offset = [np.empty(0, np.int64)], 0
        for df in c.source.batches():
            rows = df.filter(pl.Series(in_pool[offset : offset + df.height]))
            offset += df.height
            counts.append(plan.estimate_tokens(kind, rows) if tok is None else plan.tokenizer_tokens(kind, rows, tok))
        c.tokens = np.concatenate(counts)
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


def plan_mix(sources: list[Source], spec: MixtureSpec, engine: Engine, spill: Spill,
             progress: Progress = no_progress) -> OpOutput:
    """Plan the mixture from the components' ids (and token counts), then give its rows as batches in training
    order (`mix_rows`); memory holds the plan, not the rows. Components in `spec.components` order."""
    if len(sources) != len(spec.components):
        raise DatakitError(f"mix got {len(sources)} components for {len(spec.components)} in the spec")
    manifests = [s.manifest for s in sources]
    kind = output_kind(manifests)
    shares = planned_shares(spec)
    names = [m.name for m in manifests]
    # each component's RNG comes from the seed and its name: its picking order does not depend on the others
    comps = [_prepare(s, plan.rng_for(spec.seed, s.manifest.name if names.count(s.manifest.name) == 1 else s.manifest.ref))
             for s in sources]
    token_count = _count_tokens(kind, comps, spec) if spec.unit == "tokens" else None
    total, counts = _plan_counts(comps, shares, spec)
    picks = [plan.take(c.order, n) for c, n in zip(comps, counts)]
    order = training_order([(c.pool[pos], rep) for c, (pos, rep) in zip(comps, picks)],
                           plan.rng_for(spec.seed, "training-order"))
    rows = MixRows(sources, order, kind, engine, spill, progress)

    tokens = [int(c.tokens[pos].sum()) for c, (pos, _) in zip(comps, picks)] if token_count else None
    realized = np.asarray(tokens or counts, dtype=np.float64)
    realized /= max(realized.sum(), 1)
    table = [ComponentReport(
        dataset=c.manifest.ref, content_hash=c.manifest.content_hash, kind=c.manifest.kind, rows_in=c.manifest.rows,
        unique_rows=c.unique, weight=sc.weight, planned_share=round(float(s), 6), realized_share=round(float(r), 6),
        rows=n, tokens=tokens[i] if tokens else None, max_repeat=math.ceil(n / c.unique) if c.unique else 0,
    ) for i, (c, sc, s, r, n) in enumerate(zip(comps, spec.components, shares, realized, counts))]
    stats = {
        "kind": kind, "rows_in": sum(c.manifest.rows for c in comps), "rows_out": rows.total, "unit": spec.unit,
        "total": total, "total_from": "spec" if spec.total else "natural", "seed": spec.seed,
        "max_repeats": spec.max_repeats, "components": [t.model_dump(exclude_none=True) for t in table],
    }
    if tokens is not None:
        stats |= {"tokens_out": sum(tokens), "token_count": token_count}
    same_kind = all(c.manifest.kind == kind for c in comps)  # a row moved to another kind hashes other columns
    return OpOutput(None, stats, extras={SOURCES_FILE: rows.side_file}, rows_unchanged=same_kind, batches=rows.batches)


def mix(components: list[tuple[Manifest, pl.DataFrame]], spec: MixtureSpec) -> OpOutput:
    """Mix component frames held in memory (in `spec.components` order) into one frame; no disk access."""
    spill = Spill(None)
    sources = [frame_source(m, df if "id" in df.columns else with_ids(m.kind, df)) for m, df in components]
    out = plan_mix(sources, spec, LocalEngine(spill), spill)
    side = out.extras[SOURCES_FILE]
    assert out.batches is not None and callable(side)
    batches = list(out.batches())  # first: the side file is written as they are
    frame = pl.concat(batches) if batches else empty_frame(out.stats["kind"])
    return OpOutput(frame, out.stats, extras={SOURCES_FILE: side().collect()}, rows_unchanged=out.rows_unchanged)


# ---- against the registry -----------------------------------------------------------------


def run_mix(reg: Registry, spec: MixtureSpec | Path, *, name: str | None = None, engine: str | None = None,
            ray_address: str | None = None, progress: Progress = no_progress) -> MixResult:
    """Resolve the components, mix a batch at a time (working files in the registry's staging area) and commit
    as `name` (default spec.name) with lineage. `engine`: --engine, else the spec's, else DATAKIT_ENGINE."""
    if not isinstance(spec, MixtureSpec):
        spec = load_spec(Path(spec))
    name = check_name(name or spec.name)
    manifests = [reg.resolve(c.dataset) for c in spec.components]
    for m in manifests:
        reg.check(m)  # an op never commits on top of a parent that fails the check
    with spill_area(reg.local_dir(".staging")) as spill:
        eng = make_engine(engine_name(engine or spec.engine), spill, ray_address=ray_address)
        out = plan_mix([registry_source(reg, m) for m in manifests], spec, eng, spill, progress)
        manifest, created = runner.commit(reg, name=name, kind=out.stats["kind"], inputs=manifests, op="mix",
                                          params=_resolved(spec, name, manifests, out.stats["total"]), out=out,
                                          engine=eng)
    return MixResult(manifest=manifest, created=created, unit=spec.unit, total=out.stats["total"],
                     rows_out=out.stats["rows_out"], components=out.stats["components"])


def _resolved(spec: MixtureSpec, name: str, manifests: list[Manifest], total: int) -> dict:
    """The spec as run: refs pinned to versions and the total filled in, so it reproduces this version. (The
    engine is left out: it changes where the work runs, not the version.)"""
    pinned = {c.dataset: m.ref for c, m in zip(spec.components, manifests)}
    params = spec.model_dump(mode="json", exclude_none=True, exclude={"engine"}) | {"name": name, "total": total}
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
