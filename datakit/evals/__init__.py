"""Regression eval suites: probes, runners (hf, mlx, openai), lm-eval tasks, paired comparison, gates, reports."""
