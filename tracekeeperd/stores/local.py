"""A directory store: the default on a machine with no Hugging Face account.

It makes the daemon do its whole job with no network: the same queue, the same notes, with a
`file://` URL. Writes are atomic (temp file, fsync, rename) so a reader never sees half a trace.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import PermanentError
from ..paths import open_private
from .base import MissingTrace, StoreInfo, Upload

_COPY_CHUNK = 1 << 20


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().absolute()
        #: Bumped each time the store directory had to be created (see `Store.generation`).
        self.generation = 0

    def _ensure_root(self) -> None:
        if self.root.is_dir():
            return
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.generation += 1

    def ident(self) -> str:
        return self.root.as_uri()

    def _target(self, remote_path: str) -> Path:
        target = (self.root / remote_path).resolve()
        if not target.is_relative_to(self.root.resolve()):
            raise PermanentError(f"remote path {remote_path!r} escapes the store")
        return target

    def preflight(self) -> None:
        try:
            self._ensure_root()
        except OSError as exc:
            raise PermanentError(f"cannot create store directory {self.root}: {exc.strerror}") from exc
        if not os.access(self.root, os.W_OK):
            raise PermanentError(f"store directory {self.root} is not writable")

    def put(self, uploads: list[Upload]) -> dict[str, str]:
        failed: dict[str, str] = {}
        try:
            self._ensure_root()  # removed since preflight: a new generation, nothing is there
        except OSError as exc:
            return {u.remote_path: f"cannot create store directory {self.root}: {exc.strerror}" for u in uploads}
        for upload in uploads:
            try:
                target = self._target(upload.remote_path)
            except PermanentError as exc:
                failed[upload.remote_path] = str(exc)
                continue
            try:
                target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
                with open_private(tmp) as fh:  # 0600 from the first byte, not chmod-ed after
                    if isinstance(upload.data, Path):
                        with upload.data.open("rb") as src:
                            shutil.copyfileobj(src, fh, _COPY_CHUNK)  # streamed: any size, flat memory
                    else:
                        fh.write(upload.data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
            except OSError as exc:
                failed[upload.remote_path] = f"cannot write {target}: {exc.strerror}"
        return failed

    def url(self, remote_path: str) -> str:
        return (self.root / remote_path).as_uri()

    def fetch(self, remote_path: str) -> bytes:
        try:
            return self._target(remote_path).read_bytes()
        except FileNotFoundError:
            raise MissingTrace(f"the trace is not in {self.root} (deleted or not written yet): {remote_path}") from None

    def delete(self, remote_path: str) -> None:
        """Unlink the file; a file already gone is fine, so forgetting twice is harmless."""
        target = self._target(remote_path)
        try:
            target.unlink(missing_ok=True)
        except OSError as exc:
            raise PermanentError(f"cannot delete {target}: {exc.strerror}") from exc

    def info(self) -> StoreInfo:
        return StoreInfo(kind="file", location=self.ident(), private=True, reachable=True)
