"""Registry ops: plain functions from records (polars frames) and keyword params to records plus stats.

`runner` loads inputs and commits outputs with lineage; the op modules never touch the disk.
"""
