"""Data in and out: `readers` (files in blocks), `formats` (detection and conversion), `validate` (frame rules),
`ingest` (files into the registry with a quarantine), `export` (plain rows, training splits, lm-eval tasks)."""
