"""Talk to tracekeeperd over its Unix socket (stdlib http.client: cheap to import)."""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import Any

from tracekeeperd.protocol import API_PREFIX

from .errors import ClientError


class DaemonUnavailable(ClientError):
    """Nothing answers on the socket: the daemon is not running (or not for this user)."""


class DaemonError(ClientError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


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


class Client:
    def __init__(self, socket_path: Path, timeout: float = 10.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        conn = _UnixConnection(self.socket_path, self.timeout)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if payload is not None else {}
            try:
                conn.request(method, API_PREFIX + path, body=payload, headers=headers)
                response = conn.getresponse()
                raw = response.read()
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                raise DaemonUnavailable(f"tracekeeperd is not running (no answer on {self.socket_path})") from exc
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

    def flush(self) -> dict[str, Any]:
        return self.request("POST", "/flush", {})

    def retry(self) -> dict[str, Any]:
        return self.request("POST", "/retry", {})
