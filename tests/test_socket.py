"""The daemon's socket: what it accepts, what it refuses, and that there is only ever one daemon."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

from .harness import Daemon, Env, daemon_once, running_daemon


def _raw(env: Env, request: bytes) -> tuple[int, dict[str, object]]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(env.socket))
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body.strip() else {}


def _post(path: str, body: bytes, content_length: int | None = None) -> bytes:
    length = len(body) if content_length is None else content_length
    return (
        f"POST {path} HTTP/1.1\r\nHost: tracekeeperd\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
    ).encode() + body


def test_socket_and_directory_are_private(env: Env) -> None:
    with running_daemon(env):
        assert oct(os.stat(env.runtime).st_mode & 0o777) == "0o700"
        assert oct(os.stat(env.socket).st_mode & 0o777) == "0o600"


def test_bad_requests_get_clear_json_errors_and_the_daemon_keeps_serving(env: Env) -> None:
    with running_daemon(env):
        status, body = _raw(env, _post("/v1/commit", b"{not json"))
        assert (status, body["error"]) == (
            400,
            "body is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        )
        status, body = _raw(env, _post("/v1/commit", b'["a list"]'))
        assert (status, body["error"]) == (400, "body must be a JSON object")
        status, body = _raw(env, _post("/v1/commit", b'{"sha": "zz", "git_dir": "/tmp"}'))
        assert (status, body["error"]) == (400, "sha must be a full hexadecimal commit id")
        status, body = _raw(env, _post("/v1/commit", b'{"spool": "../../etc/passwd"}'))
        assert status == 400 and "spool" in str(body["error"])
        status, body = _raw(env, _post("/v1/commit", b"x" * (65 * 1024)))
        assert status == 413 and "larger than" in str(body["error"])
        status, body = _raw(env, b"DELETE /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (status, body["error"]) == (405, "Method Not Allowed")
        status, body = _raw(env, b"GET /v2/nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (status, body["error"]) == (404, "Not Found")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:  # plain garbage, then hang up
            sock.connect(str(env.socket))
            sock.sendall(b"\x00\xffgarbage\r\n\r\n")
        assert env.status()["daemon"]["running"] is True


def test_forget_requests_are_checked_and_undo_of_nothing_is_a_clear_422(env: Env) -> None:
    with running_daemon(env):
        for body, error in [
            (b"{}", "sessions must be a list of 1 to 1000 sessions"),
            (b'{"sessions": []}', "sessions must be a list of 1 to 1000 sessions"),
            (b'{"sessions": [{"agent": "codex"}]}', "every session needs a non-empty agent and session_id"),
            (b'{"sessions": ["s1"]}', "every session needs a non-empty agent and session_id"),
            (b'{"undo": 7}', "undo must be a session id"),
        ]:
            assert _raw(env, _post("/v1/forget", body)) == (400, {"error": error})
        status, answer = _raw(env, _post("/v1/forget", b'{"undo": "019c8a70-dda7"}'))
        assert (status, answer) == (422, {"error": "'019c8a70-dda7' is not a forgotten session on this machine"})
        status, answer = _raw(env, _post("/v1/forget", b'{"sessions": [{"agent": "codex", "session_id": "s1"}]}'))
        assert status == 200 and [(f["agent"], f["session_id"], f["cancelled"]) for f in answer["forgotten"]] == [
            ("codex", "s1", 0)
        ]
        status, answer = _raw(env, _post("/v1/forget", b'{"undo": "s1"}'))
        assert (status, answer) == (200, {"undone": [{"agent": "codex", "session_id": "s1"}]})


def test_commit_for_a_path_that_is_not_a_repository_is_reported_not_crashing(env: Env) -> None:
    (env.root / "norepo").mkdir()
    (env.root / "norepo" / "hf-traces-active.json").write_text('{"transcript_path": "/nope"}')
    body = json.dumps({"sha": "a" * 40, "git_dir": str(env.root / "norepo")}).encode()
    with running_daemon(env):
        status, answer = _raw(env, _post("/v1/commit", body))
        assert status == 422
        assert "not a usable git repository" in str(answer["error"])
        assert env.status()["daemon"]["running"] is True


def test_a_second_daemon_is_refused_and_does_not_steal_the_socket(env: Env) -> None:
    with running_daemon(env) as first:
        inode = os.stat(env.socket).st_ino
        second = daemon_once(env)
        assert second.returncode == 0  # not an error, and no reason for a service manager to restart it
        assert second.stderr.startswith("tracekeeperd: not starting: another tracekeeperd is already running (pid ")
        assert "Traceback" not in second.stderr
        assert os.stat(env.socket).st_ino == inode
        assert env.status()["daemon"]["pid"] == first.proc.pid  # type: ignore[union-attr]


def test_a_second_daemon_with_another_state_dir_still_cannot_take_the_socket(env: Env) -> None:
    with running_daemon(env):
        second = daemon_once(env, {"XDG_STATE_HOME": str(env.root / "other-state")})
        assert second.returncode == 0
        assert "already answers on" in second.stderr
        assert env.status()["daemon"]["running"] is True


def test_stale_socket_from_a_killed_daemon_is_replaced(env: Env) -> None:
    daemon = Daemon(env).start()
    daemon.kill()
    assert env.socket.exists()  # SIGKILL leaves it behind
    with running_daemon(env):
        assert env.status()["daemon"]["running"] is True


def test_runtime_directory_open_to_others_is_refused(env: Env) -> None:
    env.runtime.mkdir(mode=0o755)
    os.chmod(env.runtime, 0o755)
    proc = daemon_once(env)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"tracekeeperd: error: {env.runtime} is accessible to other users (mode 755); run: chmod 700 {env.runtime}"
    )


def test_runtime_directory_symlink_is_refused(env: Env) -> None:
    real = env.root / "elsewhere"
    real.mkdir(mode=0o700)
    env.runtime.symlink_to(real)
    proc = daemon_once(env)
    assert proc.returncode == 1
    assert "is not a plain directory (symlink?)" in proc.stderr


def test_peers_of_another_user_are_refused(env: Env) -> None:
    """Even if someone loosened the directory and socket modes, the peer uid check holds."""
    if os.geteuid() != 0:
        # Without root we cannot become another user; the check still reads our own uid right.
        from tracekeeperd.listener import peer_uid

        left, right = socket.socketpair(socket.AF_UNIX)
        with left, right:
            assert peer_uid(left) == os.geteuid()
        return
    with running_daemon(env):
        loosened = [env.root, env.runtime.parent, env.runtime]
        for directory in loosened:
            os.chmod(directory, 0o711)
        os.chmod(env.socket, 0o666)
        probe = (
            "import os, socket, sys\n"
            "os.setgid(65534); os.setuid(65534)\n"
            "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
            "s.sendall(b'GET /v1/status HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n')\n"
            "print(s.recv(65536).split(b' ')[1].decode())\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", probe, str(env.socket)], capture_output=True, text=True, timeout=30, check=False
        )
        for directory in loosened:
            os.chmod(directory, 0o700)
        assert out.stdout.strip() == "403", out.stderr
