"""Documents to plain text pages: markdown, text, HTML and PDF, with repeated page furniture removed.

A PDF keeps its pages so that headers, footers and page numbers that repeat across pages can be
recognized and dropped; other formats are one page.
"""

from __future__ import annotations

import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

from datakit.errors import DatakitError

DOC_SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm", ".pdf")
PAGE_NUMBER = re.compile(r"^\s*(?:page|p\.|페이지|第)?\s*[-–—(]?\s*\d{1,4}\s*(?:/\s*\d{1,4}|of\s+\d{1,4}|页|쪽)?\s*[-–—)]?\s*$",
                         re.IGNORECASE)
EDGE_LINES = 2  # headers and footers live in the first and last two lines of a page


class _HTMLText(HTMLParser):
    """Visible text of an HTML page; scripts, styles and navigation chrome dropped, blocks as lines."""

    SKIP = {"script", "style", "nav", "header", "footer", "aside", "noscript", "template", "svg"}
    BLOCK = {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "section", "article", "pre", "blockquote"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in self.BLOCK:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP and self.skipping:
            self.skipping -= 1
        elif tag in self.BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def _markdown(text: str) -> str:
    """Markdown to prose: headings, emphasis, links and list markers reduced to their words."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)  # code blocks are not knowledge sentences
    text = re.sub(r"^\s{0,3}#{1,6}\s*", "", text, flags=re.MULTILINE)
    text = re.sub(r"!\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"^\s*(?:[-*+]|\d+[.)])\s+", "", text, flags=re.MULTILINE)
    text = re.sub(r"(\*\*|__|\*|_|`)(\S(?:.*?\S)?)\1", r"\2", text)
    return re.sub(r"^\s*(?:[-*_]\s*){3,}$|^\s*\|?[-: |]+\|?\s*$", "", text, flags=re.MULTILINE)


def read_pages(path: Path) -> list[str]:
    """The document's text, one string per page (one page unless it is a PDF)."""
    suffix = path.suffix.lower()
    if suffix not in DOC_SUFFIXES:
        raise DatakitError(f"{path}: unsupported document type {suffix or '(none)'}; use {', '.join(DOC_SUFFIXES)}")
    if not path.is_file():
        raise DatakitError(f"{path}: no such file")
    if suffix == ".pdf":
        try:
            from pypdf import PdfReader
        except ImportError:
            raise DatakitError("PDF input needs pypdf: pip install pypdf") from None
        try:
            return [page.extract_text() or "" for page in PdfReader(path).pages]
        except Exception as e:  # pypdf raises many types for broken files
            raise DatakitError(f"{path}: cannot read PDF ({e}); check the file or convert it to text") from None
    raw = path.read_bytes().decode("utf-8", errors="replace")
    if suffix in (".html", ".htm"):
        parser = _HTMLText()
        parser.feed(raw)
        return ["".join(parser.parts)]
    return [_markdown(raw) if suffix in (".md", ".markdown") else raw]


def _shape(line: str) -> str:
    return re.sub(r"\d+", "#", line.strip().lower())


def strip_furniture(pages: list[str]) -> tuple[list[str], int]:
    """Drop page numbers and header/footer lines that recur (digits aside) on at least half the pages."""
    split = [p.split("\n") for p in pages]
    edges = Counter()
    for lines in split:
        near = {_shape(x) for x in lines[:EDGE_LINES] + lines[-EDGE_LINES:] if x.strip()}
        edges.update(near)
    recurring = {s for s, n in edges.items() if len(pages) >= 3 and n >= max(2, len(pages) // 2)}
    removed, out = 0, []
    for lines in split:
        keep = []
        for i, x in enumerate(lines):
            at_edge = i < EDGE_LINES or i >= len(lines) - EDGE_LINES
            if x.strip() and (PAGE_NUMBER.match(x) or (at_edge and _shape(x) in recurring)):
                removed += 1
                continue
            keep.append(x)
        out.append("\n".join(keep))
    return out, removed
