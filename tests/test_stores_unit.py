"""Unit tests for the stores' pure parts: HF error classification, bucket URLs, the local directory store.

HF errors are the library's own: real `httpx2.Response`s run through huggingface_hub's
`hf_raise_for_status`, exactly as a failing call would produce them.
"""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest
from huggingface_hub import hf_raise_for_status
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

from tracekeeperd.config import RetryPolicy, StoreSpec, parse_store
from tracekeeperd.errors import ConfigError, PermanentError, TransientError
from tracekeeperd.stores import LocalStore, MissingTrace, Upload
from tracekeeperd.stores.hf import BucketMissing, RateLimited, classify

from .hubstub import running_hub

BATCH_URL = "https://huggingface.co/api/buckets/ns/name/batch"


def _hub_error(status: int, **kw: object) -> HfHubHTTPError:
    response = httpx2.Response(status, request=httpx2.Request("POST", BATCH_URL), **kw)  # type: ignore[arg-type]
    with pytest.raises(HfHubHTTPError) as info:
        hf_raise_for_status(response)
    return info.value


def _one_line(error: BaseException) -> str:
    text = str(error)
    assert text and "\n" not in text, f"not one line: {text!r}"
    return text


# --- classify: HTTP answers ------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_refused_token_is_permanent_with_the_fix(status: int) -> None:
    got = classify(_hub_error(status, json={"error": "Invalid credentials in Authorization header"}))
    assert isinstance(got, PermanentError)
    text = _one_line(got)
    assert str(status) in text and "Invalid credentials" in text and "HF_TOKEN" in text


def test_not_found_is_permanent() -> None:
    got = classify(_hub_error(404, headers={"X-Error-Code": "RepoNotFound"}))
    assert isinstance(got, PermanentError)
    assert "404" in _one_line(got)


def test_429_is_transient_and_carries_retry_after() -> None:
    got = classify(_hub_error(429, headers={"Retry-After": "30"}, text="slow down"))
    assert isinstance(got, TransientError)
    assert got.retry_after == 30.0
    assert _one_line(got) == "the Hub answered 429: slow down"


def test_a_used_up_rate_limit_window_is_read_from_the_hubs_headers() -> None:
    """What the Hub sends (huggingface_hub issue #3553): no Retry-After, the IETF-draft headers."""
    headers = {"RateLimit": '"api";r=0;t=55', "RateLimit-Policy": '"fixed window";"api";q=500;w=300'}
    got = classify(_hub_error(429, headers=headers))
    assert isinstance(got, RateLimited)
    assert got.retry_after == 56.0  # past the reset, as huggingface_hub's own backoff does (+1 s)
    assert _one_line(got) == (
        "the Hub's 'api' rate limit is used up, 500 requests per 300 s; next try when its window resets in 55 s"
    )


def test_a_429_with_quota_left_is_not_blamed_on_the_window() -> None:
    """The headers are on every answer; with requests left they do not explain the 429."""
    headers = {"RateLimit": '"api";r=12;t=200', "Retry-After": "7"}
    got = classify(_hub_error(429, headers=headers, json={"error": "too many repo creations today"}))
    assert isinstance(got, RateLimited)
    assert got.retry_after == 7.0
    assert "too many repo creations today" in _one_line(got)


def test_a_deleted_bucket_is_told_apart_from_other_404s() -> None:
    got = classify(_hub_error(404, headers={"X-Error-Code": "RepoNotFound"}))
    assert isinstance(got, BucketMissing)
    other = classify(_hub_error(404, headers={"X-Error-Code": "EntryNotFound"}))
    assert isinstance(other, PermanentError) and not isinstance(other, BucketMissing)


@pytest.mark.parametrize("value", ["soon", "Wed, 21 Oct 2015 07:28:00 GMT", "inf", "nan", "-5"])
def test_unusable_retry_after_is_ignored(value: str) -> None:
    """Only a finite, non-negative number of seconds may reach `next_attempt_at`."""
    got = classify(_hub_error(429, headers={"Retry-After": value}))
    assert isinstance(got, TransientError)
    assert got.retry_after is None


@pytest.mark.parametrize("status", [408, 500, 502, 503, 504])
def test_server_errors_are_transient(status: int) -> None:
    got = classify(_hub_error(status, text="<html>down</html>", headers={"Content-Type": "text/html"}))
    assert isinstance(got, TransientError)
    assert got.retry_after is None
    text = _one_line(got)
    assert f"answered {status}" in text and "<html>" not in text


def test_other_client_errors_are_permanent() -> None:
    got = classify(_hub_error(400, json={"error": "bad path"}))
    assert isinstance(got, PermanentError)
    assert _one_line(got) == "the Hub answered 400: bad path"


def test_a_multi_line_server_message_is_cut_to_its_first_line() -> None:
    got = classify(_hub_error(400, json={"error": ["first problem", "second problem"]}))
    assert _one_line(got) == "the Hub answered 400: first problem"


def test_an_http_error_with_an_empty_message_still_classifies() -> None:
    """Code outside hf_raise_for_status may build HfHubHTTPError by hand, message and all."""
    response = httpx2.Response(502, request=httpx2.Request("GET", BATCH_URL))
    for message, server_message in (("", None), ("\n", "  ")):
        got = classify(HfHubHTTPError(message, response=response, server_message=server_message))
        assert isinstance(got, TransientError)
        assert _one_line(got).startswith("the Hub answered 502")


# --- classify: transport and other failures --------------------------------------------


def test_connection_refused_is_transient() -> None:
    exc = httpx2.ConnectError("[Errno 111] Connection refused", request=httpx2.Request("GET", BATCH_URL))
    got = classify(exc)
    assert isinstance(got, TransientError)
    assert _one_line(got) == "cannot reach the Hub (ConnectError: [Errno 111] Connection refused)"


@pytest.mark.parametrize("cls", [httpx2.ReadTimeout, httpx2.ConnectTimeout, httpx2.PoolTimeout])
def test_timeouts_are_transient(cls: type[httpx2.TimeoutException]) -> None:
    got = classify(cls("timed out", request=httpx2.Request("GET", BATCH_URL)))
    assert isinstance(got, TransientError)
    assert _one_line(got) == f"the Hub did not answer in time ({cls.__name__})"


#: hf_xet's text for an HTTP failure of its xet-token fetch (hf_xet 1.8, against tests/hubstub.py).
XET_TOKEN_FAILURE = (
    "Network error: Request error: HTTP status client error ({status}), "
    "domain: http://127.0.0.1:1/api/buckets/ns/name/xet-write-token"
)


@pytest.mark.parametrize("status", ["401 Unauthorized", "403 Forbidden"])
def test_a_refused_upload_token_is_permanent_and_says_what_to_do(status: str) -> None:
    got = classify(ConnectionError(XET_TOKEN_FAILURE.format(status=status)))
    assert isinstance(got, PermanentError)
    text = _one_line(got)
    assert status[:3] in text and "write access" in text and "tracekeeper retry" in text


def test_an_upload_token_for_a_missing_bucket_means_the_bucket_is_gone() -> None:
    assert isinstance(classify(ConnectionError(XET_TOKEN_FAILURE.format(status="404 Not Found"))), BucketMissing)


def test_a_5xx_on_the_upload_token_stays_transient() -> None:
    text = XET_TOKEN_FAILURE.replace("client", "server").format(status="503 Service Unavailable")
    assert isinstance(classify(ConnectionError(text)), TransientError)


def test_hf_xets_authentication_error_is_permanent() -> None:
    """hf_xet's XetAuthenticationError subclasses PermissionError (xet-core xet_pkg/src/error.rs)."""
    got = classify(PermissionError("Authentication error: token expired"))
    assert isinstance(got, PermanentError) and "write access" in _one_line(got)


#: hf_xet's text when the xet token's *refresh* fails mid-transfer: xet-core's AuthMiddleware wraps
#: it as ClientError::AuthError, so it is raised as the typed XetAuthenticationError whatever the
#: cause (xet_client/src/cas_client/auth.rs `AuthError::TokenRefreshFailure`,
#: xet_client/src/common/http_client.rs `get_token`, xet_pkg/src/error.rs).
XET_REFRESH_FAILURE = "Authentication error: Auth error: Token refresh failed: Request error: {cause}, domain: http://127.0.0.1:1/api/buckets/ns/name/xet-write-token"


@pytest.mark.parametrize(
    "cause",
    ["HTTP status server error (503 Service Unavailable)", "error sending request for url (http://127.0.0.1:1/)"],
)
def test_a_token_refresh_that_failed_for_want_of_the_hub_is_transient(cause: str) -> None:
    from hf_xet import XetAuthenticationError

    got = classify(XetAuthenticationError(XET_REFRESH_FAILURE.format(cause=cause)))
    assert isinstance(got, TransientError)


def test_a_token_refresh_the_hub_refused_is_permanent() -> None:
    from hf_xet import XetAuthenticationError

    got = classify(XetAuthenticationError(XET_REFRESH_FAILURE.format(cause="HTTP status client error (403 Forbidden)")))
    assert isinstance(got, PermanentError) and "403" in _one_line(got) and "write access" in _one_line(got)


def test_a_file_missing_from_the_bucket_is_a_missing_trace() -> None:
    assert isinstance(classify(EntryNotFoundError("1 file(s) not found in bucket 'ns/name': a.jsonl")), MissingTrace)


@pytest.mark.parametrize("exc", [ConnectionError("token fetch failed"), TimeoutError("xet timed out")])
def test_builtin_network_errors_from_hf_xet_are_transient(exc: OSError) -> None:
    got = classify(exc)
    assert isinstance(got, TransientError)
    assert _one_line(got) == f"transfer failed: {exc}"


def test_a_busy_xet_lock_is_transient() -> None:
    assert isinstance(classify(RuntimeError("could not acquire Lock on cache")), TransientError)


def test_anything_else_is_permanent_and_named() -> None:
    got = classify(ValueError("weird"))
    assert isinstance(got, PermanentError)
    assert _one_line(got) == "unexpected ValueError: weird"
    assert isinstance(classify(RuntimeError("no idea")), PermanentError)


def test_typed_errors_pass_through_unchanged() -> None:
    transient, permanent = TransientError("t", retry_after=3), PermanentError("p")
    assert classify(transient) is transient
    assert classify(permanent) is permanent


# --- bucket URLs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "bucket"),
    [
        ("hf://buckets/ns/name", "ns/name"),
        ("hf://buckets/ns/name/", "ns/name"),
        ("hf://buckets/name", "name"),
    ],
)
def test_parse_store_reads_a_bucket_url(raw: str, bucket: str) -> None:
    assert parse_store(raw) == StoreSpec(bucket=bucket)


def test_parse_store_reads_a_directory_url() -> None:
    assert parse_store("file:///srv/traces%20dir") == StoreSpec(directory=Path("/srv/traces dir"))


@pytest.mark.parametrize(
    "raw", ["hf://buckets/", "", "hf://buckets/a/b/c", "hf://datasets/ns/name", "file://host/x", "s3://b"]
)
def test_parse_store_refuses_what_is_no_store(raw: str) -> None:
    with pytest.raises(ConfigError):
        parse_store(raw)


# --- the local directory store ---------------------------------------------------------


def test_local_store_puts_atomically_and_privately(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "traces")
    store.preflight()
    assert store.put([Upload("app-1/sessions/codex-s1.jsonl", b"line\n")]) == {}
    target = tmp_path / "traces" / "app-1" / "sessions" / "codex-s1.jsonl"
    assert target.read_bytes() == b"line\n"
    assert (target.stat().st_mode & 0o777) == 0o600
    assert store.put([Upload("app-1/sessions/codex-s1.jsonl", b"line\nmore\n")]) == {}
    assert store.fetch("app-1/sessions/codex-s1.jsonl") == b"line\nmore\n"
    leftovers = [p.name for p in target.parent.iterdir() if p.name != target.name]
    assert leftovers == [], "no temp files remain"


def test_local_store_urls_are_file_urls(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "my traces")
    url = store.url("app-1/sessions/codex-s1.jsonl")
    assert url == (tmp_path / "my traces" / "app-1" / "sessions" / "codex-s1.jsonl").as_uri()
    assert url.startswith("file:///") and "%20" in url
    assert store.ident() == (tmp_path / "my traces").as_uri()
    info = store.info()
    assert (info.kind, info.private) == ("file", True)


@pytest.mark.parametrize("remote", ["../escape.jsonl", "a/../../escape.jsonl", "/etc/passwd"])
def test_local_store_refuses_paths_that_escape_its_root(tmp_path: Path, remote: str) -> None:
    store = LocalStore(tmp_path / "traces")
    store.preflight()
    failed = store.put([Upload(remote, b"x\n"), Upload("app-1/ok.jsonl", b"ok\n")])
    assert list(failed) == [remote] and "escapes the store" in failed[remote]
    assert (tmp_path / "traces" / "app-1" / "ok.jsonl").read_bytes() == b"ok\n"  # the rest of the batch
    with pytest.raises(PermanentError, match="escapes the store"):
        store.fetch(remote)
    assert not (tmp_path / "escape.jsonl").exists()


def test_local_store_refuses_a_symlink_out_of_its_root(tmp_path: Path) -> None:
    root = tmp_path / "traces"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "app-1").symlink_to(outside)
    failed = LocalStore(root).put([Upload("app-1/sessions/x.jsonl", b"x\n")])
    assert "escapes the store" in failed["app-1/sessions/x.jsonl"]
    assert list(outside.iterdir()) == []


def test_local_store_preflight_reports_an_uncreatable_root(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(PermanentError, match="cannot create store directory"):
        LocalStore(blocker / "traces").preflight()


def test_local_store_names_a_missing_trace(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "traces")
    with pytest.raises(MissingTrace) as info:
        store.fetch("app-1/sessions/gone.jsonl")
    assert _one_line(info.value).startswith("the trace is not in ")
    assert "gone.jsonl" in str(info.value)


# --- URL -> store and path ----------------------------------------------------------------


def test_locate_undoes_what_each_store_made_of_a_path(tmp_path: Path) -> None:
    from tracekeeperd.stores import HfStore, locate

    local = LocalStore(tmp_path / "traces")
    store, path = locate(local.url("2026-12/abc.jsonl"), local_root=tmp_path / "traces")
    assert isinstance(store, LocalStore) and store.url(path) == local.url("2026-12/abc.jsonl")
    # The endpoint may sit under a path (a proxy, the Hub stand-in): it is kept, not mistaken for the bucket.
    hf = HfStore("alice/agent-traces", "http://127.0.0.1:9/mirror")
    store, path = locate(hf.url("repo/2026-12/abc.jsonl"))
    assert isinstance(store, HfStore)
    assert (store.endpoint, store.bucket_id(), path) == (
        "http://127.0.0.1:9/mirror",
        "alice/agent-traces",
        "repo/2026-12/abc.jsonl",
    )
    assert store.url(path) == hf.url("repo/2026-12/abc.jsonl")


@pytest.mark.parametrize(
    ("url", "bucket"),
    [
        ("https://huggingface.co/buckets/alice/agent-traces/blob/x.jsonl", True),
        ("https://huggingface.co/buckets/alice/agent-traces/tree/", True),
        ("https://huggingface.co/datasets/alice/x/resolve/main/x.jsonl", False),
        ("s3://bucket/x.jsonl", False),
    ],
)
def test_locate_refuses_a_url_no_store_made(url: str, bucket: bool) -> None:
    from tracekeeperd.stores import NotAStoreURL, locate

    with pytest.raises(NotAStoreURL) as info:
        locate(url)
    assert info.value.bucket is bucket and url in str(info.value)


def test_a_429_is_never_retried_inside_the_attempt() -> None:
    """Even without a used-up window or Retry-After, a 429 says "slow down": the queue schedules
    the next try; a burst of in-attempt retries would only spend more of the caller's quota. The
    Hub sends such 429s for its other limits, e.g. repository creation "300 per day" with the
    api window far from used up (huggingface_hub tests/test_utils_http.py,
    `test_429_with_non_exhausted_ratelimit_headers`)."""
    from tracekeeperd.stores.hf import HfStore

    calls: list[int] = []

    def limited() -> None:
        calls.append(1)
        raise _hub_error(
            429,
            headers={"RateLimit": '"api";r=99794;t=241', "RateLimit-Policy": '"fixed window";"api";q=100000;w=300'},
            json={"error": "You have exceeded the rate limit for repository creation (300 per day)."},
        )

    store = HfStore("ns/name", "http://127.0.0.1:9")  # `_call` itself makes no request
    with pytest.raises(RateLimited):
        store._call(limited)
    assert len(calls) == 1


# --- a note's file:// URL is read only inside the configured local store ----------------------


def test_a_file_url_is_located_only_inside_the_configured_local_store(tmp_path: Path) -> None:
    """A note's URL is its pusher's word: `file:///home/u/.ssh/id_ed25519` must not become a read
    of that file. Only a file inside the configured store's directory is a store's file, with
    `..`, percent-escapes and symlinks resolved before the check."""
    from tracekeeperd.stores import NotAStoreURL, locate

    root = tmp_path / "traces"
    (root / "app").mkdir(parents=True)
    inside = root / "app" / "s.jsonl"
    inside.write_text("{}\n")
    outside = tmp_path / "secret.jsonl"
    outside.write_text("{}\n")
    (root / "app" / "link.jsonl").symlink_to(outside)
    (root / "dirlink").symlink_to(tmp_path)

    store, path = locate(inside.as_uri(), local_root=root)
    assert isinstance(store, LocalStore) and store.fetch(path) == b"{}\n"
    store, path = locate(f"file://{root}/app/../app/./s.jsonl", local_root=root)
    assert store.fetch(path) == b"{}\n"

    refused = [
        outside.as_uri(),
        f"file://{root}/../secret.jsonl",
        f"file://{root}/app/%2e%2e/%2e%2e/secret.jsonl",
        f"file://{root}/app/link.jsonl",
        f"file://{root}/dirlink/secret.jsonl",
        root.as_uri(),
        f"file://{root}-evil/x.jsonl",  # a sibling whose name starts with the store's
        f"file://otherhost{inside}",
        f"file://{root}/app/%00.jsonl",
    ]
    for url in refused:
        with pytest.raises(NotAStoreURL) as info:
            locate(url, local_root=root)
        message = str(info.value)
        assert url in message and "\n" not in message and info.value.explains, url
    # With no local store configured, no file:// URL is read at all.
    with pytest.raises(NotAStoreURL) as info:
        locate(inside.as_uri())
    assert inside.as_uri() in str(info.value) and info.value.explains


# --- the in-attempt retries: their schedule, asserted, not waited out ------------------------------


@pytest.mark.parametrize(
    ("policy", "first", "second"),
    [
        # The daemon's default policy: 0.5 s then 1 s, each plus up to 0.5 s of jitter.
        (RetryPolicy(), (0.5, 1.0), (1.0, 1.5)),
        # TRACEKEEPER_RETRY_BURST=0.02 (the test harness's): the same schedule, 25 times shorter.
        (RetryPolicy(burst=0.02), (0.02, 0.04), (0.04, 0.06)),
    ],
)
def test_transient_answers_are_retried_twice_within_the_attempt_on_the_policys_schedule(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    policy: RetryPolicy,
    first: tuple[float, float],
    second: tuple[float, float],
) -> None:
    """Three tries against the Hub stand-in answering 503; the sleeps between them are handed to
    an injected `sleep` that records them, so the schedule is asserted rather than spent. The
    daemon builds its store with its configured policy (stores.open_store)."""
    from tracekeeperd.stores.hf import HfStore

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    waits: list[float] = []
    with running_hub(tmp_path / "cas") as hub:
        hub.fail_next(3, status=503, paths=["/api/whoami-v2"])
        store = HfStore(None, hub.endpoint, "hf_alice_write", retry=policy, sleep=waits.append)
        with pytest.raises(TransientError, match="503"):
            store.bucket_id()
        assert hub.count(path_suffix="/whoami-v2") == 3
        assert len(waits) == 2
        assert first[0] <= waits[0] <= first[1] and second[0] <= waits[1] <= second[1], waits
        assert store.bucket_id() == "alice/agent-traces"  # the stand-in answers again: no wait
        assert len(waits) == 2
