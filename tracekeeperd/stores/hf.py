"""A private Hugging Face Storage Bucket, through the real huggingface_hub (and hf_xet).

Three things the library does not do for a daemon, done here:
- bound every HTTP call (the library's client has no timeout) and hf_xet's own retries
  (minutes by default when the Hub is unreachable), so one attempt can never hang;
- refuse a bucket that is public before a single byte is sent;
- turn the library's many exception types into TransientError / PermanentError.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from ..errors import ConfigError, PermanentError, TransientError
from .base import StoreInfo, Upload

if TYPE_CHECKING:
    from huggingface_hub import HfApi

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_BUCKET_NAME = "agent-traces"
#: hf_xet reads these once, at import; set before the first upload unless the user chose.
XET_BOUNDS = {
    "HF_XET_CLIENT_RETRY_MAX_ATTEMPTS": "3",
    "HF_XET_CLIENT_RETRY_BASE_DELAY": "200ms",
    "HF_XET_CLIENT_RETRY_MAX_DURATION": "15s",
    "HF_XET_TELEMETRY_ENABLED": "false",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_UPDATE_CHECK": "1",
}
#: How long a "bucket is private" answer is trusted before asking the Hub again.
PRIVACY_TTL = 60.0

_client_lock = threading.Lock()
_client_configured = False


def bound_client(connect: float = 5.0, read: float = 30.0) -> None:
    """Give huggingface_hub's shared HTTP client real timeouts (its default is none)."""
    global _client_configured
    with _client_lock:
        if _client_configured:
            return
        for key, value in XET_BOUNDS.items():
            os.environ.setdefault(key, value)
        import httpx2
        from huggingface_hub.utils import _http

        def factory() -> httpx2.Client:
            return httpx2.Client(
                event_hooks={"request": [_http.hf_request_event_hook]},
                follow_redirects=True,
                timeout=httpx2.Timeout(read, connect=connect),
            )

        _http.set_client_factory(factory)
        _client_configured = True


def parse_bucket_url(url: str) -> str:
    """`hf://buckets/ns/name` -> `ns/name` (a bare `name` means the token owner's namespace)."""
    rest = url.removeprefix("hf://").removeprefix("buckets/").strip("/")
    parts = [p for p in rest.split("/") if p]
    if not 1 <= len(parts) <= 2:
        raise ConfigError(f"not a bucket: {url!r} (expected hf://buckets/<namespace>/<name>)")
    return "/".join(parts)


def classify(exc: BaseException) -> TransientError | PermanentError:
    """Map whatever huggingface_hub or hf_xet raised to retry-later or needs-a-human."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(exc, TransientError | PermanentError):
        return exc
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code
        # First line only; a hand-built error may have an empty or blank message.
        # The most useful line: the server's own message, else the first line that is more than
        # a bare "404 Client Error." status echo.
        lines = (exc.server_message or "").strip().splitlines() or str(exc).strip().splitlines()
        useful = [line for line in lines if not re.fullmatch(r"\s*\d{3} \w+ Error[.:]?.*?", line)]
        message = (useful or lines or ["no details"])[0].strip()
        if status in (401, 403):
            return PermanentError(
                f"the Hub refused the token ({status}: {message}); run `hf auth login` or set HF_TOKEN"
            )
        if status == 404:
            return PermanentError(f"not found on the Hub (404: {message})")
        if status in (408, 429) or status >= 500:
            retry_after = exc.response.headers.get("Retry-After")
            try:
                delay = float(retry_after) if retry_after else None
            except ValueError:
                delay = None  # an HTTP-date: fall back to our own backoff
            if delay is not None and not (math.isfinite(delay) and delay >= 0):
                delay = None  # inf would park the job for good, nan breaks the comparisons
            return TransientError(f"the Hub answered {status}: {message}", retry_after=delay)
        return PermanentError(f"the Hub answered {status}: {message}")
    if isinstance(exc, httpx2.TimeoutException):
        return TransientError(f"the Hub did not answer in time ({type(exc).__name__})")
    if isinstance(exc, httpx2.TransportError):
        return TransientError(f"cannot reach the Hub ({type(exc).__name__}: {exc})")
    if isinstance(exc, ConnectionError | TimeoutError):
        # hf_xet reports any failure of its token fetch (refused, 5xx, even 401) this way.
        return TransientError(f"transfer failed: {exc}")
    if isinstance(exc, RuntimeError) and "lock" in str(exc).lower():
        return TransientError(f"xet storage busy: {exc}")
    return PermanentError(f"unexpected {type(exc).__name__}: {exc}")


class HfStore:
    def __init__(self, bucket: str | None, endpoint: str, token: str | None = None) -> None:
        self._bucket = bucket
        self.endpoint = endpoint.rstrip("/")
        self._token = token
        self._api: HfApi | None = None
        self._created = False
        self._private: bool | None = None
        self._checked_at = 0.0
        self._reachable: bool | None = None
        self._detail: str | None = None
        self._lock = threading.Lock()

    # --- plumbing ---------------------------------------------------------------------

    def _hf(self) -> HfApi:
        if self._api is None:
            bound_client()
            from huggingface_hub import HfApi

            self._api = HfApi(endpoint=self.endpoint, token=self._token)
        return self._api

    def _call(self, fn: Callable[[], T], *, retries: int = 2) -> T:
        """One short in-attempt burst of retries for transient errors; the queue does the rest."""
        try:
            for attempt in Retrying(
                retry=retry_if_exception_type(TransientError),
                wait=wait_exponential_jitter(multiplier=0.5, max=4, jitter=0.5),
                stop=stop_after_attempt(retries + 1),
                reraise=True,
            ):
                with attempt:
                    try:
                        return fn()
                    except Exception as exc:
                        raise classify(exc) from exc
        except TransientError as exc:
            self._reachable, self._detail = False, str(exc)
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    def bucket_id(self) -> str:
        """`ns/name`; without a configured namespace, the token owner's `agent-traces`."""
        if self._bucket and "/" in self._bucket:
            return self._bucket
        who: dict[str, Any] = self._call(lambda: self._hf().whoami())
        role = ((who.get("auth") or {}).get("accessToken") or {}).get("role")
        if role == "read":
            raise PermanentError("the HF token is read-only; traces need a token with write access")
        self._bucket = f"{who['name']}/{self._bucket or DEFAULT_BUCKET_NAME}"
        return self._bucket

    # --- the Store protocol -----------------------------------------------------------

    def ident(self) -> str:
        return f"hf://buckets/{self._bucket or '?/' + DEFAULT_BUCKET_NAME}"

    def preflight(self) -> None:
        with self._lock:
            bucket = self.bucket_id()
            api = self._hf()
            if not self._created:
                self._call(lambda: api.create_bucket(bucket, private=True, exist_ok=True))
                self._created = True
            if time.monotonic() - self._checked_at > PRIVACY_TTL or self._private is not True:
                info = self._call(lambda: api.bucket_info(bucket))
                self._private, self._checked_at = bool(info.private), time.monotonic()
            self._reachable, self._detail = True, None
            if not self._private:
                raise PermanentError(
                    f"bucket {bucket} is public; refusing to upload traces into it"
                    f" (make it private: hf buckets settings {bucket} --private)"
                )

    def put(self, uploads: list[Upload]) -> dict[str, str]:
        from huggingface_hub.errors import BucketBatchError

        bucket = self.bucket_id()
        api = self._hf()
        add: list[tuple[str | os.PathLike[str] | bytes, str]] = [(u.data, u.remote_path) for u in uploads]
        try:
            self._call(lambda: api.batch_bucket_files(bucket, add=add))  # type: ignore[arg-type]
        except PermanentError as exc:
            cause = exc.__cause__
            if isinstance(cause, BucketBatchError):
                return {f.get("path", "?"): f.get("error", "rejected") for f in cause.failures}
            raise
        return {}

    def url(self, remote_path: str) -> str:
        return f"{self.endpoint}/buckets/{self.bucket_id()}/tree/{remote_path}"

    def fetch(self, remote_path: str) -> bytes:
        import tempfile
        from pathlib import Path

        bucket = self.bucket_id()
        with tempfile.TemporaryDirectory(prefix="tracekeeper-") as tmp:
            local = Path(tmp) / "trace.jsonl"
            self._call(lambda: self._hf().download_bucket_files(bucket, [(remote_path, str(local))]))
            return local.read_bytes()

    def delete(self, remote_path: str) -> None:
        """One `deleteFile` batch operation; a path the bucket no longer has is already deleted.

        A person is waiting (`tracekeeper forget`), so an unreachable Hub must fail fast: one
        `bucket_info` (tried once by the library) first, because `/batch` goes through the
        library's own backoff (five retries, about 23 s) on network errors.
        """
        from huggingface_hub.errors import BucketBatchError

        bucket = self.bucket_id()
        api = self._hf()
        self._call(lambda: api.bucket_info(bucket), retries=0)
        try:
            self._call(lambda: api.batch_bucket_files(bucket, delete=[remote_path]), retries=0)
        except PermanentError as exc:
            cause = exc.__cause__
            if isinstance(cause, BucketBatchError):
                errors = [str(f.get("error", "rejected")) for f in cause.failures]
                if errors and all("not found" in e.lower() for e in errors):
                    return
                raise PermanentError(f"the Hub refused to delete {remote_path}: {'; '.join(errors)}") from exc
            raise

    def info(self) -> StoreInfo:
        return StoreInfo(
            kind="hf",
            location=self.ident(),
            private=self._private,
            reachable=self._reachable,
            detail=self._detail,
        )
