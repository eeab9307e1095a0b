"""What a failed call to the Hub means to a person: a few words and the next step.

The store's errors (tracekeeperd/stores/hf.py) keep the transport's own text for the daemon's
log: hf_xet reports a failed token fetch as `ConnectionError("Server error: Request error: HTTP
status server error (503 ...), domain: ...")`, httpx as `[Errno 111] Connection refused`. A
command that a person waits on (`show`, `forget`) says instead what happened, in words, with the
next step for that command (read access for `show`, not "`tracekeeper retry`", which is about
the daemon's jobs). The original exception stays chained, so --traceback shows all of it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

#: xet-core's text for an HTTP status on its own requests (the token fetch, CAS), as in hf.py.
_XET_HTTP_STATUS = re.compile(r"HTTP status (?:client|server) error \((\d{3})\b")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _status(chain: list[BaseException]) -> int | None:
    """The HTTP status the Hub answered, from huggingface_hub's error or hf_xet's text."""
    for exc in chain:
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
        if isinstance(status, int):
            return status
    for exc in chain:
        found = _XET_HTTP_STATUS.search(str(exc))
        if found:
            return int(found.group(1))
    return None


def _unreachable(chain: list[BaseException]) -> bool:
    import sys

    kinds: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module in ("httpx2", "httpx"):  # only if imported: an error of a type never loaded cannot be live
        loaded = sys.modules.get(module)
        if loaded is not None:
            kinds.append(loaded.TransportError)
    return any(isinstance(exc, tuple(kinds)) for exc in chain)


def _endpoint() -> str:
    import os

    return os.environ.get("HF_ENDPOINT", "").rstrip("/") or "https://huggingface.co"


def describe(exc: BaseException, *, access: str) -> tuple[str, str | None]:
    """(what failed, the next step) for an error from the Hub; `access` is what the command
    needs of the bucket ("read", "write")."""
    chain = list(_chain(exc))
    status = _status(chain)
    if status in (401, 403):
        return (
            f"the Hub refused the token ({status})",
            f"log in with an account that can {access} the bucket: hf auth login (or set HF_TOKEN)",
        )
    if status == 404:
        return (
            "not found on the Hub (404)",
            "the bucket or the file is gone, or this token cannot see it: hf auth whoami",
        )
    if status == 429:
        return "the Hub's rate limit is used up (429)", "try again in a few minutes"
    if status is not None and (status >= 500 or status == 408):
        return (
            f"the Hub answered {status}",
            "the Hub had a problem; try again later (`tracekeeper doctor` checks the store)",
        )
    if status is not None:
        return f"the Hub answered {status}", "--traceback shows its answer"
    if _unreachable(chain):
        return (
            "the Hub cannot be reached",
            f"check the network and that {_endpoint()} is the Hub you mean (HF_ENDPOINT), then try again",
        )
    if isinstance(exc, OSError):  # a file: a local store's, or the download's temporary one
        import tempfile

        name = str(exc.filename or "")
        if name.startswith(str(Path(tempfile.gettempdir()) / "tracekeeper-")):
            name = "a temporary file"  # its path is ours, and gone by now: nothing to act on
        where = f"{name}: " if name else ""
        return f"{where}{exc.strerror or type(exc).__name__}", None
    return f"the transfer failed ({type(chain[-1]).__name__})", "--traceback (or TRACEKEEPER_DEBUG=1) shows the details"
