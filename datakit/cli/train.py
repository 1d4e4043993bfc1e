"""`datakit train RECIPE.yaml [--dry-run]`: the hand-off from registry versions to a training run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from datakit.cli.common import JsonOpt, app, emit_json, kv, out, reg


@app.command()
def train(
    recipe: Annotated[Path, typer.Argument(help="Training recipe YAML (schemas/recipe.schema.json).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate everything and print the plan; train nothing.")] = False,
    run_id: Annotated[Optional[str], typer.Option("--run-id", help="Reuse a run folder: an interrupted run resumes from its checkpoints.")] = None,
    backend: Annotated[Optional[str], typer.Option("--backend", help="Override the recipe's backend: mlx or hf.")] = None,
    base_model: Annotated[Optional[str], typer.Option("--base-model", help="Override the recipe's base_model folder.")] = None,
    launcher: Annotated[Optional[str], typer.Option("--launcher", help="hf: run each stage under a launcher, e.g. 'torchrun --nproc_per_node 4' or 'accelerate launch --config_file recipes/accelerate/fsdp.yaml'.")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="Estimate memory for this device instead of this machine's: cuda, gpu (Apple) or cpu.")] = None,
    memory_gb: Annotated[Optional[float], typer.Option("--memory-gb", help="Memory of the device you plan for, in GiB (with --device: will it fit there?).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override any field: KEY=VALUE, dotted, e.g. stages.1.train.epochs=8.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a recipe's stages (cpt -> sft -> dpo) on MLX or Hugging Face, each from the previous adapter."""
    from datakit.specfile import parse_overrides
    from datakit.train.memory import format_estimate
    from datakit.train.recipe import load_recipe
    from datakit.train.runner import run

    spec = load_recipe(recipe, overrides={**parse_overrides(set_ or []), "backend": backend, "base_model": base_model})
    if device not in (None, "cuda", "gpu", "cpu"):
        raise typer.BadParameter(f"--device {device}: use cuda, gpu (Apple silicon) or cpu")
    p, results = run(reg(), spec, recipe_dir=recipe.resolve().parent, dry_run=dry_run, run_id=run_id, launcher=launcher,
                     device=device, free_bytes=int(memory_gb * 2**30) if memory_gb else None)
    if as_json:
        emit_json({"plan": p.model_dump(mode="json"), "results": results})
        return
    out.print(f"{'plan' if dry_run else 'run'} [bold]{spec.name}[/] on {spec.backend}: {p.run_dir}")
    for s in p.stages:
        src = f" from {s.adapter_in}" if s.adapter_in else ""
        out.print(f"  {s.index + 1}. {s.stage:4} {s.data_ref} ({s.data_hash[:12]}) rows {kv(s.rows)}{src}")
        if s.memory is not None or s.memory_note:
            text = format_estimate(s.memory) if s.memory is not None else s.memory_note
            out.print(f"     memory {text}", markup=False, highlight=False)
        if s.preflight is not None:
            pre = s.preflight
            over = f"{pre['over_max_seq_len']} of {pre['rows']} rows longer than max_seq_len={pre['max_seq_len']} (cut)"
            state = "ok" if pre["ok"] else "FAILS: " + "; ".join(pre["errors"])
            out.print(f"     preflight {state}; {over}", markup=False, highlight=False)
    for r in results:
        early = " (stopped early)" if r["stopped_early"] else ""
        best = "-" if r["best_val_loss"] is None else f"{r['best_val_loss']:.4f}"  # None: no valid split
        out.print(f"  {r['stage']}: {r['steps']} steps, best val loss {best} at step {r['best_step']}{early} -> "
                  f"{r['adapter']}")
        if stop := r.get("stop_check"):
            out.print(f"     {stop_line(stop)}", markup=False, highlight=False)


def stop_line(stop: dict) -> str:
    """The stop check, said plainly: a tuned model that does not stop on its end-of-turn token rambles on."""
    n, k, token = stop["prompts"], stop["stopped"], stop.get("stop_token")
    line = f"stop check: {k} of {n} generations ended on {token or 'the end-of-turn token'}"
    if n and k < n / 2:
        line += (" -- WARNING: the model does not learn to stop; check the chat template's end-of-turn token in the "
                 "training rows (`datakit export --tokenizer` preflights it) or train longer; examples in stopcheck.json")
    return line


@app.command("tiny-model")
def tiny_model(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the model to (config, safetensors, tokenizer).")],
    layers: Annotated[int, typer.Option(help="Transformer layers.")] = 2,
    hidden: Annotated[int, typer.Option(help="Hidden size (width of every layer).")] = 64,
    seed: Annotated[int, typer.Option(help="Seed of the random weights (same seed, same model).")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Overwrite a model already in OUT_DIR.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """A tiny random Llama with a ChatML tokenizer, in Hugging Face format (mlx-lm loads it too): a base model to
    try every command on in seconds on a CPU (the example recipes and docs/quickstart.md use build/tiny-llama).
    It knows nothing: use a real model folder for real work."""
    from datakit.errors import DatakitError
    from datakit.tiny import build_llama

    if (out_dir / "config.json").exists() and not force:
        raise DatakitError(f"{out_dir}: a model is already there; pass --force to overwrite it")
    out_dir.mkdir(parents=True, exist_ok=True)
    build_llama(out_dir, layers=layers, hidden=hidden, seed=seed)
    size = sum(f.stat().st_size for f in out_dir.iterdir() if f.is_file())
    if as_json:
        emit_json({"path": str(out_dir), "layers": layers, "hidden": hidden, "seed": seed, "bytes": size})
    else:
        out.print(f"wrote a tiny random Llama ({layers} layers, hidden {hidden}, {size / 1e6:.1f} MB) to {out_dir}",
                  markup=False)
