"""Ingest under fuzzed input (tests/helpers/mutate.py: truncated lines, invalid UTF-8, BOMs, NUL bytes, CRLF,
nesting 100 to 20,000 deep, multi-megabyte lines, wrong types, mixed formats, a first row `{}`, cut files,
lone surrogates, duplicate keys; as JSONL, JSON arrays, CSV (plus too many fields, unclosed quotes, bare CRs)
and plain text): no traceback, no crash, no hang, rows in = kept +
rejected, every reject with its reason and position, a BOM at the start of a file costs no row. A few hundred cases here; `-m fuzz_long` (or
DATAKIT_FUZZ_CASES) runs thousands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(seed: int, n: int) -> dict:
    proc = subprocess.run([sys.executable, "-m", "tests.helpers.fuzz_ingest", str(seed), str(n)], cwd=ROOT,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"the interpreter died (rc {proc.returncode}): {proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_fuzzed_files_never_crash_hang_or_lose_a_row():
    n = int(os.environ.get("DATAKIT_FUZZ_CASES", "240"))
    s = _run(seed=20261201, n=n)
    assert s["violations"] == [], s["violations"][:5]
    assert s["cases"] == n and s["ingested"] >= n * 0.6 and s["rejected"] >= n * 0.4  # most files partly good


@pytest.mark.fuzz_long
def test_fuzzed_files_long_run():
    for seed in range(5):
        s = _run(seed=seed, n=2000)
        assert s["violations"] == [], (seed, s["violations"][:5])


@pytest.mark.parametrize("first_lines", [b"null\n", b"[" * 20000 + b"1" + b"]" * 20000 + b"\n",
                                         b'{"a":' * 20000 + b"1" + b"}" * 20000 + b"\n"])
def test_the_inputs_that_crashed_pyarrow_are_rejected_rows_now(cli, tmp_path, first_lines):
    """Regression inputs from the fuzzer: pyarrow's JSON reader segfaulted on each (a block starting with `null`,
    nesting 20,000 deep). They must be one rejected row, the valid rows kept."""
    path = tmp_path / "crash.jsonl"
    path.write_bytes(first_lines + b'{"text": "a good row"}\n{"text": "another"}\n')
    p = cli("ingest", str(path), "--name", "c", "--kind", "cpt", "--json", check_json=True)
    assert p.returncode == 0, (p.returncode, p.stderr[-1000:])
    assert (p.json["rows_in"], p.json["kept"], p.json["rejected"]) == (3, 2, 1)


@pytest.mark.parametrize("damage", ["truncated", "flipped", "garbage", "empty"])
def test_a_damaged_parquet_source_is_refused_naming_the_file(cli, tmp_path, damage):
    import polars as pl

    good = tmp_path / "good.parquet"
    pl.DataFrame({"text": [f"row {i}" for i in range(100)]}).write_parquet(good)
    data = good.read_bytes()
    bad = tmp_path / "bad.parquet"
    bad.write_bytes({"truncated": data[:-30], "flipped": data[:-7] + bytes([data[-7] ^ 0xFF]) + data[-6:],
                     "garbage": b"PAR1garbagePAR1", "empty": b""}[damage])
    p = cli("ingest", str(bad), "--name", "b", "--kind", "cpt")
    assert p.returncode == 2 and "not a readable Parquet file" in p.stderr and str(bad) in p.stderr, p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "registry" / "datasets" / "b").exists()


def test_csv_and_text_found_by_the_fuzzer_a_leading_bom_and_a_long_cell(cli, tmp_path):
    """Regression inputs: Excel's BOM refused every CSV row (the first header became '\\ufeffinstruction'); a cell
    over the csv module's 128 KiB default was a traceback; a text file's BOM became part of its first row."""
    csv_path = tmp_path / "excel.csv"
    long_cell = "y" * 300_000
    csv_path.write_bytes(b"\xef\xbb\xbfinstruction,input,output\nsay hi,,hi\n" + f"long,,{long_cell}\n".encode())
    p = cli("ingest", str(csv_path), "--name", "x", "--kind", "sft", "--json", check_json=True)
    assert p.returncode == 0 and (p.json["kept"], p.json["rejected"]) == (2, 0), p.stderr
    txt = tmp_path / "notes.txt"
    txt.write_bytes(b"\xef\xbb\xbffirst line\nsecond\n\xef\xbb\xbfthird, after a cat\n")
    p = cli("ingest", str(txt), "--name", "t", "--kind", "cpt", "--format", "lines", "--json", check_json=True)
    assert (p.json["kept"], p.json["rejected"]) == (2, 1), p.stderr
    out = tmp_path / "t.jsonl"
    cli("export", "t", "--format", "jsonl", "--out", str(out))
    assert json.loads(out.read_text().splitlines()[0])["text"] == "first line"
    q = cli("registry", "quarantine", "t", "--json", check_json=True).json
    assert "byte order mark" in json.dumps(q) and "3" in json.dumps(q)
