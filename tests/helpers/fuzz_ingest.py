"""Test helper: ingest every mutated case in this process, check the invariants, print one JSON summary line.

    python -m tests.helpers.fuzz_ingest SEED N
Run as a child so that a crash of the interpreter (a segfault in a parser) fails the test instead of the run.
Invariants per case: only DatakitError may escape (a whole-file refusal with its message); rows in = kept +
rejected = the file's non-blank lines (JSONL) or elements; every rejected row has a reason and a line or row;
the version loads and verifies; no case takes more than 20 s.
"""

from __future__ import annotations

import json
import signal
import sys
import tempfile
import traceback
from pathlib import Path

from datakit.errors import DatakitError
from datakit.io.ingest import ingest
from datakit.registry.store import Registry
from datakit.registry.verify import verify
from tests.helpers.mutate import cases

TIME_BOUND_S = 20
CLEAN_BOM = {"bom_start", "bom_start+array", "bom_start+csv", "bom_start+text"}  # valid files but for the BOM


def _expected_rows(data: bytes, suffix: str) -> int | None:
    if suffix in (".jsonl", ".txt"):
        return len([x for x in data.split(b"\n") if x.strip()])
    return None  # an array's element count, a CSV's records (quoted newlines) are only known to a parser


def main() -> None:
    seed, n = int(sys.argv[1]), int(sys.argv[2])
    tmp = Path(tempfile.mkdtemp())
    reg = Registry(tmp / "registry")

    def hang(*_: object) -> None:
        raise TimeoutError(f"no answer in {TIME_BOUND_S}s")

    signal.signal(signal.SIGALRM, hang)
    summary: dict = {"cases": 0, "ingested": 0, "refused": 0, "rows_in": 0, "rejected": 0, "violations": []}
    for i, case in enumerate(cases(seed, n)):
        path = tmp / f"case{i}{case.suffix}"
        path.write_bytes(case.data)
        summary["cases"] += 1
        signal.alarm(TIME_BOUND_S)
        try:
            res = ingest(reg, [path], name=f"case{i}", kind=case.kind, fmt="lines" if case.suffix == ".txt" else "auto")
            summary["ingested"] += 1
            summary["rows_in"] += res.rows_in
            summary["rejected"] += res.rejected
            expected = _expected_rows(case.data, case.suffix)
            if res.rows_in != res.kept + res.rejected or (expected is not None and res.rows_in != expected):
                summary["violations"].append([i, case.name, f"rows {res.rows_in} != {res.kept}+{res.rejected} ({expected})"])
            if case.name in CLEAN_BOM and (res.rejected or "\ufeff" in str(reg.load(res.manifest).row(0))):
                summary["violations"].append([i, case.name, "a BOM at the start of the file rejected or kept"])
            q = reg.extra(res.manifest, "quarantine.parquet")
            if res.rejected and (q is None or q.height != res.rejected or q["reason"].is_null().any()
                                 or (q["line"].is_null() & q["row"].is_null()).any()):
                summary["violations"].append([i, case.name, "a reject without its reason or position"])
            if reg.load(res.manifest).height != res.kept or verify(reg, res.manifest.ref)[1]:
                summary["violations"].append([i, case.name, "the version does not read back or verify"])
        except DatakitError as e:
            summary["refused"] += 1
            if case.name in CLEAN_BOM:
                summary["violations"].append([i, case.name, f"a BOM at the start of the file refused it: {e}"[:300]])
        except BaseException as e:  # noqa: BLE001 - the finding this harness exists for
            summary["violations"].append([i, case.name, f"{type(e).__name__}: {e}"[:300],
                                          traceback.format_exc(limit=3)[-600:]])
        finally:
            signal.alarm(0)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
