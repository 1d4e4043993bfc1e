"""Registry ops: plain functions from records (polars frames) and keyword params to records plus stats.

`runner` loads inputs and commits outputs with lineage; each op module pairs its pure function with a `run_<op>`
that does both, and the op functions never touch the disk. `lint` reads a version and writes nothing.
"""
