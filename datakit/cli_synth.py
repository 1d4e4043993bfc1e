"""`datakit synth ...`: synthetic datasets written by a generator model (Magpie instructions, preference pairs)."""

from __future__ import annotations

import typer

from datakit.cli_common import app

synth_app = typer.Typer(help="Synthesize datasets with a generator model.", no_args_is_help=True)
app.add_typer(synth_app, name="synth")

# the commands live one per module
from datakit import cli_synth_magpie, cli_synth_preference  # noqa: E402,F401
