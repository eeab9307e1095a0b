"""What every trace store offers: a preflight check, a batch put, URLs, and (for forget) delete."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..errors import PermanentError


class MissingTrace(PermanentError):
    """The store does not have the object (deleted, never uploaded, or the whole bucket gone)."""


class StoreDenied(PermanentError):
    """The store will not let this user read (401/403, or a private bucket it will not admit to).

    A reader on another machine (`why`, `show`, `search --reindex` on a clone) needs to be told
    to log in with an account that can read the bucket, not that a trace is missing.
    """

    def __init__(self, message: str, *, location: str) -> None:
        super().__init__(message)
        self.location = location


@dataclass(frozen=True)
class Upload:
    """Exact bytes for one remote path (the redacted snapshot prefix the newest commit saw).

    `data` is the bytes, or a file holding exactly them: the daemon passes the redacted copy's
    path, so a store streams it and no transcript is ever held in memory.
    """

    remote_path: str
    data: bytes | Path


@dataclass(frozen=True)
class StoreInfo:
    kind: str  # "hf" or "file"
    location: str  # "hf://buckets/ns/name" or "file:///dir"
    private: bool | None  # None: not checked yet (or unknown)
    reachable: bool | None
    detail: str | None = None
    checked_at: float | None = None  # when `private` was last asked of the store (epoch seconds)


class Store(Protocol):
    #: How many times this store created its container (bucket, directory) itself. A change
    #: means everything recorded as uploaded into it is gone: the worker forgets those records
    #: and uploads again instead of noting links to objects that no longer exist.
    generation: int

    def ident(self) -> str:
        """Stable identity (`hf://buckets/ns/name`, `file:///dir`) recorded with every upload."""
        ...

    def preflight(self) -> None:
        """Cheap check before a transfer: reachable, authorised, private. Raises typed errors."""
        ...

    def put(self, uploads: list[Upload]) -> dict[str, str]:
        """Upload in one batch; returns {remote_path: error} for the paths that failed.

        Called with an empty list too, before noting jobs whose bytes are already there: that
        is when a store checks it still exists (and is private) and so moves `generation`.
        A store that creates its container does so before it sends anything: what one call
        sent is in the container that call's `generation` names.
        """
        ...

    def url(self, remote_path: str) -> str: ...

    def fetch(self, remote_path: str) -> bytes:
        """The object's bytes; MissingTrace when the store does not have it."""
        ...

    def delete(self, remote_path: str) -> None:
        """Remove one object (`tracekeeper forget`); an object already gone is not an error."""
        ...

    def info(self) -> StoreInfo: ...
