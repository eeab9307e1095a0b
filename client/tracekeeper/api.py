"""Talk to tracekeeperd over its Unix socket (stdlib http.client, imported on the first request).

Every command imports this module through the CLI group; http.client pulls in email and ssl
(about a third of `tracekeeper --version`'s imports), which only commands that talk to the
daemon need, so the connection class is made on first use.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracekeeperd.paths import Paths
from tracekeeperd.protocol import API_PREFIX

from .errors import ClientError


class DaemonUnavailable(ClientError):
    """Nothing answers on the socket: the daemon is not running (or not for this user)."""


class DaemonNotResponding(DaemonUnavailable):
    """Something holds the socket and accepted the connection, but no answer came in time: a
    daemon that is stopped (SIGSTOP, Ctrl-Z) or hung, which "not running" would misdescribe."""

    def __init__(self, socket_path: Path, timeout: float) -> None:
        super().__init__(f"tracekeeperd is not responding on {socket_path} (no answer within {timeout:g} s)")
        self.timeout = timeout


class DaemonError(ClientError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


if TYPE_CHECKING:
    import http.client


@cache
def _connection_class() -> Callable[[Path, float], http.client.HTTPConnection]:
    import http.client
    import socket

    class _UnixConnection(http.client.HTTPConnection):
        def __init__(self, path: Path, timeout: float) -> None:
            super().__init__("tracekeeperd", timeout=timeout)
            self.socket_path = path

        def connect(self) -> None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(str(self.socket_path))
            except OSError:
                sock.close()
                raise
            self.sock = sock

    return _UnixConnection


class Client:
    def __init__(self, socket_path: Path, timeout: float = 10.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        conn = _connection_class()(self.socket_path, self.timeout)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if payload is not None else {}
            try:
                conn.request(method, API_PREFIX + path, body=payload, headers=headers)
                response = conn.getresponse()
                raw = response.read()
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                raise DaemonUnavailable(f"tracekeeperd is not running (no answer on {self.socket_path})") from exc
            except TimeoutError as exc:
                raise DaemonNotResponding(self.socket_path, self.timeout) from exc
            except OSError as exc:
                raise DaemonUnavailable(f"cannot talk to tracekeeperd on {self.socket_path}: {exc}") from exc
        finally:
            conn.close()
        try:
            data = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            raise DaemonError(response.status, f"unexpected answer from the daemon: {raw[:200]!r}") from None
        if response.status >= 400:
            raise DaemonError(response.status, str(data.get("error", f"HTTP {response.status}")))
        if not isinstance(data, dict):
            raise DaemonError(response.status, "unexpected answer from the daemon")
        return data

    def status(self, *, include_done: bool = False) -> dict[str, Any]:
        return self.request("GET", "/status" + ("?all=1" if include_done else ""))

    def flush(self, timeout: float = 0.0) -> dict[str, Any]:
        """Answered when the jobs pending now have settled, or after `timeout` seconds: this
        client's own timeout must be longer."""
        return self.request("POST", "/flush", {"timeout": timeout})

    def retry(self, ids: list[int] | None = None) -> dict[str, Any]:
        return self.request("POST", "/retry", {"all": True} if ids is None else {"jobs": ids})

    def drop(self, ids: list[int] | None) -> dict[str, Any]:
        """Forget failed jobs: those of `ids`, or (None) every one and every set-aside spool entry."""
        return self.request("POST", "/drop", {"all": True} if ids is None else {"jobs": ids})


def not_responding(paths: Paths, exc: DaemonNotResponding) -> tuple[int | None, str]:
    """(pid, one line) about a daemon that holds the socket but does not answer, with what to do."""
    from tracekeeperd.listener import is_stopped, lock_holder

    pid = lock_holder(paths.lock)
    if pid is None:
        return None, f"{exc}; if it stays so, stop whatever holds the socket and start tracekeeperd"
    head = f"tracekeeperd (pid {pid}) is not responding on {paths.socket}"
    if is_stopped(pid):
        return pid, f"{head}: it is stopped; `kill -CONT {pid}` resumes it"
    return pid, (
        f"{head}: no answer within {exc.timeout:g} s; if it stays so, restart it (`kill {pid}`, then `tracekeeperd`)"
    )


def offline_status(paths: Paths, include_done: bool = False) -> dict[str, Any]:
    """What can be known without the daemon: the queue file and the spool, read-only.

    The same shape as the daemon's `/v1/status` (one builder: tracekeeperd.status), with
    `daemon.running` false; a queue that cannot be read leaves its part empty and says why in
    `error`.
    """
    import sqlite3

    from tracekeeperd import status as status_view
    from tracekeeperd.queue import Queue

    daemon = status_view.stopped(paths.socket, paths.state_dir)
    if not paths.db.exists():
        return status_view.build(None, paths.spool, include_done=include_done, daemon=daemon)
    try:
        queue = Queue(paths.db, readonly=True)
    except sqlite3.Error as exc:
        data = status_view.build(None, paths.spool, include_done=include_done, daemon=daemon)
        data["error"] = f"cannot read the queue {paths.db}: {exc}"
        return data
    try:
        return status_view.build(queue, paths.spool, include_done=include_done, daemon=daemon)
    finally:
        queue.close()


def collect_status(paths: Paths, include_done: bool = False) -> dict[str, Any]:
    """`tracekeeper status`'s data: the daemon's answer, or what the disk says without it, plus
    the notes each known repository has not pushed. `error` says what could not be read."""
    try:
        data = Client(paths.socket, timeout=5).status(include_done=include_done)
        data["daemon"]["responding"] = True
    except DaemonNotResponding as exc:  # it holds the socket: running, but not answering
        data = offline_status(paths, include_done)
        pid, problem = not_responding(paths, exc)
        data["daemon"].update(running=True, responding=False, pid=pid, problem=problem)
    except DaemonUnavailable:
        data = offline_status(paths, include_done)
        data["daemon"]["responding"] = False
    except DaemonError as exc:  # still one JSON object (or the table) for what can be read
        data = offline_status(paths, include_done)
        data["daemon"].update(running=True, responding=True)
        data["error"] = f"the daemon answered {exc.status}: {exc}"
    data.setdefault("error", None)
    if "repos" not in data:  # a daemon's answer has them, kept current; without one, read them here
        from .sync import notes_per_repo

        data["repos"] = notes_per_repo(paths)
    if "repos_quiet" not in data:  # the same shape either way: only repositories with something to say
        from tracekeeperd.repostate import summarise

        data["repos"], data["repos_quiet"] = summarise(data["repos"])
    return data
