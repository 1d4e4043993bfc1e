"""`python -m datakit.cli ...` is `datakit ...`."""

from datakit.cli import main

main()
