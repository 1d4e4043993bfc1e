"""An eval suite: which probes, what the model must be called, which domain terms must not leak,
and how to generate and match. Loaded from YAML into `SuiteSpec`; probes from the registry or a jsonl.

    suite = load_suite(Path("recipes/evals/example-suite.yaml"))
    probes, source = load_probes(reg, suite, Path("recipes/evals"))
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from datakit.errors import DatakitError
from datakit.specfile import load_spec_file


class _Spec(BaseModel):
    # Not strict: YAML reads `1e-5` as a string, and it should still be a float here.
    model_config = ConfigDict(extra="forbid")


class IdentitySpec(_Spec):
    name: str = Field(description="the assistant's name; identity probes must say it")
    maker: str | None = Field(None, description="who made it; identity probes must say it too when set")
    deny_default_list: bool = Field(True, description="fail answers naming a well-known AI vendor or model")
    deny: list[str] = Field(default_factory=list, description="more names that must not appear")
    allow: list[str] = Field(default_factory=list, description="names exempt from the deny list (e.g. your own base)")


class GenerationSpec(_Spec):
    max_new_tokens: int = Field(96, gt=0)
    temperature: float = Field(0.0, ge=0, description="0 is greedy")
    seed: int = 0
    batch_size: int = Field(8, gt=0)
    samples: int = Field(1, ge=1, description="answers sampled per generation probe (needs temperature > 0): the "
                                              "item scores the share that pass; sample k uses seed + k on every model")


class ScoringSpec(_Spec):
    match: Literal["contains", "exact", "fuzzy"] = Field("contains", description="how knowledge/completion answers match")
    fuzzy_threshold: float = Field(85, ge=0, le=100, description="rapidfuzz partial_ratio needed for match: fuzzy")
    answer_nll: bool = Field(True, description="also score the teacher-forced NLL per token of each knowledge or "
                                               "completion probe's reference answer (answer.nll, <group>.answer_nll; "
                                               "hf and mlx backends): it moves before greedy accuracy flips")


class SuiteSpec(_Spec):
    """A regression suite (see recipes/evals/example-suite.yaml)."""

    name: str
    probes: str = Field(description="registry ref (acme-probes@v1) or a .jsonl path relative to the suite file")
    identity: IdentitySpec | None = None
    bleed_terms: list[str] = Field(default_factory=list, description="domain terms that must not appear in general answers")
    lm_eval_tasks: list[str] = Field(default_factory=list)
    generation: GenerationSpec = Field(default_factory=GenerationSpec)
    scoring: ScoringSpec = Field(default_factory=ScoringSpec)


def load_suite(path: Path) -> SuiteSpec:
    """YAML into a SuiteSpec; every problem in one message that names the file and field."""
    return load_spec_file(path, SuiteSpec, "suite", "suite.schema.json")


def _is_path(ref: str) -> bool:
    return ref.endswith(".jsonl") or "/" in ref or ref.startswith(".")


def load_probes(reg: Any, spec: SuiteSpec, suite_dir: Path) -> tuple[list[dict[str, Any]], str]:
    """The suite's probe records and where they came from ("ref@vN (hash)" or "path (sha256)")."""
    if _is_path(spec.probes):
        return _probes_from_jsonl(suite_dir / spec.probes)
    from datakit.registry.rows import frame_to_records

    m = reg.resolve(spec.probes)
    if m.kind != "probes":
        raise DatakitError(f"suite {spec.name}: probes {spec.probes} resolves to {m.ref}, a {m.kind} dataset; "
                           "give a probes dataset (ingest it with --kind probes)")
    rows = list(frame_to_records("probes", reg.load(m)))
    if not rows:
        raise DatakitError(f"suite {spec.name}: probes {m.ref} has no rows")
    return rows, f"{m.ref} ({m.content_hash})"


def _probes_from_jsonl(path: Path) -> tuple[list[dict[str, Any]], str]:
    from datakit.io.validate import validate_record

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatakitError(f"{path}: no such probes file; give a jsonl path relative to the suite file "
                           "or a registry ref such as acme-probes@v1") from None
    rows, problems = [], []
    for n, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = validate_record("probes", orjson.loads(line))
        except (orjson.JSONDecodeError, ValueError) as e:  # pydantic's ValidationError is a ValueError
            problems.append(f"  line {n}: {str(e).splitlines()[0] if isinstance(e, orjson.JSONDecodeError) else _short(e)}")
            continue
        row.setdefault("id", f"{path.stem}-{n}")
        rows.append(row)
    if problems:
        raise DatakitError(f"{path}: {len(problems)} bad probe row(s):\n" + "\n".join(problems[:20]))
    if not rows:
        raise DatakitError(f"{path}: no probe rows")
    ids = [r["id"] for r in rows]
    if dupes := sorted({i for i in ids if ids.count(i) > 1}):
        raise DatakitError(f"{path}: probe ids must be unique; repeated: {', '.join(dupes[:10])}")
    return rows, f"{path} (sha256 {hashlib.sha256(data).hexdigest()})"


def _short(e: Exception) -> str:
    if isinstance(e, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
    return str(e)
