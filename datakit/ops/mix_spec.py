"""The mixture spec (recipes/mixtures/*.yaml, schemas/mixture.schema.json): which datasets, in what shares, how
many rows or tokens. `datakit.ops.mix` loads and runs it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from datakit.registry.names import check_name


class _Spec(BaseModel):
    # Not strict: YAML 1.1 reads `1e-5` as a string, and it should still be a float here.
    model_config = ConfigDict(extra="forbid")


def _check_ref(v: str) -> str:
    name, at, selector = v.partition("@")
    check_name(name)
    if at and not selector:
        raise ValueError(f"invalid ref {v!r}: nothing after '@'; write name@v1, name@TAG or name@HASH")
    return v


class MixComponent(_Spec):
    dataset: str = Field(description="registry ref: name (latest), name@v2, name@TAG or name@HASH")
    weight: float = Field(gt=0, description="relative weight; all weights are normalized to shares")

    _ref = field_validator("dataset")(_check_ref)


class ShareBound(_Spec):
    dataset: str = Field(description="a component's dataset, exactly as written under components")
    share: float = Field(ge=0, le=1)


class MixPolicy(_Spec):
    """One bound on one component's share; the free components keep their weight ratios."""

    min_share: ShareBound | None = None
    max_share: ShareBound | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> MixPolicy:
        if (self.min_share is None) == (self.max_share is None):
            raise ValueError("a policy sets exactly one of min_share or max_share, "
                             "e.g. {min_share: {dataset: acme-identity, share: 0.3}}")
        return self


class MixtureSpec(_Spec):
    """A mixture: which datasets, in what shares, how many rows (or tokens), how many copies at most."""

    name: str = Field(description="output dataset name (the CLI's --name overrides it)")
    seed: int = 0
    unit: Literal["rows", "tokens"] = Field("rows", description="what weights, shares and total count")
    total: int | None = Field(None, gt=0, description=(
        "rows (or tokens for unit tokens) in the mix; omit for the natural size: the largest total at "
        "which no component repeats a row, min over components of unique_rows / share (tokens likewise)"))
    max_repeats: int = Field(1, ge=1, description="most times any unique row may appear (copies teach repetition)")
    tokenizer: str | None = Field(None, description="local tokenizer folder for unit tokens; omit to estimate")
    engine: Literal["local", "ray"] | None = Field(None, description=(
        "where the mix runs: local (this process) or ray (a Ray cluster: DATAKIT_RAY_ADDRESS, else a local one); "
        "--engine overrides it, DATAKIT_ENGINE is the default; the version is the same either way"))
    components: list[MixComponent] = Field(min_length=1)
    policies: list[MixPolicy] = Field(default_factory=list)

    _name = field_validator("name")(check_name)

    @model_validator(mode="after")
    def _consistent(self) -> MixtureSpec:
        problems = []
        names = [c.dataset for c in self.components]
        problems += [f"components: {d} is listed twice; list each dataset once" for d in sorted({n for n in names if names.count(n) > 1})]
        lo: dict[str, float] = {}
        hi: dict[str, float] = {}
        for i, p in enumerate(self.policies):
            kind = "min_share" if p.min_share else "max_share"
            bound = p.min_share or p.max_share
            if bound is None:  # MixPolicy already refused this
                continue
            if bound.dataset not in names:
                problems.append(f"policies.{i}.{kind}.dataset: {bound.dataset!r} is not a component; "
                                f"use one of {', '.join(names)} exactly as written there")
            (lo if kind == "min_share" else hi)[bound.dataset] = bound.share
        problems += [f"policies: {d} has min_share {lo[d]} above its max_share {hi[d]}" for d in lo if d in hi and lo[d] > hi[d]]
        if sum(lo.values()) > 1 + 1e-9:
            problems.append(f"policies: min_share values sum to {sum(lo.values()):.3f} (over 1), so no mix satisfies them; lower them")
        if set(names) <= set(hi) and sum(hi.values()) < 1 - 1e-9:
            problems.append(f"policies: every component has a max_share and they sum to {sum(hi.values()):.3f} (under 1); raise one")
        if self.tokenizer is not None and self.unit != "tokens":
            problems.append("tokenizer: only used with unit: tokens; remove it or set unit: tokens")
        if problems:
            raise ValueError("; ".join(problems))
        return self
