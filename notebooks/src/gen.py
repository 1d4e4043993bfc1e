"""Turn the percent-format sources in notebooks/src/ into the output-free notebooks in notebooks/.

    python notebooks/src/gen.py            # after editing a source; tests/test_notebooks.py checks they agree

Cells are separated by `# %%` (code) and `# %% [markdown]` (markdown; each line starts with `# `).
Cell ids are deterministic so regenerating an unchanged source gives a byte-identical file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent
OUT = Path(sys.argv[1] if len(sys.argv) > 1 else HERE.parent)
SOURCES = {"01_build_data.py": "01_build_data.ipynb", "02_train_and_eval.py": "02_train_and_eval.ipynb"}


def cells(text: str) -> list:
    out, kind, buf = [], None, []

    def flush() -> None:
        if kind is None:
            return
        body = "\n".join(buf).strip("\n")
        if kind == "markdown":
            body = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in body.splitlines())
            out.append(new_markdown_cell(body))
        else:
            out.append(new_code_cell(body))

    for line in text.splitlines():
        if line.startswith("# %%"):
            flush()
            kind, buf = ("markdown" if "[markdown]" in line else "code"), []
        else:
            buf.append(line)
    flush()
    return out


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for src, dst in SOURCES.items():
        if not (HERE / src).exists():
            continue
        nb = new_notebook(cells=cells((HERE / src).read_text()))
        for i, c in enumerate(nb.cells):
            c.id = f"{Path(dst).stem[:2]}-{i:02d}"
        nb.metadata = {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        }
        nbformat.validate(nb)
        nbformat.write(nb, OUT / dst)
        print(f"wrote {OUT / dst} ({len(nb.cells)} cells)")


if __name__ == "__main__":
    main()
