"""Run the UI: uvicorn on 127.0.0.1 (or a host the user names, then with a token in the URL)."""

from __future__ import annotations

import secrets
from pathlib import Path

from datakit.errors import DatakitError
from datakit.registry.store import Registry

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def url_for(host: str, port: int, path: str = "/", token: str | None = None) -> str:
    sep = "&" if "?" in path else "?"
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{shown}:{port}{path}" + (f"{sep}token={token}" if token else "")


def serve(reg: Registry, *, host: str = "127.0.0.1", port: int = 8765, runs_dir: Path | None = Path("runs"),
          deny_file: Path | None = None, on_start: callable = print, path: str = "/") -> None:  # type: ignore[valid-type]
    """Serve until interrupted. Off loopback every request needs the token printed in the URL."""
    try:
        import uvicorn

        from datakit.ui.app import create_app
    except ImportError as e:
        raise DatakitError("the UI needs FastAPI and uvicorn: pip install 'datakit[ui]'") from e
    token = None if host in LOOPBACK else secrets.token_urlsafe(18)
    app = create_app(reg, runs_dir=runs_dir, token=token, deny_file=deny_file)
    on_start(url_for(host, port, path, token))
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    except OSError as e:  # the port is taken
        raise DatakitError(f"cannot listen on {host}:{port} ({e.strerror or e}); pick another --port") from e
