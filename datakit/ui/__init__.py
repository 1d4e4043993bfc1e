"""The local web app: registry browser, lineage graph, review queue (`datakit ui`, `datakit review`)."""
