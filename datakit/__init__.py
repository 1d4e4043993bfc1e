"""datakit: versioned datasets, builders, training hand-off and regression evals."""
__version__ = "0.1.0"
