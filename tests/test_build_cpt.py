"""`datakit build cpt`: documents in four formats become clean, deduplicated knowledge text."""

from __future__ import annotations

import unicodedata
from pathlib import Path

from datakit.build.cpt import build_cpt
from datakit.build.documents import read_pages, strip_furniture


def make_pdf(path: Path, pages: list[list[str]]) -> Path:
    """A real multi-page PDF with one text line per entry (Helvetica), written by hand."""
    objs = ["<< /Type /Catalog /Pages 2 0 R >>", None, "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for lines in pages:
        body = "BT /F1 11 Tf 50 780 Td 14 TL " + " ".join(
            "(" + ln.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ") Tj T*" for ln in lines) + " ET"
        objs.append(f"<< /Length {len(body)} >>\nstream\n{body}\nendstream")
        objs.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 842] /Resources << /Font << /F1 3 0 R >> >> "
                    f"/Contents {len(objs)} 0 R >>")
        kids.append(f"{len(objs)} 0 R")
    objs[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>"
    out, offsets = b"%PDF-1.4\n", []
    for i, o in enumerate(objs, start=1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{o}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(out)
    return path


def test_pdf_headers_footers_and_page_numbers_are_removed(tmp_path):
    bodies = [["The Fusion Core has three cooling loops.", "Each loop is tested for 48 hours before shipping.",
               "Customers in Korea get on-site service."],
              ["Surrogate mode is recommended for most customers.", "Each loop is tested for 48 hours before shipping.",
               "The warranty covers 24 months."],
              ["Firmware updates arrive every quarter.", "Each loop is tested for 48 hours before shipping.",
               "The support line is open on weekdays."],
              ["The core weighs 3.5 kilograms.", "Each loop is tested for 48 hours before shipping.",
               "Spare parts ship within two days."]]
    pages = [["ACME CONFIDENTIAL - Product Manual", "", *body, "", f"Page {i} of 4"] for i, body in enumerate(bodies, 1)]
    pdf = make_pdf(tmp_path / "manual.pdf", pages)
    raw = read_pages(pdf)
    assert len(raw) == 4 and "ACME CONFIDENTIAL" in raw[0]
    clean, removed = strip_furniture(raw)
    assert removed == 8 and not any("CONFIDENTIAL" in p or "Page " in p for p in clean)
    out = build_cpt([pdf], unit="sentence")
    texts = out.frame["text"].to_list()
    assert "The Fusion Core has three cooling loops." in texts and "Spare parts ship within two days." in texts
    assert texts.count("Each loop is tested for 48 hours before shipping.") == 1  # repeated sentence deduplicated
    assert out.stats["furniture_lines_removed"] == 8 and out.stats["dropped"]["duplicate"] == 3


def test_markdown_html_and_text_in_four_languages(tmp_path):
    nfd = unicodedata.normalize("NFD", "한국 지사는 서울에 있습니다. 직원은 120명입니다.")
    (tmp_path / "ko.md").write_text(f"# 회사 소개\n\n{nfd}\n", encoding="utf-8")
    (tmp_path / "en.html").write_text("<html><body><nav>Home | Blog</nav><p>Acme recommends surrogate mode "
                                      "to most customers.</p><script>var x=1;</script><footer>(c) Acme 2024</footer></body></html>")
    (tmp_path / "zh.txt").write_text("公司成立于二零一九年。总部位于首尔。", encoding="utf-8")
    (tmp_path / "ja.txt").write_text("本社はソウルにあります。社員は百二十名です。", encoding="utf-8")
    out = build_cpt(sorted(tmp_path.iterdir()), unit="sentence", min_chars=5)
    texts = out.frame["text"].to_list()
    assert "한국 지사는 서울에 있습니다." in texts  # NFC, segmented on 다.
    assert "Acme recommends surrogate mode to most customers." in texts
    assert not any("Home" in t or "var x" in t or "(c)" in t for t in texts)
    assert "公司成立于二零一九年。" in texts and "社員は百二十名です。" in texts
    assert set(out.stats["langs"]) == {"ko", "en", "zh", "ja"}
    by_source = out.frame.group_by("source").agg(groups=__import__("polars").col("group_id").n_unique())
    assert (by_source["groups"] == 1).all()  # one document, one group: splits keep documents whole


def test_short_and_symbol_only_pieces_are_dropped_with_reasons(tmp_path):
    (tmp_path / "a.txt").write_text("OK.\n\n----- ***** -----\n\nThe warranty covers 24 months of normal use.\n")
    out = build_cpt([tmp_path / "a.txt"])
    assert out.frame["text"].to_list() == ["The warranty covers 24 months of normal use."]
    assert out.stats["dropped"] == {"too short": 1, "mostly symbols": 1}
    assert out.stats["rows_in"] == out.stats["rows_out"] + out.stats["removed"]


def test_cli_build_cpt_commits_a_version_with_file_hashes(cli, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("The Fusion Core weighs 3.5 kilograms and ships worldwide.\n")
    p = cli("build", "cpt", str(docs), "--name", "acme-cpt", "--json", check_json=True)
    assert p.returncode == 0, p.stderr
    assert p.json["ref"] == "acme-cpt@v1" and p.json["stats"]["rows_out"] == 1
    show = cli("registry", "show", "acme-cpt", "--json", check_json=True).json
    assert show["op"] == "build-cpt" and show["params"]["files"][0]["file"] == "a.md"
