"""Faults of the environment or the data, as one line a person can act on (the CLI's error boundary).

    message, exit_code = describe(exc)

A full disk, a read-only or unwritable registry, a missing file, a damaged Parquet file or manifest, an
object-store error: each becomes a sentence naming the file (when the exception knows it) and the fix, with
exit code 1 (the data or the environment has a problem) or 2 (the command was given something wrong).
Anything else is reported as an internal error in one line; `--debug` shows the traceback.
"""

from __future__ import annotations

import errno

from datakit.errors import DatakitError

DEBUG_HINT = "run again with --debug for the traceback"


def _first_line(text: str, limit: int = 300) -> str:
    line = next((x.strip() for x in str(text).splitlines() if x.strip()), "")
    return line if len(line) <= limit else line[:limit] + "..."


def _os_fault(e: OSError) -> tuple[str, int]:
    where = e.filename or "a file"
    if e.errno == errno.ENOSPC:
        return (f"disk full while writing {where}: free space or point --registry at a larger disk; "
                "nothing partial was published (rerun after freeing space)"), 1
    if e.errno == errno.EDQUOT:
        return f"disk quota exceeded while writing {where}: free space or raise the quota, then rerun", 1
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        kind = "read-only" if e.errno == errno.EROFS else "not writable by this user"
        return (f"{where} is {kind}: read commands work here; to write, use a writable --registry "
                "(or fix the permissions)"), 2
    if e.errno == errno.ENOENT:
        return f"no such file or folder: {where}; check the path", 2
    if e.errno == errno.EISDIR:
        return f"{where} is a folder, a file was expected", 2
    return f"{where}: {e.strerror or e}", 1


def describe(e: BaseException) -> tuple[str, int]:
    """One line and an exit code for any exception a command may raise."""
    if isinstance(e, DatakitError):
        return str(e), e.exit_code
    if isinstance(e, MemoryError):
        return "out of memory: process a smaller input or a few refs at a time", 1
    if isinstance(e, OSError):
        return _os_fault(e)
    mod = type(e).__module__.split(".")[0]
    name = type(e).__name__
    if mod == "pydantic":
        return f"invalid data: {_first_line(e)}; run `datakit registry verify` if it comes from the registry", 1
    if mod == "polars" or mod == "pyarrow":
        return (f"cannot read the data ({name}: {_first_line(e)}); run `datakit registry verify` to find "
                "damaged files"), 1
    if mod == "obstore":
        return (f"storage error ({name}): {_first_line(e)}; check the bucket URL, the credentials in the "
                "environment and the network"), 1
    if mod == "openai":
        status = getattr(e, "status_code", None)
        return (f"the model server {'answered ' + str(status) if status else 'failed'} ({name}: {_first_line(e)}); "
                "check that it is up and serving the model, then rerun"), 1
    if isinstance(e, RecursionError):
        return "input nested too deeply to process; flatten it or reject the file", 2
    return f"internal error ({name}: {_first_line(e)}); {DEBUG_HINT} and report it", 1
