"""Hand-off to training: recipes, run folders and lineage, preflight, and the MLX and HF backends.

Backends are imported lazily: `datakit --help` and the data ops never import torch or mlx.
"""
