"""Where a registry's bytes live: a local folder or an object store bucket, behind one small interface.

    Storage("registry")                 a folder (created on first write)
    Storage("s3://bucket/team/reg")     S3, MinIO, R2 ... (AWS_* environment: keys, profile, AWS_ENDPOINT_URL)
    Storage("gs://bucket/reg"), Storage("az://container/reg"), Storage("file:///abs/path")

Everything goes through obstore (Rust `object_store`, the layer polars and delta-rs use). The registry needs only
whole-object get, put, create-only put (the commit point: `If-None-Match: *` on object stores, an exclusive
create on disk), list and delete. Credentials come from each cloud's standard environment and are never kept
in `url`, written or printed.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import obstore
from obstore.exceptions import AlreadyExistsError, BaseError, NotFoundError

from datakit.errors import DatakitError

REMOTE_RE = re.compile(r"^(s3|s3a|gs|gcs|az|abfs|abfss|azure|memory)://", re.IGNORECASE)
_CHECKED: dict[str, bool] = {}  # roots whose create-only puts were checked in this process
_CHECK_LOCK = threading.Lock()


def is_remote(root: str | Path) -> bool:
    return bool(REMOTE_RE.match(str(root)))


def _public_url(url: str) -> str:
    """The URL without any user:password part (some people paste credentials into URLs)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.hostname or "")) if parts.password or parts.username else url


class Storage:
    """One registry root. Paths are relative to it, '/'-separated."""

    def __init__(self, root: str | Path) -> None:
        text = str(root)
        if text.startswith("file://"):
            text = urlsplit(text).path
        self.local: Path | None = None if is_remote(text) else Path(text).expanduser().absolute()
        self.url = str(self.local) if self.local else _public_url(text.rstrip("/"))
        self._raw = text.rstrip("/")
        self._store: Any = None

    def __str__(self) -> str:
        return self.url

    # ---- the store -------------------------------------------------------------------------
    def _obj(self, create: bool = False) -> Any:
        if self._store is None:
            if self.local is not None:
                if not self.local.exists():
                    if not create:
                        return None
                    self.local.mkdir(parents=True, exist_ok=True)  # OSError (read-only, full) names the folder
                self._store = obstore.store.LocalStore(self.local)
            else:
                try:
                    self._store = obstore.store.from_url(self._raw, client_options=_client_options())
                except Exception as e:  # a bad URL or a missing credential setting; the message names the key, not its value
                    raise DatakitError(f"cannot open registry {self.url}: {e}. Set the store's standard "
                                       "environment (AWS_*, GOOGLE_*, AZURE_*) or pass a local path.") from None
        return self._store

    # ---- reading ---------------------------------------------------------------------------
    def get(self, path: str) -> bytes | None:
        """The object's bytes, or None when there is none."""
        store = self._obj()
        if store is None:
            return None
        try:
            return bytes(obstore.get(store, path).bytes())
        except (NotFoundError, FileNotFoundError):
            return None

    def exists(self, path: str) -> bool:
        store = self._obj()
        if store is None:
            return False
        try:
            obstore.head(store, path)
            return True
        except (NotFoundError, FileNotFoundError):
            return False

    def stamp(self, path: str) -> str | None:
        """"size:version" of an object (version: its ETag, or modification time on disk), None when there is none:
        what changes whenever the object's bytes may have changed."""
        if self.local is not None:
            try:
                st = (self.local / path).stat()
            except (FileNotFoundError, NotADirectoryError):
                return None
            return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"
        try:
            meta = obstore.head(self._obj(), path)
        except (NotFoundError, FileNotFoundError):
            return None
        return f"{meta['size']}:{meta.get('e_tag') or meta['last_modified'].isoformat()}"

    def list(self, prefix: str) -> Iterator[dict[str, Any]]:
        """Every object under `prefix` (recursive): path, size, last_modified."""
        store = self._obj()
        if store is None:
            return
        try:
            for batch in obstore.list(store, prefix.rstrip("/") + "/" if prefix else None):
                yield from batch
        except (NotFoundError, FileNotFoundError):
            return

    def dirs(self, prefix: str) -> list[str]:
        """Names of the 'folders' directly under `prefix`."""
        store = self._obj()
        if store is None:
            return []
        try:
            found = obstore.list_with_delimiter(store, prefix.rstrip("/") + "/" if prefix else None)
        except (NotFoundError, FileNotFoundError):
            return []
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in found["common_prefixes"])

    def source(self, path: str) -> str:
        """What polars should scan for this object: a file path on disk, a URL on a store."""
        return str(self.local / path) if self.local else f"{self._raw}/{path}"

    # ---- writing ---------------------------------------------------------------------------
    def put(self, path: str, data: bytes | Path, *, create: bool = False) -> bool:
        """Write an object (bytes, or a local file's content). With `create`, only if there is none yet: returns
        False when one already exists."""
        self.check_create_only()
        return self._put(path, data, create)

    def _put(self, path: str, data: bytes | Path, create: bool) -> bool:
        try:
            obstore.put(self._obj(create=True), path, data, mode="create" if create else "overwrite")
            return True
        except (AlreadyExistsError, FileExistsError):
            if create:
                return False
            raise
        except BaseError as e:  # a full or read-only disk: say so, as an OSError naming the file
            raise _as_os_error(e, self.source(path)) from None

    def delete(self, path: str) -> None:
        store = self._obj()
        if store is None:
            return
        try:
            obstore.delete(store, path)
        except (NotFoundError, FileNotFoundError):
            pass

    def delete_prefix(self, prefix: str) -> None:
        """Every object under `prefix`; on disk the emptied folders too."""
        for o in list(self.list(prefix)):
            self.delete(o["path"])
        if self.local is not None:
            shutil.rmtree(self.local / prefix, ignore_errors=True)

    def check_create_only(self) -> None:
        """Once per root and process, before the first write: two racing create-only puts of one new object
        must end with exactly one winner, and a third must fail. Some S3-compatible stores silently ignore
        `If-None-Match`; committing there could overwrite a published version, so writing is refused."""
        with _CHECK_LOCK:
            if _CHECKED.get(self.url):
                return
            probe = f"_datakit/probe-{secrets.token_hex(8)}"
            results: list[bool] = []
            errors: list[Exception] = []

            def race() -> None:
                try:
                    results.append(self._put(probe, b"probe", True))
                except Exception as e:  # noqa: BLE001 - re-raised below, in the caller's thread
                    errors.append(e)

            racers = [threading.Thread(target=race) for _ in range(2)]
            for t in racers:
                t.start()
            for t in racers:
                t.join()
            if errors:  # cannot write at all (read-only, full, no permission): that is the message
                raise errors[0]
            again = self._put(probe, b"again", True)
            self.delete(probe)
            if sorted(results) != [False, True] or again:
                raise DatakitError(
                    f"registry {self.url}: this store does not honour create-only writes (If-None-Match: *); "
                    "two writers could publish the same version number and one would be lost, so datakit will "
                    "not write here. Use a store that does (AWS S3, GCS, Azure Blob, MinIO 2024+, a local path).")
            _CHECKED[self.url] = True


_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def _as_os_error(e: Exception, where: str) -> Exception:
    """obstore reports a local disk's errno inside its message ("... (os error 28)"); turn that into the OSError
    it is, so callers and the CLI see ENOSPC, EROFS or EACCES with the file's path. Other errors stay as they are."""
    found = _OS_ERROR.search(str(e))
    if not found:
        return e
    code = int(found.group(1))
    return OSError(code, os.strerror(code), where)


def _client_options() -> dict[str, Any]:
    """Plain-HTTP endpoints (MinIO, a local S3 server) need allow_http; obstore reads AWS_ALLOW_HTTP too."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "") or os.environ.get("AWS_ENDPOINT", "")
    return {"allow_http": True} if endpoint.startswith("http://") else {}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def age_seconds(modified: datetime) -> float:
    return (datetime.now(modified.tzinfo) - modified).total_seconds()
