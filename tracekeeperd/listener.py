"""The socket, and the guarantees around it: one daemon per user, nobody else can talk to it.

`aiohttp.web.UnixSite(path)` deletes whatever socket is at the path, so a second daemon would
silently steal the first one's socket. Instead: take an exclusive lock, probe the path, bind
ourselves with a 077 umask, and hand the listening socket to `SockSite`. On exit the socket
is removed only if it is still the one we bound (same inode).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import socket
import stat
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import AlreadyRunning, UnsafeRuntimeDir
from .paths import MAX_SOCKET_PATH

log = logging.getLogger(__name__)


def secure_dir(path: Path) -> None:
    """Create (0700) or check a directory that guards a socket: ours, private, not a symlink."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(parents=True, mode=0o700)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise UnsafeRuntimeDir(f"{path} is not a plain directory (symlink?); refusing to use it")
    if st.st_uid != os.geteuid():
        raise UnsafeRuntimeDir(f"{path} belongs to uid {st.st_uid}, not to you; refusing to use it")
    if st.st_mode & 0o077:
        raise UnsafeRuntimeDir(
            f"{path} is accessible to other users (mode {stat.S_IMODE(st.st_mode):o}); run: chmod 700 {path}"
        )


class InstanceLock:
    """flock on the state dir: held for the daemon's life, released by the kernel if it dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise AlreadyRunning(f"another tracekeeperd is already running (pid {pid}, lock {self.path})") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def lock_holder(path: Path) -> int | None:
    """The pid the running daemon wrote into its lock file, if that process is alive.

    For messages only: the lock itself is what decides (taking even a shared lock to test it
    could make a daemon starting at that instant believe another one runs).
    """
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return None
    if not text.isdigit():
        return None
    pid = int(text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, someone else's: still the answer
    return pid


def is_stopped(pid: int) -> bool:
    """Whether a process is stopped (SIGSTOP, Ctrl-Z): state T or t in /proc (Linux only)."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # "pid (comm) state ...": comm may hold spaces and parentheses, the state follows the last ")".
    return stat_line.rpartition(")")[2].split()[:1] in (["T"], ["t"])


@dataclass
class BoundSocket:
    sock: socket.socket
    path: Path
    inode: int | None  # None when systemd owns the socket: never unlink it

    def close(self) -> None:
        self.sock.close()
        if self.inode is None:
            return
        with contextlib.suppress(FileNotFoundError):
            if os.lstat(self.path).st_ino == self.inode:
                self.path.unlink()


def _answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        return False
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTSOCK):
            return False
        raise
    finally:
        probe.close()
    return True


def activated_socket() -> socket.socket | None:
    """The listening socket systemd passed us (socket activation), if any."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    count = int(os.environ.get("LISTEN_FDS", "0") or 0)
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    if count < 1:
        return None
    sock = socket.socket(fileno=3)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        raise UnsafeRuntimeDir("the activated socket is not a Unix stream socket")
    sock.set_inheritable(False)
    return sock


def bind(path: Path) -> BoundSocket:
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise UnsafeRuntimeDir(
            f"socket path {path} is longer than {MAX_SOCKET_PATH} bytes; set TRACEKEEPER_RUNTIME_DIR shorter"
        )
    activated = activated_socket()
    if activated is not None:
        # systemd/launchd made the socket: serve it where it really is, and never unlink it.
        actual = Path(activated.getsockname())
        if actual != path:
            log.warning("activated socket is %s, not %s: clients must be pointed at it", actual, path)
        secure_dir(actual.parent)
        return BoundSocket(activated, actual, None)
    secure_dir(path.parent)
    if _answers(path):
        raise AlreadyRunning(f"another tracekeeperd already answers on {path}")
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            path.unlink()  # stale: nobody answers
        else:
            raise UnsafeRuntimeDir(f"{path} exists and is not a socket; refusing to replace it")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o077)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(128)
    sock.setblocking(False)
    return BoundSocket(sock, path, os.lstat(path).st_ino)


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket."""
    if sys.platform.startswith("linux"):
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        return int(uid)
    if sys.platform == "darwin":
        # SOL_LOCAL=0, LOCAL_PEERCRED=1 -> struct xucred { u_int version; uid_t uid; ... }
        raw = sock.getsockopt(0, 1, 76)
        return int(struct.unpack_from("2I", raw)[1])
    return None
