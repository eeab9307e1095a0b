"""Who runs: a refused second daemon leaves the first one's state alone, and a daemon that holds
its socket but does not answer (SIGSTOP, a hang) is "not responding", not "not running".

Real daemons as separate processes; SIGSTOP is the real signal.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from contextlib import contextmanager

from .harness import Daemon, Env, daemon_once, running_daemon


def test_a_refused_second_daemon_leaves_the_spool_marker_of_the_first(env: Env) -> None:
    marker = env.runtime / "spool-watched"
    with running_daemon(env) as first:
        assert marker.read_text() == f"{first.proc.pid}\n"  # type: ignore[union-attr]
        refused = daemon_once(env)  # refused by the lock; exits 0 so no service manager restarts it
        assert refused.returncode == 0 and "already running" in refused.stderr
        assert marker.read_text() == f"{first.proc.pid}\n", "the hook would take its slow path"  # type: ignore[union-attr]
        other_state = daemon_once(env, {"XDG_STATE_HOME": str(env.root / "other-state")})
        assert other_state.returncode == 0 and "already" in other_state.stderr  # refused by the socket
        assert marker.read_text() == f"{first.proc.pid}\n"  # type: ignore[union-attr]
    assert not marker.exists(), "the first daemon still removes its own marker when it stops"


@contextmanager
def stopped(daemon: Daemon) -> Iterator[int]:
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGSTOP)
    try:
        yield daemon.proc.pid
    finally:
        daemon.proc.send_signal(signal.SIGCONT)


def test_a_stopped_daemon_is_reported_as_not_responding(env: Env) -> None:
    with running_daemon(env) as daemon:
        with stopped(daemon) as pid:
            data = json.loads(env.cli("status", "--json").stdout)
            assert (data["daemon"]["running"], data["daemon"]["responding"]) == (True, False)
            assert data["daemon"]["pid"] == pid
            assert data["daemon"]["problem"] == (
                f"tracekeeperd (pid {pid}) is not responding on {env.socket}: it is stopped; "
                f"`kill -CONT {pid}` resumes it"
            )
            text = env.cli("status").stdout
            assert "not responding" in text and "not running" not in text
            checks = {c["name"]: c for c in json.loads(env.cli("doctor", "--json", check=False).stdout)["checks"]}
            assert checks["daemon"]["status"] == "fail"
            assert checks["daemon"]["message"] == data["daemon"]["problem"]
            assert "not responding" in checks["store"]["message"]
        data = env.status()  # resumed: it answers again
        assert (data["daemon"]["running"], data["daemon"]["responding"]) == (True, True)


def test_commands_that_need_the_daemon_say_it_does_not_respond(env: Env) -> None:
    with running_daemon(env) as daemon, stopped(daemon) as pid:
        proc = env.cli("retry", check=False)
    assert proc.returncode == 3
    assert proc.stderr == (
        f"Error: tracekeeperd (pid {pid}) is not responding on {env.socket}: it is stopped; "
        f"`kill -CONT {pid}` resumes it\n"
    )
