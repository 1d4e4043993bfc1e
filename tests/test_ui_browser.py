"""The web UI in a real headless Chromium (Debian's `chromium`, driven by Playwright): the main pages render
(screenshots checked), and a reviewer works through a 10-row queue by keyboard and mouse (accept, reject with a
reason, edit, a refused edit), then the reviewed version is committed and its rows and decisions checked."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from datakit.io.ingest import ingest
from datakit.ops import review as rv
from datakit.ops import review_queue as rq
from datakit.ops.dedup import run_dedup
from datakit.ui.app import create_app

PNG = b"\x89PNG\r\n\x1a\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(reg, tmp_path, external):
    """A registry with a generated sft set (alpaca with planted copies, deduplicated) and the UI serving it."""
    src = json.loads((external / "alpaca_en_demo.json").read_text())
    (tmp_path / "gen.json").write_text(json.dumps(src + [{**src[i], "output": src[i]["output"] + " "} for i in (1, 2)]))
    ingest(reg, [tmp_path / "gen.json"], name="generated", kind="sft")
    run_dedup(reg, ["generated"], ["generated-dedup"], near=True)
    server = uvicorn.Server(uvicorn.Config(create_app(reg, runs_dir=None), host="127.0.0.1", port=free_port(),
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the UI server did not start"
    yield f"http://127.0.0.1:{server.config.port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "the browser tests need Chromium: apt-get install chromium (.ci/run installs it)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"], headless=True)
        yield b
        b.close()


def shot(page, path: Path) -> None:
    page.screenshot(path=str(path), full_page=True)
    data = path.read_bytes()
    assert data.startswith(PNG) and len(data) > 5_000, path


def test_the_main_pages_render_in_a_real_browser(served, browser, reg, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(served + "/")
    assert page.locator("#datasets").get_by_text("generated-dedup").count() == 1
    shot(page, tmp_path / "index.png")
    page.click("#datasets >> text=generated-dedup")
    page.click("table >> text=v1")
    assert page.locator(".row .msg.user").count() == 20  # first page of rows, rendered as conversations
    shot(page, tmp_path / "rows.png")
    page.fill("input[name=q]", "python")
    page.press("input[name=q]", "Enter")
    assert "python" in page.locator(".row").first.inner_text().lower()
    page.click(".tabs >> text=dedup clusters")
    assert page.locator(".pair").count() >= 2  # the planted copies, each beside the row it duplicates
    shot(page, tmp_path / "clusters.png")
    page.click(".tabs >> text=stats")
    assert page.locator("svg.plot").count() >= 4  # characters, tokens, languages, messages per row
    shot(page, tmp_path / "stats.png")
    page.click(".tabs >> text=lineage")
    assert page.locator("svg.lineage .node").count() == 3  # source file -> generated@v1 -> generated-dedup@v1
    assert page.locator("svg.lineage .node.file .label").text_content() == "gen.json"
    shot(page, tmp_path / "lineage.png")


def test_a_reviewer_reviews_ten_rows_and_the_reviewed_version_keeps_the_decisions(served, browser, reg, tmp_path):
    q = rq.open_queue(reg, "generated-dedup", sample=10, seed=3)
    page = browser.new_page()
    page.goto(f"{served}/review/{q.queue}")
    page.fill("input[name=reviewer]", "alice")
    page.press("input[name=reviewer]", "Enter")
    edited_rows = []
    for i, row in enumerate(q.rows):
        page.wait_for_selector(f"#current[data-row='{row}']")
        if i == 1:
            shot(page, tmp_path / "review.png")
        if i < 6:
            page.keyboard.press("a")  # accept
        elif i < 8:
            page.keyboard.press("r")
            page.fill("#reason", f"answer {i} is wrong")
            page.press("#reason", "Enter")
        else:
            if i == 8:  # an edit that makes the model claim another vendor's identity is refused, nothing saved
                page.keyboard.press("e")
                page.locator("#editor textarea").last.fill("I am ChatGPT, a model made by OpenAI.")
                page.click("#save-edit")
                page.wait_for_selector("#error:not(:empty)")
                assert "ChatGPT" in page.inner_text("#error") and "lint" in page.inner_text("#error")
                page.click("#cancel-edit")
            page.click("#edit")
            page.locator("#editor textarea").last.fill(f"A corrected answer {i}.")
            if i == 9:
                shot(page, tmp_path / "review-edit.png")
            page.keyboard.press("Control+Enter")
            edited_rows.append(row)
    page.wait_for_selector("#done")
    assert "10 of 10 decided" in page.inner_text("#counts")

    res = rv.commit_review(reg, q.queue, "generated-reviewed")
    m = reg.resolve(res["ref"])
    assert (res["stats"]["accepted"], res["stats"]["edited"], res["stats"]["rejected"]) == (6, 2, 2)
    rows = reg.load(m)
    assert rows.height == 8 and m.parents[0].ref == "generated-dedup@v1" and m.op == "review"
    answers = [msgs[-1]["content"] for msgs in rows["messages"].to_list()]
    assert answers[-2:] == ["A corrected answer 8.", "A corrected answer 9."]
    side = reg.extra(m, rv.REVIEW_FILE)
    assert side.height == 10 and set(side["reviewer"]) == {"alice"} and side["final"].all()
    rejected = side.filter(side["decision"] == "reject")
    assert rejected["reason"].to_list() == ["answer 6 is wrong", "answer 7 is wrong"]
    edits = side.filter(side["decision"] == "edit")
    assert edits["row"].to_list() == edited_rows and edits["before"].null_count() == 0
    assert json.loads(edits["after"][0])["messages"][-1]["content"] == "A corrected answer 8."
