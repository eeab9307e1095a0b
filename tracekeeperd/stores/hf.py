"""A private Hugging Face Storage Bucket, through the real huggingface_hub (and hf_xet).

What the library does not do for a daemon, done here:
- bound every HTTP call (the library's client has no timeout) and hf_xet's own retries
  (minutes by default when the Hub is unreachable), so one attempt can never hang;
- leave every retry that waits on the Hub's say-so (429 windows, 5xx) to the daemon's persisted
  schedule: the library's `http_backoff` would sleep to the end of a 5-minute window, up to five
  times, inside one call;
- ask whether the bucket is private immediately before every upload, and refuse a public one
  before a single byte is sent;
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

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from ..errors import PermanentError, TransientError
from .base import MissingTrace, StoreDenied, StoreInfo, Upload

if TYPE_CHECKING:
    from huggingface_hub import HfApi

    from ..config import RetryPolicy

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_BUCKET_NAME = "agent-traces"
#: Read by huggingface_hub when it is first imported (constants.py) and by hf_xet when it starts
#: (on the first transfer): set before either, unless the user chose. Progress bars are also
#: switched off through the public API, which works whenever the import happened.
HUB_ENVIRONMENT = {
    "HF_XET_CLIENT_RETRY_MAX_ATTEMPTS": "3",
    "HF_XET_CLIENT_RETRY_BASE_DELAY": "200ms",
    "HF_XET_CLIENT_RETRY_MAX_DURATION": "15s",
    "HF_XET_TELEMETRY_ENABLED": "false",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_UPDATE_CHECK": "1",
    # hf_xet's memory during an upload: see XET_MEMORY_BOUNDS.
    "HF_XET_CLIENT_AC_MAX_UPLOAD_CONCURRENCY": "2",
    "TOKIO_WORKER_THREADS": "2",
}
#: What bounds hf_xet's buffers in the daemon (huggingface/xet-core; both are read in this process
#: when huggingface_hub creates its one XetSession, on the first transfer: hf_xet/src/py_xet_session.rs
#: `XetConfig::new` reads HF_XET_*, and the session's runtime reads TOKIO_WORKER_THREADS).
#: - Xorbs in flight (up to 64 MiB raw each, ~35 MiB compressed for JSONL): a serialized xorb waits
#:   for an upload permit before its upload task is spawned (xet_data/src/processing/
#:   file_upload_session.rs `register_new_xorb`), and the adaptive controller raises the permits from
#:   2 up to `ac_max_upload_concurrency`, 64 by default (xet_runtime/src/config/groups/client.rs,
#:   xet_client/src/cas_client/adaptive_concurrency/controller.rs `new_upload`): on a link faster than
#:   its first guess, memory grows with the transcript. 2 is hf_xet's own starting value, so a
#:   transcript-sized upload is sent as a default upload sends it.
#: - Runtime workers: one per core up to 32 (xet_runtime/src/core/runtime/native.rs
#:   `get_num_tokio_worker_threads`, whose own floor is 2); chunking and compression run on its
#:   blocking threads whatever the count.
#: Not bounded by any setting: the xorb being built (`MAX_XORB_BYTES`, 64 MiB, in
#: xet_core_structures/src/xorb_object/constants.rs is read from HF_XET_MAX_XORB_BYTES only in debug
#: builds) and its serialized copy. Measured in docs/benchmarks.md ("Large sessions").
XET_MEMORY_BOUNDS = ("HF_XET_CLIENT_AC_MAX_UPLOAD_CONCURRENCY", "TOKIO_WORKER_THREADS")
#: The statuses huggingface_hub's `http_backoff` retries by itself (`_DEFAULT_RETRY_ON_STATUS_CODES`
#: in huggingface_hub/utils/_http.py), sleeping `Retry-After` or a rate-limit window each time.
LIBRARY_RETRIED_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: hf_xet reports an HTTP failure of its own requests (the xet token fetch) as a ConnectionError
#: whose text keeps reqwest's wording, e.g. "HTTP status client error (403 Forbidden), domain: ...".
#: There is no typed way to the status: in huggingface/xet-core xet_pkg/src/error.rs,
#: `from_client_error_ref` turns every reqwest status error other than 429/5xx into
#: `XetError::Network` and `From<XetError> for PyErr` raises Network, RateLimited and ServerError
#: all as `PyConnectionError(msg)`; only `ClientError::AuthError` (a failed token *refresh*) becomes
#: the typed `hf_xet.XetAuthenticationError` (a PermissionError). The text is
#: xet_client/src/error.rs `ReqwestError`: "Request error: {reqwest error}, domain: {url}".
_XET_HTTP_STATUS = re.compile(r"HTTP status (?:client|server) error \((\d{3})\b")
#: xet-core's `AuthError::TokenRefreshFailure` (xet_client/src/cas_client/auth.rs): the token
#: refresh request failed, for whatever reason; the status, if any, follows in the text.
_XET_REFRESH_FAILED = "Token refresh failed"
WRITE_ACCESS_HINT = "use a token with write access (`hf auth login`, or set HF_TOKEN), then run `tracekeeper retry`"

_client_lock = threading.Lock()
_client_configured = False


class BucketMissing(PermanentError):
    """The Hub says the bucket does not exist (404): it was deleted, or was never created."""


class RateLimited(TransientError):
    """A 429: the Hub is reachable, and said when to come back."""


def configure_hub(connect: float = 5.0, read: float = 30.0) -> None:
    """Once per process, before huggingface_hub does any work for us.

    Environment first (it only counts if set before huggingface_hub's first import and before
    hf_xet starts), then the library's public switches: no progress bars (tqdm would write them
    into the daemon's log), and a shared HTTP client with timeouts whose retryable answers raise
    at once instead of being slept on by `http_backoff`.
    """
    global _client_configured
    with _client_lock:
        if _client_configured:
            return
        for key, value in HUB_ENVIRONMENT.items():
            os.environ.setdefault(key, value)
        import httpx2
        from huggingface_hub import constants, get_session, set_client_factory
        from huggingface_hub.utils import disable_progress_bars, hf_raise_for_status

        if constants.HF_HUB_DISABLE_PROGRESS_BARS is None:  # imported before the variable was set
            disable_progress_bars()
        # The library's own request hooks (offline mode, request ids, debug log), taken from the
        # client its default factory builds, so ours behaves the same apart from what we change.
        request_hooks = list(get_session().event_hooks["request"])

        def refuse_retryable(response: httpx2.Response) -> None:
            """Raise the library's own error for an answer `http_backoff` would sleep on and retry."""
            if response.status_code in LIBRARY_RETRIED_STATUSES:
                response.read()
                hf_raise_for_status(response)

        def factory() -> httpx2.Client:
            return httpx2.Client(
                event_hooks={"request": request_hooks, "response": [refuse_retryable]},
                follow_redirects=True,
                timeout=httpx2.Timeout(read, connect=connect),
            )

        set_client_factory(factory)
        _client_configured = True


def classify(exc: BaseException) -> TransientError | PermanentError:
    """Map whatever huggingface_hub or hf_xet raised to retry-later or needs-a-human."""
    import httpx2
    from huggingface_hub.errors import BucketNotFoundError, EntryNotFoundError, HfHubHTTPError

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
            return PermanentError(f"the Hub refused the token ({status}: {message}); {WRITE_ACCESS_HINT}")
        if status == 404 and isinstance(exc, BucketNotFoundError):
            return BucketMissing(f"the bucket does not exist on the Hub (404: {message})")
        if status == 404:
            return PermanentError(f"not found on the Hub (404: {message})")
        if status == 429:
            limited = _rate_limited(exc.response.headers)
            if limited is not None:
                return limited
        if status in (408, 429) or status >= 500:
            kind = RateLimited if status == 429 else TransientError
            return kind(f"the Hub answered {status}: {message}", retry_after=_retry_after(exc.response.headers))
        return PermanentError(f"the Hub answered {status}: {message}")
    if isinstance(exc, EntryNotFoundError):
        return MissingTrace(str(exc))
    if isinstance(exc, httpx2.TimeoutException):
        return TransientError(f"the Hub did not answer in time ({type(exc).__name__})")
    if isinstance(exc, httpx2.TransportError):
        return TransientError(f"cannot reach the Hub ({type(exc).__name__}: {exc})")
    if isinstance(exc, PermissionError | ConnectionError):
        # hf_xet reports any failure of its first token fetch (refused, 429, 5xx, even 401/403) as
        # a ConnectionError, and any failure of a token *refresh* mid-transfer, the Hub being
        # unreachable included, as XetAuthenticationError (a PermissionError); only the text
        # keeps the status (see _XET_HTTP_STATUS).
        found = _XET_HTTP_STATUS.search(str(exc))
        xet_status = int(found.group(1)) if found else None
        if xet_status in (401, 403):
            return PermanentError(
                f"the Hub refused write access to the bucket ({xet_status} on the upload token): {WRITE_ACCESS_HINT}"
            )
        if xet_status == 404:
            return BucketMissing(f"the bucket does not exist on the Hub (404 on the upload token): {exc}")
        if isinstance(exc, PermissionError) and _XET_REFRESH_FAILED not in str(exc):
            return PermanentError(f"the Hub refused the upload ({exc}); {WRITE_ACCESS_HINT}")
        return TransientError(f"transfer failed: {exc}")
    if isinstance(exc, TimeoutError):
        return TransientError(f"transfer failed: {exc}")
    if isinstance(exc, RuntimeError) and "lock" in str(exc).lower():
        return TransientError(f"xet storage busy: {exc}")
    return PermanentError(f"unexpected {type(exc).__name__}: {exc}")


def _rate_limited(headers: Any) -> RateLimited | None:
    """The Hub's own word on a 429: `RateLimit: "api";r=0;t=55` (IETF draft, 5-minute windows).

    Read with huggingface_hub's public parser; like the library, only a window with nothing
    left explains the 429, and one second is added to the reset to be past it.
    """
    from huggingface_hub.utils import parse_ratelimit_headers

    info = parse_ratelimit_headers(headers)
    if info is None or info.remaining != 0:
        return None
    quota = f", {info.limit} requests per {info.window_seconds} s" if info.limit and info.window_seconds else ""
    return RateLimited(
        f"the Hub's '{info.resource_type}' rate limit is used up{quota}; next try when its window resets"
        f" in {info.reset_in_seconds} s",
        retry_after=float(info.reset_in_seconds + 1),
    )


def _retry_after(headers: Any) -> float | None:
    """`Retry-After` in seconds; an HTTP-date or nonsense falls back to our own backoff."""
    value = headers.get("Retry-After")
    try:
        delay = float(value) if value else None
    except ValueError:
        return None
    if delay is not None and not (math.isfinite(delay) and delay >= 0):
        return None  # inf would park the job for good, nan breaks the comparisons
    return delay


def burst_wait(policy: RetryPolicy) -> wait_exponential_jitter:
    """The waits between in-attempt retries: `policy.burst` (0.5 s), doubling up to 8 times it,
    each plus up to `burst` of jitter. A setting, like the queue's own backoff, so that a daemon
    under test spends milliseconds where a real one gives the Hub a second to recover."""
    step = policy.burst
    return wait_exponential_jitter(multiplier=step, max=8 * step, jitter=step)


class HfStore:
    def __init__(
        self,
        bucket: str | None,
        endpoint: str,
        token: str | None = None,
        *,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """`retry`: the daemon's backoff policy, which sets the in-attempt waits (`burst_wait`);
        `sleep`: how those waits are spent (a test passes one that records them instead)."""
        from ..config import RetryPolicy

        self._wait = burst_wait(retry or RetryPolicy())
        self._sleep = sleep
        self._bucket = bucket
        self.endpoint = endpoint.rstrip("/")
        self._token = token
        self._api: HfApi | None = None
        self._created = False
        #: Bumped each time this store creates its bucket (see `Store.generation`).
        self.generation = 0
        self._private: bool | None = None
        self._checked_at: float | None = None
        self._reachable: bool | None = None
        self._detail: str | None = None
        self._lock = threading.Lock()

    # --- plumbing ---------------------------------------------------------------------

    def _hf(self) -> HfApi:
        if self._api is None:
            configure_hub()
            from huggingface_hub import HfApi

            self._api = HfApi(endpoint=self.endpoint, token=self._token)
        return self._api

    def _call(self, fn: Callable[[], T], *, retries: int = 2) -> T:
        """One short in-attempt burst of retries for transient errors; the queue does the rest.

        An answer that says when to come back (a rate-limit window, `Retry-After`), or any 429, is
        not retried here: the daemon schedules that try, persisted, so it survives a restart.
        """
        try:
            for attempt in Retrying(
                retry=retry_if_exception(
                    lambda e: isinstance(e, TransientError) and e.retry_after is None and not isinstance(e, RateLimited)
                ),
                wait=self._wait,
                sleep=self._sleep,
                stop=stop_after_attempt(retries + 1),
                reraise=True,
            ):
                with attempt:
                    try:
                        result = fn()
                    except Exception as exc:
                        raise classify(exc) from exc
                    self._reachable = True
                    return result
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

    def _create(self, bucket: str) -> None:
        """Create the bucket private; one that exists already is left as it is (and then checked).

        A bucket this call really creates starts a new `generation`: whatever the queue recorded
        as uploaded into its predecessor is gone, and must not be noted as if it were there.
        """
        api = self._hf()
        try:
            self._call(lambda: api.bucket_info(bucket))
        except BucketMissing:
            self._call(lambda: api.create_bucket(bucket, private=True, exist_ok=True))
            self.generation += 1
        self._created = True

    def _check_private(self, bucket: str) -> None:
        """Ask the Hub now whether the bucket is private; a bucket that is gone is created again.

        No answer is trusted for later: a bucket made public a second ago must refuse the
        next upload. What was seen, and when, is kept for `status`.
        """
        api = self._hf()
        try:
            info = self._call(lambda: api.bucket_info(bucket))
        except BucketMissing:
            log.warning("bucket %s no longer exists; creating it again, private", bucket)
            self._created = False
            self._create(bucket)  # a new generation: nothing recorded as uploaded is there any more
            info = self._call(lambda: api.bucket_info(bucket))
        self._private, self._checked_at = bool(info.private), time.time()
        self._detail = None
        if not self._private:
            raise PermanentError(
                f"bucket {bucket} is public; refusing to upload traces into it"
                f" (make it private: hf buckets settings {bucket} --private), then run `tracekeeper retry`"
            )

    # --- the Store protocol -----------------------------------------------------------

    def ident(self) -> str:
        return f"hf://buckets/{self._bucket or '?/' + DEFAULT_BUCKET_NAME}"

    def preflight(self) -> None:
        """The queue's cheap probe before it redacts anything.

        It asks the Hub only when the last answer was not "reachable and private" (start-up, after
        a failure, a public bucket): while all is well, `put` asks anyway, right before its bytes
        go, and a second question per upload would spend the Hub's rate limit for nothing.
        """
        with self._lock:
            bucket = self.bucket_id()
            if not self._created:
                self._create(bucket)
            if self._reachable is not True or self._private is not True:
                self._check_private(bucket)

    def put(self, uploads: list[Upload]) -> dict[str, str]:
        from huggingface_hub.errors import BucketBatchError

        bucket = self.bucket_id()
        api = self._hf()
        with self._lock:
            self._check_private(bucket)  # every upload, immediately before its bytes are sent
        if not uploads:
            return {}  # asked only to check: the bucket is there (maybe anew) and private
        # A path is uploaded by hf_xet straight from the file (huggingface_hub hf_api.py,
        # `_batch_bucket_files`: `commit.start_upload_file(str(op.source))` for a str/Path
        # source, `start_upload_bytes` only for bytes), so a large trace is never held here.
        add: list[tuple[str | os.PathLike[str] | bytes, str]] = [(u.data, u.remote_path) for u in uploads]
        try:
            self._call(lambda: api.batch_bucket_files(bucket, add=add))  # type: ignore[arg-type]
        except BucketMissing as exc:
            self._created = False  # deleted during the transfer: the next try creates it again
            raise TransientError(f"bucket {bucket} vanished during the upload; it is created again next try") from exc
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
        # A person is waiting (`tracekeeper show`): an unreachable Hub must fail fast, as in
        # `delete`. The download's first request (`paths-info`) goes through the library's
        # `http_backoff`, which retries a refused connection five times, sleeping up to 8 s
        # each (huggingface_hub/utils/_http.py), under our own retries: over a minute.
        with tempfile.TemporaryDirectory(prefix="tracekeeper-") as tmp:
            local = Path(tmp) / "trace.jsonl"
            try:
                # Inside the try: its 401/403/404 say the same about reading as the download's.
                self._call(lambda: self._hf().bucket_info(bucket), retries=0)
                # raise_on_missing_files: without it the library warns and skips the file.
                self._call(
                    lambda: self._hf().download_bucket_files(
                        bucket, [(remote_path, str(local))], raise_on_missing_files=True
                    )
                )
            except MissingTrace:
                raise MissingTrace(
                    f"the trace is not in the bucket {bucket} (deleted, or not uploaded yet): {remote_path}"
                ) from None
            except BucketMissing:
                # The Hub answers 404 RepoNotFound to a token that may not see a private bucket, as
                # to one for a bucket that is gone (huggingface_hub utils/_http.py, hf_raise_for_status
                # -> BucketNotFoundError): a reader cannot tell, and the next step is the same.
                raise StoreDenied(
                    f"the bucket {bucket} does not exist, or this token cannot read it", location=bucket
                ) from None
            except PermanentError as exc:
                status = getattr(getattr(exc.__cause__, "response", None), "status_code", None)
                if status in (401, 403):
                    # 401: no token, or one the Hub does not know ("Invalid credentials in
                    # Authorization header"), or anonymous on a private bucket (RepoNotFound);
                    # 403: a token without read permission there. classify() words these for the
                    # daemon, which writes; a reader needs read access.
                    raise StoreDenied(
                        f"the Hub refused to let this token read the bucket {bucket} ({status})", location=bucket
                    ) from None
                raise
            return local.read_bytes()

    def delete(self, remote_path: str) -> None:
        """One `deleteFile` batch operation; a path the bucket no longer has is already deleted.

        A person is waiting (`tracekeeper forget`), so an unreachable Hub must fail fast: one
        `bucket_info` (tried once by the library) first, because `/batch` goes through the
        library's own backoff on network errors.
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
            checked_at=self._checked_at,
        )
