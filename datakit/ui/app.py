"""The local web app (`datakit ui`, `datakit review`): browse the registry, see lineage, review rows.

FastAPI with Jinja2 templates rendered on the server; the only JavaScript is the review page's few lines for
keyboard shortcuts and saving a decision (no build step). Bound to 127.0.0.1 by default; when bound elsewhere,
every request must carry the session token (`?token=`, then a cookie), which `serve` prints in the URL.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel

from datakit.errors import DatakitError
from datakit.ops import review as rv
from datakit.ops import review_queue as rq
from datakit.registry.store import Registry
from datakit.train.run_index import find_runs
from datakit.ui import lineage, views

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
COOKIE = "datakit_token"


class DecideBody(BaseModel):
    row: int
    reviewer: str
    decision: rq.Decision
    reason: str | None = None
    edited: dict[str, Any] | None = None


def create_app(reg: Registry, *, runs_dir: Path | None = Path("runs"), token: str | None = None,
               deny_file: Path | None = None) -> FastAPI:
    app = FastAPI(title="datakit", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def require_token(request: Request, call_next: Any) -> Response:
        if token is None:
            return await call_next(request)
        given = request.query_params.get("token") or request.cookies.get(COOKIE) or ""
        if not secrets.compare_digest(given, token):
            return HTMLResponse("datakit ui: open the URL with ?token=... that `datakit ui` printed", status_code=403)
        response = await call_next(request)
        if request.query_params.get("token"):
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.exception_handler(DatakitError)
    async def datakit_error(request: Request, exc: DatakitError) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(exc)}, status_code=400)
        return page(request, "error.html", status_code=404, message=str(exc))

    def page(request: Request, template: str, status_code: int = 200, **ctx: Any) -> Response:
        return TEMPLATES.TemplateResponse(request, template, {"root": str(reg.root), **ctx}, status_code=status_code)

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> Response:
        queues = [rv.summary(reg, q) for q in rq.queues(reg)]
        return page(request, "index.html", datasets=views.datasets(reg), queues=queues)

    @app.get("/d/{name}", response_class=HTMLResponse)
    def dataset(request: Request, name: str) -> Response:
        versions = reg.versions(name)
        if not versions:
            raise DatakitError(f"no dataset {name!r} in {reg.root}")
        return page(request, "dataset.html", name=name, versions=list(reversed(versions)), tags=reg.tags(name))

    @app.get("/v/{ref}", response_class=HTMLResponse)
    def version(request: Request, ref: str, tab: str = "rows", page_no: int = 1, q: str = "") -> Response:
        m = reg.resolve(ref)
        if ref != m.ref:  # a tag or a bare name: show the pinned ref in the address bar
            return RedirectResponse(f"/v/{m.ref}?tab={tab}", status_code=307)
        side = views.side_files(m)
        ctx: dict[str, Any] = {"m": m, "tab": tab, "side": side, "plots": views.stats_plots(reg, m) if tab == "stats" else []}
        if tab == "rows":
            ctx["data"] = views.rows_page(reg, m, page=page_no, query=q)
        elif tab == "clusters.parquet":
            ctx["data"] = views.cluster_pairs(reg, m, page=page_no)
        elif tab in side:
            ctx["data"] = views.side_table(reg, m, tab, page=page_no)
        elif tab == "lineage":
            runs = find_runs(runs_dir)
            graph = lineage.lineage_graph(reg, m, runs, views.children(reg, m))
            ctx |= {"svg": lineage.to_svg(graph), "runs": [(i, r) for i, r in enumerate(runs)
                                                          if f"run:{r.dir}" in graph.nodes]}
        return page(request, "version.html", **ctx)

    @app.get("/report")
    def report(run: int, n: int) -> Response:
        runs = find_runs(runs_dir)
        if not (0 <= run < len(runs) and 0 <= n < len(runs[run].reports) and runs[run].reports[n].html):
            raise DatakitError("no such report (the runs folder changed?); reload the lineage page")
        return FileResponse(str(runs[run].reports[n].html), media_type="text/html")

    @app.get("/review/{queue}", response_class=HTMLResponse)
    def review(request: Request, queue: str, reviewer: str = "", row: int | None = None) -> Response:
        qd = rq.load_queue(reg, queue)
        assert qd is not None
        if not reviewer:
            return page(request, "reviewer.html", queue=queue)
        rq.check_reviewer(reviewer)
        everything = rq.decisions(reg, qd)
        mine = rq.latest(everything, reviewer)
        if row is None:
            row = next((r for r in qd.rows if r not in mine), None)
        position = qd.rows.index(row) if row is not None else len(qd.rows)
        return page(request, "review.html", q=qd, reviewer=reviewer, position=position,
                    record=rv.row_record(reg, qd, row) if row is not None else None,
                    mine=mine.get(row) if row is not None else None, progress=rq.progress(qd, everything),
                    my_count=len(mine), prev_row=qd.rows[position - 1] if position > 0 else None,
                    next_row=qd.rows[position + 1] if position + 1 < len(qd.rows) else None)

    @app.post("/api/review/{queue}/decide")
    def decide(queue: str, body: DecideBody) -> dict[str, Any]:
        d, warnings = rv.decide(reg, queue, row=body.row, reviewer=body.reviewer, decision=body.decision,
                                reason=body.reason, edited=body.edited, deny_file=deny_file)
        qd = rq.load_queue(reg, queue)
        assert qd is not None
        everything = rq.decisions(reg, qd)
        mine = rq.latest(everything, body.reviewer)
        nxt = next((r for r in qd.rows if r not in mine), None)
        return {"saved": d.model_dump(exclude_none=True), "warnings": warnings, "next_row": nxt,
                "progress": rq.progress(qd, everything).model_dump()}

    return app
