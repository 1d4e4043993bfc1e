"""The two ways a command fails: bad usage or input (exit 2) and a check that found a problem (exit 1)."""


class DatakitError(ValueError):
    """Usage or input error: the message says what, where, and the fix. Exit code 2.

    A ValueError, so pydantic validators may raise it too."""

    exit_code = 2


class CheckFailed(DatakitError):
    """A check (verify, lint, gate) found a problem. Exit code 1."""

    exit_code = 1
