"""Errors from the Hub as a user meets them through the real CLI: one `Error:` line saying what
failed, in words, and a `hint:` with the next step; the transport's own text (hf_xet's request
errors, the library's retry chatter, temp file paths) only with --traceback / TRACEKEEPER_DEBUG.

The Hub is the stand-in tests/hubstub.py (its HTTP API and a local CAS); the trace is uploaded by
the real daemon, then read back by `show` on a "teammate's machine" (no queue, no transcript).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from . import harness
from .harness import Env
from .hubstub import HubStub

FIXTURES = Path(__file__).parent / "fixtures"
CODEX = FIXTURES / "codex/sessions/2026/02/23/rollout-2026-02-23T13-19-38-019c8a70-dda7-7f33-98ea-f30553347322.jsonl"
#: What must never reach a user's terminal without --traceback.
INTERNALS = ("Request error", "Server error", "middleware", "Errno", "Retrying in", "thrown while", "/tmp/tracekeeper-")


@contextmanager
def uploaded_elsewhere(env: Env) -> Iterator[tuple[HubStub, Path, str, str]]:
    """(hub, repo, commit, trace URL): a commit whose trace is only in the bucket now."""
    with harness.uploaded_elsewhere(env) as (hub, repo, sha):
        yield hub, repo, sha, _url(env, repo, sha)


def _url(env: Env, repo: Path, sha: str) -> str:
    (entry,) = json.loads(env.cli("log", "-C", str(repo), "--json").stdout)["commits"]
    assert entry["commit"] == sha
    (session,) = entry["sessions"]
    return str(session["url"])


def lines(stderr: str) -> list[str]:
    return stderr.splitlines()


def test_show_and_forget_say_in_one_line_that_the_hub_cannot_be_reached(env: Env) -> None:
    with uploaded_elsewhere(env) as (hub, repo, sha, url):
        hub.go_offline()
        shown = env.cli("show", sha, "-C", str(repo), check=False, timeout=120)
        assert shown.returncode == 1
        assert lines(shown.stderr) == [
            f"Error: cannot fetch {url}: the Hub cannot be reached",
            f"hint: check the network and that {hub.endpoint} is the Hub you mean (HF_ENDPOINT), then try again",
        ], shown.stderr
        forgot = env.cli("forget", sha, "-C", str(repo), "--yes", check=False, timeout=120)
        assert forgot.returncode == 1
        assert f"Error: could not delete {url}: the Hub cannot be reached (its links are kept; run forget again)" in (
            lines(forgot.stderr)
        ), forgot.stderr
        for proc in (shown, forgot):
            assert not any(word in proc.stderr for word in INTERNALS), proc.stderr
        # The stack, and with it the transport's own words, on request.
        debug = env.cli("--traceback", "show", sha, "-C", str(repo), check=False, timeout=120)
        assert "Traceback (most recent call last)" in debug.stderr
        assert debug.stderr.endswith(shown.stderr)


def test_a_server_error_on_the_xet_token_is_the_status_not_xets_text(env: Env) -> None:
    with uploaded_elsewhere(env) as (hub, repo, sha, url):
        hub.fail_next(50, 503, paths=["/api/buckets/alice/agent-traces/xet-read-token"])
        shown = env.cli("show", sha, "-C", str(repo), check=False, timeout=120)
    assert shown.returncode == 1
    assert lines(shown.stderr) == [
        f"Error: cannot fetch {url}: the Hub answered 503",
        "hint: the Hub had a problem; try again later (`tracekeeper doctor` checks the store)",
    ], shown.stderr


def test_a_refused_token_says_how_to_log_in_not_to_retry_a_job(env: Env) -> None:
    with uploaded_elsewhere(env) as (_hub, repo, sha, url):
        env.vars["HF_TOKEN"] = "hf_nobody"
        shown = env.cli("show", sha, "-C", str(repo), check=False, timeout=120)
    assert shown.returncode == 1
    assert lines(shown.stderr) == [
        "Error: cannot read the traces: the Hub refused to let this token read the bucket alice/agent-traces (401)",
        "hint: log in with an account that can read alice/agent-traces (`hf auth login`, or set HF_TOKEN),"
        " then run this again",
    ], shown.stderr
    assert "retry" not in shown.stderr and url not in shown.stderr  # no job to retry; one line, no URL


def test_describe_reads_the_status_and_hides_the_transports_words() -> None:
    """hub_errors.describe on the shapes the libraries really raise (texts as in
    tracekeeperd/stores/hf.py's classify and hf_xet's errors above)."""
    import tempfile

    import httpx2

    from tracekeeper.hub_errors import describe
    from tracekeeperd.errors import TransientError

    xet = ConnectionError(
        "Server error: Request error: HTTP status server error (503 Service Unavailable), domain: http://x"
    )
    wrapped = TransientError(f"transfer failed: {xet}")
    wrapped.__cause__ = xet
    assert describe(wrapped, access="read")[0] == "the Hub answered 503"
    refused = TransientError("cannot reach the Hub (ConnectError: [Errno 111] Connection refused)")
    refused.__cause__ = httpx2.ConnectError("[Errno 111] Connection refused")
    assert describe(refused, access="read")[0] == "the Hub cannot be reached"
    temp = str(Path(tempfile.gettempdir()) / "tracekeeper-abc123" / "trace.jsonl")
    full = OSError(28, "No space left on device", temp)
    assert describe(full, access="read") == ("a temporary file: No space left on device", None)
    mine = PermissionError(13, "Permission denied", "/srv/traces/app/s.jsonl")
    assert describe(mine, access="read") == ("/srv/traces/app/s.jsonl: Permission denied", None)
    middleware = RuntimeError("Request middleware error: error sending request for url (https://cas/...)")
    message, hint = describe(middleware, access="read")
    assert message == "the transfer failed (RuntimeError)" and "middleware" not in message
    assert hint and "--traceback" in hint


def test_the_error_table_words_hub_failures_as_hub_errors_does() -> None:
    """A Hub error that reaches the error table (any command but `show`/`forget`) gets the same
    status-specific next step as hub_errors.describe, its one owner: a refused token says to log
    in, not to check the network."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    from tracekeeper import errors_table

    request = httpx2.Request("GET", "https://huggingface.co/api/buckets/a/b")
    refused = HfHubHTTPError("401 Client Error", response=httpx2.Response(401, request=request))
    message, hint, code = errors_table.lookup(refused) or ("", None, 0)
    assert (message, code) == ("the Hub refused the token (401)", 1)
    assert hint is not None and "hf auth login" in hint and "network" not in hint
    unreachable = errors_table.lookup(ConnectionError("Request middleware error: error sending request"))
    assert unreachable is not None and unreachable[0] == "the Hub cannot be reached", unreachable
    assert "middleware" not in unreachable[0]
