"""The daemon raises its own soft open-files limit: a service manager starts it low (systemd
1,024, launchd 256) and the kept git processes take 15 descriptors per busy repository
(tracekeeperd/plumbing.py), so the limit it starts with decides how many repositories keep theirs.

The real daemon as its own process, started with a low inherited soft limit; its limits are read
back from /proc (Linux), which is where the kernel keeps them.
"""

from __future__ import annotations

import re
import resource
import subprocess
import sys
from pathlib import Path

from tracekeeperd import plumbing

from .harness import Daemon, Env, wait_for


def _soft_nofile(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError(f"no open-files line in /proc/{pid}/limits")


def _limited(soft: int, hard: int | None = None) -> list[str]:
    """util-linux prlimit: sets the limits, then execs the command (same pid)."""
    return ["prlimit", f"--nofile={soft}:{'' if hard is None else hard}", "--"]


def test_the_daemon_raises_a_low_inherited_soft_limit_and_keeps_more_repositories(env: Env) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    expected = plumbing.FD_WANTED if hard == resource.RLIM_INFINITY else min(plumbing.FD_WANTED, hard)
    assert expected > 256, "this machine's hard limit leaves nothing to raise"
    daemon = Daemon(env, prefix=_limited(256)).start()
    try:
        assert daemon.proc is not None
        assert _soft_nofile(daemon.proc.pid) == expected
        # The pool is sized from the raised limit, not from the 256 it started with (4 repositories).
        line = wait_for(
            lambda: re.search(r"open files: soft limit (\d+) \(was (\d+)\): up to (\d+) repositories", daemon.output()),
            what="the open-files line in the daemon's log",
        )
        assert (int(line[1]), int(line[2])) == (expected, 256)
        assert int(line[3]) == (expected - plumbing.FD_RESERVE) // plumbing.FDS_PER_REPO
    finally:
        daemon.stop()


def _in_child(soft: int, hard: int, wanted: int) -> tuple[int, int, int]:
    """raise_fd_limit in a fresh interpreter with these limits: (before, after, room)."""
    code = f"from tracekeeperd import plumbing; b, a = plumbing.raise_fd_limit({wanted}); print(b, a, plumbing.room())"
    out = subprocess.run(
        [*_limited(soft, hard), sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[0]), int(out[1]), int(out[2])


def test_the_raise_stops_at_the_hard_limit_and_never_lowers() -> None:
    assert _in_child(256, 700, 8192) == (256, 700, (700 - 256) // 15)  # capped by the hard limit
    assert _in_child(2000, 4000, 1024) == (2000, 2000, (2000 - 256) // 15)  # already above: left alone
    assert _in_child(700, 700, 8192) == (700, 700, (700 - 256) // 15)  # nothing to raise
