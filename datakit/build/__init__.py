"""Builders: documents and specs in, registry records out (cpt now; sft, identity, magpie, preference to come)."""
