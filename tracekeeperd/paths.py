"""Where tracekeeper keeps its socket, queue and spool.

Stdlib only: the CLI and the hook installer import this, and the hook path must stay light.
The XDG variables are honoured directly (not through platformdirs) because the socket path
is a contract shared with the shell hook and the systemd socket unit (`%t/tracekeeper/sock`).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

#: macOS limits sun_path to 104 bytes including the NUL; Linux allows 108.
MAX_SOCKET_PATH = 103 if sys.platform == "darwin" else 107


@dataclass(frozen=True)
class Paths:
    """Every per-user location, resolved once from the environment."""

    runtime_dir: Path
    state_dir: Path
    config_dir: Path
    data_dir: Path

    @property
    def socket(self) -> Path:
        return self.runtime_dir / "sock"

    @property
    def db(self) -> Path:
        return self.state_dir / "queue.sqlite3"

    @property
    def search_db(self) -> Path:
        """The full-text index of linked sessions (searchindex.py): rebuildable, so apart from the queue."""
        return self.state_dir / "search.sqlite3"

    @property
    def spool(self) -> Path:
        return self.state_dir / "spool"

    @property
    def snapshots(self) -> Path:
        return self.state_dir / "snapshots"

    @property
    def lock(self) -> Path:
        return self.state_dir / "daemon.lock"

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def default_local_store(self) -> Path:
        return self.data_dir / "traces"


def _xdg(env: Mapping[str, str], name: str, home: Path, fallback: str) -> Path:
    value = env.get(name, "")
    # The XDG spec says relative values are invalid and must be ignored.
    if value and os.path.isabs(value):
        return Path(value)
    return home / fallback


def _runtime_dir(env: Mapping[str, str]) -> Path:
    override = env.get("TRACEKEEPER_RUNTIME_DIR", "")
    if override:
        return Path(override)
    xdg = env.get("XDG_RUNTIME_DIR", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "tracekeeper"
    # No XDG_RUNTIME_DIR (macOS, containers, cron): a short per-user directory under the
    # temp dir, so the socket path stays well inside macOS's 104-byte limit.
    tmp = env.get("TMPDIR", "")
    if not os.path.isabs(tmp):  # a relative socket path would depend on the caller's cwd
        tmp = tempfile.gettempdir()
    return Path(tmp) / f"tracekeeper-{os.getuid()}"


def resolve(env: Mapping[str, str] | None = None) -> Paths:
    """Resolve the per-user paths; `TRACEKEEPER_*_DIR` variables override XDG for tests."""
    env = os.environ if env is None else env
    home = Path(env.get("HOME") or Path.home())
    state = env.get("TRACEKEEPER_STATE_DIR") or ""
    return Paths(
        runtime_dir=_runtime_dir(env),
        state_dir=Path(state) if state else _xdg(env, "XDG_STATE_HOME", home, ".local/state") / "tracekeeper",
        config_dir=_xdg(env, "XDG_CONFIG_HOME", home, ".config") / "tracekeeper",
        data_dir=_xdg(env, "XDG_DATA_HOME", home, ".local/share") / "tracekeeper",
    )


def open_private(path: Path) -> BinaryIO:
    """`path` opened for writing from empty, readable by the user alone whatever the umask (and
    whatever mode a file left there had): what the daemon writes beside its snapshots is
    transcript-derived, like the snapshots themselves (0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "wb")


def write_private(path: Path, data: bytes) -> None:
    """`data` into `path` atomically (a temp file, then rename: a crash leaves the old file or the
    new one) and private (`open_private`)."""
    tmp = path.with_name(path.name + ".tmp")
    with open_private(tmp) as fh:
        fh.write(data)
    os.replace(tmp, path)
