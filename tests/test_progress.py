"""Progress wherever output goes: a terminal gets a bar; a log or CI gets plain lines at the start, every few
seconds and at the end, so long work (training, pre-training, evals) never looks hung."""

from __future__ import annotations

import io

from rich.console import Console

from datakit import progress


def test_without_a_terminal_progress_is_plain_lines_at_start_at_intervals_and_at_the_end(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    with progress.progress_bar("training sft", 200, console=console, fields={"loss": None}) as update:
        for step in range(1, 201):
            now[0] += 0.5  # 100 s in all
            update(step, loss=3.0 - step / 100)
    lines = out.getvalue().splitlines()
    assert lines[0] == "training sft: 0/200 steps (0%), 0s elapsed"
    assert lines[-1] == "training sft: 200/200 steps (100%), loss 1.000, 1m40s elapsed"
    assert 9 <= len(lines) <= 12  # one every 10 s, not one per step
    assert "~" in lines[1] and "left" in lines[1]  # an estimate of what is left while it runs


def test_a_training_stage_prints_its_progress_into_a_log(cli, reg, tmp_path, external):
    import yaml

    from datakit.tiny import build_llama
    from tests.test_train_e2e import TRAIN, split_version

    tiny = build_llama(tmp_path / "tiny")
    sft = split_version(reg, external / "identity.json", "idn", "sft")
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({
        "name": "progress", "backend": "hf", "base_model": str(tiny), "seed": 1, "output_dir": str(tmp_path / "runs"),
        "stages": [{"stage": "sft", "data": sft, "lora": {"rank": 4, "alpha": 8}, "train": TRAIN}]}))
    p = cli("train", str(tmp_path / "r.yaml"))  # stderr is a pipe here, as in `make demo > log`
    assert p.returncode == 0, p.stderr[-2000:]
    lines = [x for x in p.stderr.splitlines() if x.startswith("training sft")]
    assert lines[0].endswith("0/4 steps (0%), 0s elapsed") or " 0/4 steps" in lines[0]
    assert "4/4 steps (100%)" in lines[-1] and "loss" in lines[-1]
    assert "sft: 4 steps" in p.stdout and "stop check: " in p.stdout  # the summary says whether the model stops


def test_the_stop_check_is_printed_and_a_model_that_never_stops_is_a_warning():
    from datakit.cli.train import stop_line

    assert stop_line({"prompts": 4, "stopped": 4, "stop_token": "<|im_end|>"}) == \
        "stop check: 4 of 4 generations ended on <|im_end|>"
    warned = stop_line({"prompts": 4, "stopped": 0, "stop_token": "<|im_end|>"})
    assert warned.startswith("stop check: 0 of 4 generations ended on <|im_end|> -- WARNING") and "stopcheck.json" in warned
