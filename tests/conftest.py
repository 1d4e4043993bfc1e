"""Shared fixtures: a fresh registry per test, the real external datasets, the CLI as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from datakit.registry.store import Registry

ROOT = Path(__file__).resolve().parent.parent
EXTERNAL = Path(os.environ.get("DATAKIT_EXTERNAL_DATA", ROOT.parent / "shared" / "data" / "external"))

os.environ.setdefault("DATAKIT_CACHE", tempfile.mkdtemp(prefix="datakit-test-cache-"))  # not the user's ~/.cache
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def base_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the demo and the notebooks pre-train their tiny base model: once per test session, in the session's
    tmp dir (never the project's own build/demo/base, which `make demo` uses)."""
    return tmp_path_factory.mktemp("base-cache") / "base"


@pytest.fixture
def external() -> Path:
    assert EXTERNAL.is_dir(), f"external datasets not found at {EXTERNAL}; set DATAKIT_EXTERNAL_DATA"
    return EXTERNAL


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "registry")


@pytest.fixture
def cli(tmp_path: Path):
    """Run `datakit` in a subprocess against the test's registry; returns the CompletedProcess."""

    def run(*args: str, registry: Path | None = None, check_json: bool = False) -> subprocess.CompletedProcess:
        env = {**os.environ, "DATAKIT_REGISTRY": str(registry or tmp_path / "registry"), "COLUMNS": "200"}
        proc = subprocess.run([sys.executable, "-m", "datakit.cli", *args], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=300)
        if check_json:
            proc.json = json.loads(proc.stdout)  # type: ignore[attr-defined]
        return proc

    return run


def write_jsonl(path: Path, rows: list) -> Path:
    """Rows may be dicts (dumped) or raw strings/bytes (written as they are)."""
    with open(path, "wb") as f:
        for r in rows:
            if isinstance(r, bytes):
                f.write(r + b"\n")
            elif isinstance(r, str):
                f.write(r.encode() + b"\n")
            else:
                f.write(json.dumps(r, ensure_ascii=False).encode() + b"\n")
    return path


def chat(q: str, a: str) -> dict:
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@__import__("contextlib").contextmanager
def mlx_lm_server(model: Path):
    """A real `mlx_lm server` for `model` on a free loopback port; yields (base_url, process)."""
    import tempfile
    import time
    import urllib.request

    port = free_port()
    # The server logs every request: to a file, since an unread pipe fills and blocks it. An empty hub cache
    # folder, because its /v1/models fails when none exists.
    log = tempfile.NamedTemporaryFile(prefix="mlx-server-", suffix=".log", delete=False)
    hub = tempfile.mkdtemp(prefix="hub-")
    proc = subprocess.Popen([sys.executable, "-m", "mlx_lm", "server", "--model", str(model), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=log,
                            env={**os.environ, "HF_HUB_CACHE": hub})
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(url + "/models", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"mlx_lm.server did not start: {Path(log.name).read_text()[-2000:]}") from None
                time.sleep(0.25)
        yield url, proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


def chat_completion(text: str, finish: str = "stop", model: str = "m") -> dict:
    """An OpenAI chat-completions response body carrying `text`."""
    return {"id": "c1", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


@__import__("contextlib").contextmanager
def json_server(respond):
    """A stdlib HTTP server on a free loopback port; yields its /v1 base URL. `respond(body_bytes, headers)`
    returns (status, JSON payload[, extra headers]), or a number of seconds to hang without answering."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            reply = respond(body, {k.lower(): v for k, v in self.headers.items()})
            if isinstance(reply, (int, float)):
                time.sleep(reply)
                return
            status, payload, *extra = reply
            data = json.dumps(payload).encode()
            self.send_response(status)
            for key, value in (extra[0] if extra else {}).items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def demo_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's tiny pre-trained base model (knows 63 general facts), cached in build/demo/base like
    `make demo` and the notebooks; pre-trained here (about a minute) only when the cache is missing."""
    from datakit.demo.base_model import BaseSpec, pretrain
    from datakit.demo.loop import web_texts
    from datakit.io.ingest import ingest

    reg = Registry(tmp_path_factory.mktemp("base-registry"))
    ingest(reg, [EXTERNAL / "c4_demo.jsonl"], name="c4", kind="cpt")
    return pretrain(ROOT / "build" / "demo" / "base", web_texts(reg), BaseSpec())


S3_BUCKET = "datakit-test"


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible HTTP server (moto's server mode) on loopback for the whole session, with the
    standard AWS environment pointing at it (subprocesses inherit it). Yields the endpoint URL."""
    import logging
    import threading
    import urllib.request

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    class AtomicWritesServer(ThreadedMotoServer):
        """moto checks If-None-Match and then writes without a lock, so two racing creates can both win where
        real S3 is atomic; serializing writes makes the tests measure datakit's protocol, not moto's race."""

        def _server_entry(self) -> None:
            from moto.moto_server.werkzeug_app import (
                DomainDispatcherApplication,
                MotoRequestHandler,
                create_backend_app,
            )
            from werkzeug.serving import make_server

            app, lock = DomainDispatcherApplication(create_backend_app), threading.Lock()

            def atomic(environ, start_response):  # noqa: ANN001, ANN202 - a WSGI app
                if environ["REQUEST_METHOD"] in ("PUT", "POST", "DELETE"):
                    with lock:
                        return list(app(environ, start_response))
                return app(environ, start_response)

            self._server = make_server(self._ip_address, self._port, atomic, True, request_handler=MotoRequestHandler)
            self._server_ready_event.set()
            self._server.serve_forever()

    server = AtomicWritesServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    patch = pytest.MonkeyPatch()
    for key, value in {"AWS_ACCESS_KEY_ID": "AKIADATAKITTESTKEY01", "AWS_SECRET_ACCESS_KEY": S3_SECRET,
                       "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": "true"}.items():
        patch.setenv(key, value)
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{S3_BUCKET}", method="PUT")).read()
    yield endpoint
    patch.undo()
    server.stop()


S3_SECRET = "datakit-test-secret-9f8e7d6c5b4a39281706"  # tests assert it never lands in a written file


@pytest.fixture
def s3_root(s3_server) -> str:
    """A fresh registry prefix in the test bucket."""
    import uuid

    return f"s3://{S3_BUCKET}/{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["local", "s3"])
def any_reg(request, tmp_path: Path) -> Registry:
    """The registry contract runs on both roots: a local folder and a bucket on the loopback S3 server."""
    if request.param == "local":
        return Registry(tmp_path / "registry")
    return Registry(request.getfixturevalue("s3_root"))


@pytest.fixture(scope="session")
def ray_cluster(s3_server):
    """One local Ray cluster (2 CPUs) for the whole session, torn down at its end; yields its address, which
    `--ray-address` in a subprocess joins. In-process `--engine ray` work reuses it. Started after the S3
    server so that its workers, which write parts straight into a bucket registry, see its endpoint and keys in
    their environment (as workers of a real cluster use their own machine's credentials)."""
    import logging

    import ray

    logging.getLogger("ray").setLevel(logging.ERROR)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
