"""Builders: documents and specs in, registry records out (cpt, sft, identity offline; magpie and preference
through a generator). Each `run_build_*` / `run_*` commits its rows with lineage."""
