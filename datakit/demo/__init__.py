"""`datakit demo`: the whole loop (data -> mixtures -> training -> evals -> gate) on a fictional company."""

from datakit.demo.loop import DemoConfig, quick, run_demo

__all__ = ["DemoConfig", "quick", "run_demo"]
