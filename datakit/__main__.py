"""`python -m datakit ...` is `datakit ...`."""

from datakit.cli import main

main()
