"""Preflight: check the model folder, its stop tokens and the rows before a training run starts.

    report = preflight(Path("models/qwen"), "sft", rows, max_seq_len=1024, backend="mlx")
    print(format_report(report)); report.ok

FIELD_NOTES 3.4: an inference script that did not stop on <|im_end|> let the model drift past its
answer. The stop token comes from the chat template, and must be in every stop set inference uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from datakit.errors import DatakitError
from datakit.train.chat_mask import render
from datakit.train.model_check import (
    Finding,
    check_model_dir,
    embedding_row_check,
    eos_ids,
    has_chat_template,
    read_json,
)

__all__ = ["Finding", "PreflightReport", "check_model_dir", "check_stop_tokens", "check_rows", "preflight",
           "format_report", "end_of_turn"]

BACKENDS = ("hf", "mlx")
PROBE_USER, PROBE_ANSWER = "Say hello.", "Hello there, friend."


class PreflightReport(BaseModel):
    ok: bool  # no error findings
    findings: list[Finding]
    stats: dict[str, Any]  # token length stats, end-of-turn token, rows over max_seq_len


def end_of_turn(tokenizer) -> tuple[str | None, Finding | None]:
    """The text the template writes right after an assistant turn's content ("<|im_end|>",
    "<|eot_id|>", "<end_of_turn>"), or None and the error that says why there is none."""
    convo = [{"role": "user", "content": PROBE_USER}, {"role": "assistant", "content": PROBE_ANSWER}]
    try:
        text = render(tokenizer, convo)
    except Exception as e:  # a template is user code: any exception is a finding, not a crash
        return None, Finding(level="error", check="stop_tokens", message=(
            f"the chat template fails on a plain 1-turn conversation ({type(e).__name__}: {e}); fix the template"))
    at = text.rfind(PROBE_ANSWER)
    if at < 0:
        return None, Finding(level="error", check="stop_tokens", message=(
            f"the chat template does not write the assistant content verbatim (rendered {text[-120:]!r}); "
            "cannot tell its end-of-turn token"))
    tail = text[at + len(PROBE_ANSWER):].lstrip()
    if not tail:
        return None, Finding(level="error", check="stop_tokens", message=(
            f"the chat template writes nothing after the assistant content (rendered {text!r}): no end-of-turn "
            "token, so the model will never learn to stop. Use a template that closes assistant turns "
            "(e.g. ChatML's <|im_end|>)"))
    # Prefer a registered added/special token the tail starts with; else the first whitespace-free piece.
    added = sorted((t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values()),
                   key=len, reverse=True)
    return next((t for t in added if t and tail.startswith(t)), tail.split()[0]), None


def _single_id(tokenizer, token: str) -> int | None:
    ids = tokenizer.encode(token, add_special_tokens=False)
    return ids[0] if len(ids) == 1 else None


def _stop_findings(tokenizer, model_dir: Path, backend: str) -> tuple[list[Finding], dict]:
    token, err = end_of_turn(tokenizer)
    if err:
        return [err], {"end_of_turn": None}
    tid = _single_id(tokenizer, token)
    if tid is None:
        ids = tokenizer.encode(token, add_special_tokens=False)
        return [Finding(level="error", check="stop_tokens", message=(
            f"the end-of-turn text {token!r} is {len(ids)} tokens {ids}, not one token id; no stop set can hold it. "
            "Register it as a special token (and train its embedding) or use the model's own template"))], \
            {"end_of_turn": token}
    out: list[Finding] = []
    stats = {"end_of_turn": token, "end_of_turn_id": tid}
    config, cerr = read_json(model_dir / "config.json", "stop_tokens")
    config_eos = eos_ids(config.get("eos_token_id")) if isinstance(config, dict) else []
    gen_path = model_dir / "generation_config.json"
    if gen_path.exists():
        gen, gerr = read_json(gen_path, "stop_tokens")
        if gerr:
            return [gerr], stats
        gen_eos = eos_ids(gen.get("eos_token_id")) if isinstance(gen, dict) else []
        if tid not in gen_eos:
            out.append(Finding(level="error", check="stop_tokens", message=(
                f"{gen_path}: eos_token_id {gen_eos} lacks the end-of-turn token {token!r} (id {tid}); HF generate() "
                f"will run past the end of each answer. Fix: add {tid} to eos_token_id in generation_config.json")))
    else:
        gen_eos = []
        if not cerr and tid not in config_eos:  # without generation_config.json, HF uses config.json's ids
            out.append(Finding(level="error", check="stop_tokens", message=(
                f"{model_dir}: no generation_config.json and config.json eos_token_id {config_eos} lacks the "
                f"end-of-turn token {token!r} (id {tid}). Fix: add {tid} to eos_token_id in config.json and "
                "generation_config.json")))
    if backend == "mlx" and not cerr:
        # mlx-lm 0.32 stops on generation_config's ids (else config.json's) plus the tokenizer's eos;
        # older mlx-lm and other servers read config.json only.
        mlx_stop = set(gen_eos or config_eos) | ({tokenizer.eos_token_id} - {None})
        if tid not in mlx_stop:
            out.append(Finding(level="error", check="stop_tokens", message=(
                f"mlx-lm would not stop on {token!r} (id {tid}): stop ids {sorted(mlx_stop)}. "
                f"Fix: add {tid} to eos_token_id in config.json and generation_config.json")))
        elif tid not in config_eos:
            out.append(Finding(level="warning", check="stop_tokens", message=(
                f"{model_dir / 'config.json'}: eos_token_id {config_eos} lacks {token!r} (id {tid}); older mlx-lm "
                f"servers stop only on these. Fix: add {tid} to eos_token_id in config.json")))
    try:
        untrained = embedding_row_check(model_dir, token, tid)
    except Exception as e:  # a damaged weight file must not stop the other checks
        untrained = Finding(level="warning", check="embeddings",
                            message=f"{model_dir}: could not read the embedding row ({type(e).__name__}: {e})")
    return out + ([untrained] if untrained else []), stats


def check_stop_tokens(model_dir: Path, backend: Literal["hf", "mlx"]) -> list[Finding]:
    """End-of-turn token from the template: one token id, in every stop set, with a trained embedding."""
    tokenizer, err = _load_tokenizer(Path(model_dir))
    return [err] if err else _stop_findings(tokenizer, Path(model_dir), backend)[0]


# ---- rows ---------------------------------------------------------------------------------


def _turn_ends(text: str, messages: list[dict], eot: str) -> tuple[int, int]:
    """(assistant turns not followed by `eot`, assistant turns whose content the render rewrote)."""
    bad = unseen = 0
    cursor = 0
    for m in messages:
        content = m.get("content")
        if not isinstance(content, str) or not content.strip():
            continue
        at = text.find(content.strip(), cursor)
        if at < 0:
            unseen += m.get("role") == "assistant"
            continue
        cursor = at + len(content.strip())
        if m.get("role") == "assistant" and not text[cursor:].lstrip().startswith(eot):
            bad += 1
    return bad, unseen


def _group(level: str, check: str, by_message: dict[str, list[int]], total: int) -> list[Finding]:
    return [Finding(level=level, check=check, message=f"{len(rows)} of {total} rows: {msg}", rows=rows)
            for msg, rows in list(by_message.items())[:10]]


def _percentile(sorted_vals: list[int], q: float) -> int:
    return sorted_vals[min(len(sorted_vals) - 1, int(q * len(sorted_vals)))]


def _render_rows(tokenizer, kind: str, rows: list[dict], eot: str | None) -> tuple[list[list[str]], dict]:
    """Renders per row (empty when a render failed) and the row indexes per problem."""
    texts: list[list[str]] = []  # one render per row; two for preference (chosen and rejected)
    problems: dict[str, Any] = {"render": {}, "no_eot": set(), "rewritten": set()}
    for i, row in enumerate(rows):
        if kind == "cpt":
            ok = isinstance(row.get("text"), str)
            texts.append([row["text"]] if ok else [])
            if not ok:
                problems["render"].setdefault("no 'text' string field", []).append(i)
            continue
        convos = ([row.get("prompt", []) + row.get(k, []) for k in ("chosen", "rejected")] if kind == "preference"
                  else [row.get("prompt", []) + row.get("completion", [])] if kind == "kto" else [row.get("messages")])
        rendered = []
        for messages in convos:
            if not isinstance(messages, list) or not messages:
                problems["render"].setdefault(f"no messages to render (kind {kind})", []).append(i)
                break
            try:
                text = render(tokenizer, messages, row.get("tools"))
            except Exception as e:  # the template is user code; report the row, keep going
                problems["render"].setdefault(f"the chat template raised {type(e).__name__}: {e}", []).append(i)
                break
            rendered.append(text)
            bad, unseen = _turn_ends(text, messages, eot) if eot else (0, 0)
            if bad:
                problems["no_eot"].add(i)
            if unseen:
                problems["rewritten"].add(i)
        texts.append(rendered if len(rendered) == len(convos) else [])
    return texts, problems


def check_rows(tokenizer, kind: str, rows: list[dict], *, max_seq_len: int) -> tuple[list[Finding], dict]:
    """Render every row, check each assistant turn ends with the end-of-turn token, count tokens.

    cpt rows count `text` + eos; preference rows count prompt+chosen and prompt+rejected (the longer
    one decides truncation)."""
    findings: list[Finding] = []
    eot = None
    if kind != "cpt":
        eot, _ = end_of_turn(tokenizer)
        if eot is None:
            findings.append(Finding(level="info", check="turn_ends",
                                    message="per-turn end-of-turn check skipped: the template has no end-of-turn token"))
    texts, problems = _render_rows(tokenizer, kind, rows, eot)
    n = len(rows)
    findings += _group("error", "render", problems["render"], n)
    if no_eot := sorted(problems["no_eot"]):
        findings.append(Finding(level="error", check="turn_ends", rows=no_eot, message=(
            f"{len(no_eot)} of {n} rows have an assistant turn not followed by {eot!r} in the render; the model "
            "would not learn to stop there. Fix the template or the row")))
    if rewritten := sorted(problems["rewritten"]):
        findings.append(Finding(level="warning", check="turn_ends", rows=rewritten, message=(
            f"{len(rewritten)} of {n} rows have assistant content the template rewrites (not found verbatim); "
            "their turn ends were not checked")))
    lengths = _token_counts(tokenizer, kind, texts)
    stats: dict[str, Any] = {"rows": n, "rendered": sum(1 for t in texts if t), "max_seq_len": max_seq_len}
    if eot:
        stats["end_of_turn"] = eot
    counted = sorted(lengths.values())
    if counted:
        stats["tokens"] = {"min": counted[0], "mean": round(sum(counted) / len(counted), 1),
                           "p50": _percentile(counted, 0.5), "p95": _percentile(counted, 0.95), "max": counted[-1],
                           "total": sum(counted)}
    over = [i for i, v in lengths.items() if v > max_seq_len]
    stats["over_max_seq_len"] = len(over)
    if over:
        findings.append(Finding(level="warning", check="length", rows=over, message=(
            f"{len(over)} of {n} rows would be truncated at max_seq_len={max_seq_len} (longest {counted[-1]} "
            "tokens); TRL truncates silently. Raise max_seq_len, or split or drop those rows")))
    if not rows:
        findings.append(Finding(level="warning", check="rows", message="no rows to check"))
    return findings, stats


def _token_counts(tokenizer, kind: str, texts: list[list[str]]) -> dict[int, int]:
    """Row index -> token count (the longer render for preference rows); unrendered rows are left out."""
    flat = [(i, t) for i, ts in enumerate(texts) for t in ts]
    if not flat:
        return {}
    ids = tokenizer([t for _, t in flat], add_special_tokens=False)["input_ids"]
    extra = 1 if kind == "cpt" else 0  # cpt documents get an eos appended
    out: dict[int, int] = {}
    for (i, _), seq in zip(flat, ids):
        out[i] = max(out.get(i, 0), len(seq) + extra)
    return out


# ---- the whole preflight ------------------------------------------------------------------


def _load_tokenizer(model_dir: Path) -> tuple[Any, Finding | None]:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=False), None
    except Exception as e:  # anything the loader raises is a finding, not a traceback
        return None, Finding(level="error", check="tokenizer", message=(
            f"{model_dir}: AutoTokenizer.from_pretrained failed ({type(e).__name__}: {e}); check the tokenizer "
            "files (remote code is never run)"))


def preflight(model_dir: Path, kind: str, rows: list[dict], *, max_seq_len: int, backend: str) -> PreflightReport:
    """Folder integrity, stop tokens (chat kinds) and rows; `ok` is False when any error was found."""
    if backend not in BACKENDS:
        raise DatakitError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    model_dir = Path(model_dir)
    findings = check_model_dir(model_dir, backend, kind=kind)  # type: ignore[arg-type]
    stats: dict[str, Any] = {"model_dir": str(model_dir), "kind": kind, "backend": backend}
    if any(f.level == "error" and f.check in ("model_dir", "tokenizer") for f in findings):
        return _report(findings, stats)  # no tokenizer to check rows with
    tokenizer, err = _load_tokenizer(model_dir)
    if err:
        return _report(findings + [err], stats)
    chat = kind != "cpt"
    if chat and has_chat_template(model_dir):
        stop, stop_stats = _stop_findings(tokenizer, model_dir, backend)
        findings += stop
        stats.update(stop_stats)
    elif not chat and tokenizer.eos_token is None:
        findings.append(Finding(level="warning", check="stop_tokens", message=(
            f"{model_dir}: the tokenizer has no eos token; cpt documents will run together. Set eos_token")))
    if not chat or has_chat_template(model_dir):
        row_findings, row_stats = check_rows(tokenizer, kind, rows, max_seq_len=max_seq_len)
        findings += row_findings
        stats.update(row_stats)
    config, err = read_json(model_dir / "config.json", "model_dir")
    positions = config.get("max_position_embeddings") if not err and isinstance(config, dict) else None
    if isinstance(positions, int) and max_seq_len > positions:
        findings.append(Finding(level="warning", check="length", message=(
            f"max_seq_len={max_seq_len} exceeds the model's max_position_embeddings={positions}; "
            f"lower max_seq_len to {positions} or less")))
    return _report(findings, stats)


def _report(findings: list[Finding], stats: dict) -> PreflightReport:
    return PreflightReport(ok=not any(f.level == "error" for f in findings), findings=findings, stats=stats)


def format_report(report: PreflightReport) -> str:
    """Findings (errors first), then token stats, then a one-line verdict: for the CLI."""
    order = {"error": 0, "warning": 1, "info": 2}
    lines = []
    for f in sorted(report.findings, key=lambda f: order[f.level]):
        rows = f" [rows {', '.join(map(str, f.rows))}{', ...' if len(f.rows) >= 20 else ''}]" if f.rows else ""
        lines.append(f"{f.level.upper():7} {f.check}: {f.message}{rows}")
    s = report.stats
    if "end_of_turn" in s:
        lines.append(f"end-of-turn: {s['end_of_turn']!r} (id {s.get('end_of_turn_id', '?')})")
    if "tokens" in s:
        t = s["tokens"]
        lines.append(f"tokens per row: min {t['min']}  mean {t['mean']}  p50 {t['p50']}  p95 {t['p95']}  "
                     f"max {t['max']}  ({s['rows']} rows, {s['over_max_seq_len']} over max_seq_len={s['max_seq_len']})")
    counts = {lvl: sum(f.level == lvl for f in report.findings) for lvl in order}
    verdict = "ok" if report.ok else "FAILED"
    lines.append(f"preflight {verdict}: {counts['error']} error(s), {counts['warning']} warning(s)")
    return "\n".join(lines)
