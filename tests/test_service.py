"""`tracekeeper service` and the daemon as a service: unit files, LaunchAgent, activation, readiness.

Mocked: `systemctl` and `launchctl` only, because no systemd user manager (and no launchd) runs
in this container. They are replaced by the tiny sh stand-ins below (pointed at with
TRACEKEEPER_SYSTEMCTL / TRACEKEEPER_LAUNCHCTL), which append their argv to a log and keep just
enough state (enabled / loaded) to answer `is-enabled`, `is-active` and `print`.

Real: every file write under a temporary HOME / XDG_CONFIG_HOME, `systemd-analyze --user verify`
on the rendered units, plistlib on the rendered plist, the daemon itself under
`systemd-socket-activate` (LISTEN_FDS/LISTEN_PID), its sd_notify datagrams on a socket the test
binds, and the daemon plus a real hf_xet upload under the seccomp filters the unit's hardening
asks for.
"""

from __future__ import annotations

import ctypes
import json
import os
import plistlib
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracekeeper import service as svc
from tracekeeper.api import Client

from .harness import Env, running_daemon, session_repo, wait_for
from .hubstub import HubStub, running_hub

REPO = Path(__file__).resolve().parent.parent
UNITS_SRC = REPO / "client" / "tracekeeper" / "units"
UID = os.getuid()
TARGET = f"gui/{UID}/{svc.LABEL}"

SYSTEMCTL = """#!/bin/sh
# Stand-in for `systemctl --user`: logs argv; enable/disable --now toggle one marker per unit.
dir=$(dirname "$0")
echo "systemctl $*" >> "$dir/calls.log"
if [ -n "$STANDIN_NO_MANAGER" ]; then echo "Failed to connect to bus: No medium found" >&2; exit 1; fi
[ "$1" = --user ] || { echo "stand-in: expected --user" >&2; exit 2; }
verb=$2; shift 2
[ "$1" = --now ] && shift
rc=0
for unit in "$@"; do
  case "$verb" in
    enable) touch "$dir/on.$unit" ;;
    disable) rm -f "$dir/on.$unit" ;;
    is-active) if [ -e "$dir/on.$unit" ]; then echo active; else echo inactive; rc=3; fi ;;
    is-enabled) if [ -e "$dir/on.$unit" ]; then echo enabled; else echo disabled; rc=1; fi ;;
  esac
done
exit $rc
"""

LAUNCHCTL = """#!/bin/sh
# Stand-in for launchctl: logs argv; bootstrap loads (keeps a copy), bootout unloads, print reports.
dir=$(dirname "$0")
echo "launchctl $*" >> "$dir/calls.log"
case "$1" in
  bootstrap) if [ -n "$STANDIN_NO_GUI" ]; then
               echo "Bootstrap failed: 125: Domain does not support specified action" >&2; exit 125
             fi
             cp "$3" "$dir/loaded.plist" ;;
  bootout) [ -e "$dir/loaded.plist" ] || { echo "Boot-out failed: 3: No such process" >&2; exit 3; }
           rm -f "$dir/loaded.plist" ;;
  print) [ -e "$dir/loaded.plist" ] || { echo "Could not find service \\"$2\\" in domain" >&2; exit 113; }
         printf '%s = {\\n\\tstate = running\\n\\tpid = 4242\\n\\tlast exit code = (never exited)\\n}\\n' "$2" ;;
esac
"""

# The real CLI (cli.main: the error table, lazy registration), with `service` in front.
ENTRY = """import sys
from tracekeeper import cli
sys.exit(cli.main(["service", *sys.argv[1:]]))
"""


class Standins:
    def __init__(self, root: Path) -> None:
        self.dir = root / "standins"
        self.dir.mkdir()
        for name, text in (("systemctl", SYSTEMCTL), ("launchctl", LAUNCHCTL)):
            path = self.dir / name
            path.write_text(text)
            path.chmod(0o755)
        self.log = self.dir / "calls.log"

    def calls(self) -> list[str]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        self.log.unlink(missing_ok=True)
        return lines

    def set_enabled(self, unit: str, on: bool) -> None:
        marker = self.dir / f"on.{unit}"
        if on:
            marker.touch()
        else:
            marker.unlink(missing_ok=True)


@pytest.fixture
def standins(env: Env) -> Standins:
    stand = Standins(env.root)
    env.vars["TRACEKEEPER_SYSTEMCTL"] = str(stand.dir / "systemctl")
    env.vars["TRACEKEEPER_LAUNCHCTL"] = str(stand.dir / "launchctl")
    env.vars["TRACEKEEPER_SERVICE_PLATFORM"] = "systemd"
    return stand


def run(env: Env, *args: str, umask: int = 0o022, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", ENTRY, *args],
        env={**env.vars, "COLUMNS": "500", **extra},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=env.root,
        umask=umask,
    )


def ok(env: Env, *args: str, umask: int = 0o022, **extra: str) -> str:
    proc = run(env, *args, umask=umask, **extra)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """A known failure: non-zero, exactly one line on stderr, `Error: ...`, never a traceback."""
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    return lines[0]


def unit_dir(env: Env) -> Path:
    return Path(env.vars["XDG_CONFIG_HOME"]) / "systemd" / "user"


INSTALL_CALLS = [
    "systemctl --user show-environment",
    "systemctl --user is-active tracekeeperd.socket tracekeeperd.service",
    "systemctl --user daemon-reload",
    "systemctl --user enable --now tracekeeperd.socket tracekeeperd.service",
]


# --- templates ---------------------------------------------------------------------------------


def test_reference_copies_in_the_repository_are_the_packaged_templates() -> None:
    for reference in (REPO / "systemd" / "tracekeeperd.service", REPO / "systemd" / "tracekeeperd.socket"):
        assert reference.read_bytes() == (UNITS_SRC / reference.name).read_bytes(), reference
    plist = REPO / "launchd" / svc.PLIST
    assert plist.read_bytes() == (UNITS_SRC / svc.PLIST).read_bytes()
    assert svc.template(svc.PLIST) == plist.read_text()  # what importlib.resources finds


def test_units_say_what_the_design_requires() -> None:
    sock = svc.template(svc.SOCKET_UNIT)
    unit = svc.template(svc.SERVICE_UNIT)
    for text in (sock, unit):
        assert "maintained by tracekeeper" in text.splitlines()[0]
        assert "systemctl --user edit tracekeeperd" in text
    for line in (
        "ListenStream=%t/tracekeeper/sock",
        "SocketMode=0600",
        "DirectoryMode=0700",
        "WantedBy=sockets.target",
    ):
        assert line in sock.splitlines()
    for line in (
        "Type=notify",
        "ExecStart=@PYTHON@ -P -m tracekeeperd",
        "Requires=tracekeeperd.socket",
        "After=tracekeeperd.socket",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "MemoryDenyWriteExecute=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "SystemCallArchitectures=native",
        "WantedBy=default.target",
    ):
        assert line in unit.splitlines()
    assert not any(line.startswith(("ProtectHome=", "ProtectSystem=")) for line in unit.splitlines())


# --- systemd: install, idempotence, user edits, uninstall --------------------------------------


def test_install_writes_both_units_with_this_interpreter_then_reloads_and_enables(env: Env, standins: Standins) -> None:
    out = ok(env, "install")
    units = unit_dir(env)
    assert out.splitlines() == [
        f"installed {units / 'tracekeeperd.socket'}",
        f"installed {units / 'tracekeeperd.service'}",
        "enabled and started tracekeeperd.socket and tracekeeperd.service (logs: journalctl --user -u tracekeeperd)",
    ]
    assert standins.calls() == INSTALL_CALLS
    service_text = (units / "tracekeeperd.service").read_text()
    assert f"\nExecStart={sys.executable} -P -m tracekeeperd\n" in service_text
    assert os.path.isabs(sys.executable)
    assert "@PYTHON@" not in service_text and "@SHA256@" not in service_text
    for name in svc.UNITS:
        assert stat.S_IMODE((units / name).stat().st_mode) == 0o644
    data = json.loads(ok(env, "status", "--json"))
    assert [f["state"] for f in data["files"]] == ["current", "current"]
    assert data["manager"]["running"] is True and data["interpreter"] == sys.executable


def test_installing_twice_changes_nothing_and_reloads_nothing(env: Env, standins: Standins) -> None:
    ok(env, "install")
    standins.calls()
    before = {name: (unit_dir(env) / name).stat() for name in svc.UNITS}
    out = ok(env, "install")
    assert "nothing to do" in out
    assert [line.split()[0] for line in out.splitlines()[:2]] == ["unchanged", "unchanged"]
    calls = standins.calls()
    assert calls == [
        "systemctl --user show-environment",
        "systemctl --user is-active tracekeeperd.socket tracekeeperd.service",
        "systemctl --user is-enabled tracekeeperd.socket tracekeeperd.service",
        "systemctl --user is-active tracekeeperd.socket tracekeeperd.service",
    ]
    for name, st in before.items():
        after = (unit_dir(env) / name).stat()
        assert (after.st_ino, after.st_mtime_ns) == (st.st_ino, st.st_mtime_ns)
    # Disabled behind our back: install enables again, but the files are current: no reload.
    standins.set_enabled("tracekeeperd.service", False)
    ok(env, "install")
    assert standins.calls()[-2:] == [
        "systemctl --user is-active tracekeeperd.socket tracekeeperd.service",
        "systemctl --user enable --now tracekeeperd.socket tracekeeperd.service",
    ]


def test_a_user_drop_in_survives_install_reinstall_and_uninstall(env: Env, standins: Standins) -> None:
    drop_in = unit_dir(env) / "tracekeeperd.service.d" / "override.conf"
    drop_in.parent.mkdir(parents=True)
    drop_in.write_text("[Service]\nEnvironment=HF_TRACE_BUCKET=alice/traces\n")
    ok(env, "install")
    ok(env, "install", "--force")
    assert str(drop_in) in ok(env, "status")
    out = ok(env, "uninstall")
    assert f"kept {drop_in} (yours)" in out.splitlines()
    assert drop_in.read_text() == "[Service]\nEnvironment=HF_TRACE_BUCKET=alice/traces\n"


def test_a_hand_edited_unit_is_refused_without_force(env: Env, standins: Standins) -> None:
    ok(env, "install")
    unit = unit_dir(env) / "tracekeeperd.service"
    edited = unit.read_text().replace("RestartSec=5s", "RestartSec=30s")
    unit.write_text(edited)
    standins.calls()
    error = one_line_error(run(env, "install"))
    assert f"refusing to overwrite {unit} (edited by hand)" in error
    assert "systemctl --user edit tracekeeperd" in error and "--force" in error
    assert unit.read_text() == edited
    assert not any("daemon-reload" in call or "enable" in call for call in standins.calls())
    assert [f["state"] for f in json.loads(ok(env, "status", "--json"))["files"]] == ["current", "edited"]

    out = ok(env, "install", "--force")
    assert f"overwrote {unit} (it was edited)" in out
    assert "RestartSec=5s" in unit.read_text()
    assert standins.calls()[-3:] == [
        "systemctl --user daemon-reload",
        "systemctl --user try-restart tracekeeperd.service",
        "systemctl --user enable --now tracekeeperd.socket tracekeeperd.service",
    ]


def test_a_unit_we_did_not_write_is_refused_and_kept_on_uninstall(env: Env, standins: Standins) -> None:
    unit = unit_dir(env) / "tracekeeperd.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/usr/bin/true\n")
    error = one_line_error(run(env, "install"))
    assert f"{unit} (not written by tracekeeper)" in error
    assert not (unit_dir(env) / "tracekeeperd.socket").exists()  # nothing written on refusal
    assert ok(env, "uninstall").splitlines() == [
        f"kept {unit} (not written by tracekeeper)",
        f"no tracekeeper service files in {unit_dir(env)}; nothing to remove",
    ]
    assert unit.read_text() == "[Service]\nExecStart=/usr/bin/true\n"


def test_units_from_another_version_are_updated_and_the_running_daemon_restarted(env: Env, standins: Standins) -> None:
    ok(env, "install")
    unit = unit_dir(env) / "tracekeeperd.service"
    older = svc.stamp(
        svc.template(svc.SERVICE_UNIT).replace("@PYTHON@", "/usr/bin/python3").replace("RestartSec=5s", "RestartSec=9s")
    )
    unit.write_text(older)
    standins.calls()
    out = ok(env, "install")
    assert f"updated {unit}" in out
    assert f"ExecStart={sys.executable} -P" in unit.read_text()
    assert standins.calls()[-3:] == [
        "systemctl --user daemon-reload",
        "systemctl --user try-restart tracekeeperd.service",
        "systemctl --user enable --now tracekeeperd.socket tracekeeperd.service",
    ]


def test_uninstall_disables_and_removes_exactly_what_install_wrote(env: Env, standins: Standins) -> None:
    ok(env, "install")
    neighbour = unit_dir(env) / "other.service"
    neighbour.write_text("[Service]\nExecStart=/usr/bin/true\n")
    standins.calls()
    out = ok(env, "uninstall")
    assert standins.calls() == [
        "systemctl --user disable --now tracekeeperd.service tracekeeperd.socket",
        "systemctl --user daemon-reload",
    ]
    assert "stopped and disabled tracekeeperd.service and tracekeeperd.socket" in out
    assert sorted(p.name for p in unit_dir(env).iterdir()) == ["other.service"]
    assert "nothing to remove" in ok(env, "uninstall")
    assert standins.calls() == []


def test_no_user_manager_is_one_clear_line_and_writes_nothing(env: Env, standins: Standins) -> None:
    error = one_line_error(run(env, "install", STANDIN_NO_MANAGER="1"))
    assert "no systemd user manager" in error and "run tracekeeperd by hand" in error
    assert not unit_dir(env).exists()
    real = shutil.which("systemctl")
    if real:  # the real one, with no bus in our temporary XDG_RUNTIME_DIR: the same answer
        error = one_line_error(run(env, "install", TRACEKEEPER_SYSTEMCTL=real))
        assert "no systemd user manager" in error
        assert not unit_dir(env).exists()
    status = ok(env, "status", STANDIN_NO_MANAGER="1")
    assert "state unknown" in status and "not installed" in status


def test_missing_systemctl_is_one_clear_line(env: Env, standins: Standins) -> None:
    empty = env.root / "empty-bin"
    empty.mkdir()
    del env.vars["TRACEKEEPER_SYSTEMCTL"]
    error = one_line_error(run(env, "install", PATH=str(empty)))
    assert "systemctl not found" in error and "tracekeeperd by hand" in error
    error = one_line_error(run(env, "install", TRACEKEEPER_SYSTEMCTL=str(env.root / "nope")))
    assert "is not an executable file" in error
    error = one_line_error(run(env, "install", TRACEKEEPER_SERVICE_PLATFORM="upstart"))
    assert "must be systemd or launchd" in error


def test_a_daemon_started_by_hand_must_be_stopped_first(env: Env, standins: Standins) -> None:
    with running_daemon(env) as daemon:
        assert daemon.proc is not None
        error = one_line_error(run(env, "install"))
        assert f"tracekeeperd (pid {daemon.proc.pid}) is already running outside the service manager" in error
    assert not unit_dir(env).exists()


# --- systemd-analyze verify ----------------------------------------------------------------------


def _verify(env: Env, *units: Path) -> subprocess.CompletedProcess[str]:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    return subprocess.run(
        [analyze, "--user", "verify", *map(str, units)],
        env={**env.vars, "SYSTEMD_LOG_COLOR": "0"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_systemd_analyze_verify_prints_nothing_for_the_installed_units(env: Env, standins: Standins) -> None:
    ok(env, "install")
    units = [unit_dir(env) / name for name in svc.UNITS]
    proc = _verify(env, *units)
    # Warnings (unknown keys, bad values) exit 0: any output at all is a failure.
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    # ... and the check can fail: a typo is reported, though the exit status stays 0.
    broken = env.root / "broken" / "tracekeeperd.service"
    broken.parent.mkdir()
    broken.write_text(units[1].read_text().replace("Type=notify", "Type=notifyy"))
    shutil.copy(units[0], broken.parent / "tracekeeperd.socket")
    proc = _verify(env, broken)
    assert "Failed to parse service type" in proc.stderr


def test_an_interpreter_path_with_blanks_and_percent_signs_verifies(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    odd = env.root / "my tools%1" / "python"
    odd.parent.mkdir()
    odd.symlink_to(sys.executable)
    monkeypatch.setattr(sys, "executable", str(odd))
    monkeypatch.setenv("XDG_CONFIG_HOME", env.vars["XDG_CONFIG_HOME"])
    manager = svc.Systemd()
    for planned in manager.planned():
        svc._write(planned)
    assert (
        f'ExecStart="{env.root}/my tools%%1/python" -P -m tracekeeperd'
        in (manager.location / "tracekeeperd.service").read_text()
    )
    proc = _verify(env, *(manager.location / name for name in svc.UNITS))
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    monkeypatch.setattr(sys, "executable", '/opt/"quoted"/python')
    with pytest.raises(svc.ServiceError, match="quotes"):
        manager.planned()


# --- launchd -------------------------------------------------------------------------------------


def test_launchd_install_writes_a_plist_that_round_trips_then_bootstraps(env: Env, standins: Standins) -> None:
    env.vars["TRACEKEEPER_SERVICE_PLATFORM"] = "launchd"
    out = ok(env, "install", umask=0o077)  # a private umask must not make the plist unreadable
    plist = env.home / "Library" / "LaunchAgents" / svc.PLIST
    logs = env.home / "Library" / "Logs" / "tracekeeper"
    assert out.splitlines() == [
        f"installed {plist}",
        f"loaded {svc.LABEL} into gui/{UID} (logs: {logs}/tracekeeperd.log)",
    ]
    assert standins.calls() == [
        f"launchctl print {TARGET}",
        f"launchctl bootout {TARGET}",
        f"launchctl bootstrap gui/{UID} {plist}",
    ]
    assert stat.S_IMODE(plist.stat().st_mode) == 0o644
    assert logs.is_dir()
    data = plistlib.loads(plist.read_bytes())
    assert plistlib.loads(plistlib.dumps(data)) == data
    env_vars = data.pop("EnvironmentVariables")
    assert data == {
        "Label": "com.huggingface.tracekeeperd",
        "ProgramArguments": [sys.executable, "-P", "-m", "tracekeeperd"],
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ProcessType": "Background",
        "StandardOutPath": f"{logs}/tracekeeperd.log",
        "StandardErrorPath": f"{logs}/tracekeeperd.log",
    }
    assert env_vars["PATH"].split(":")[0] == os.path.dirname(sys.executable)
    assert env_vars["TRACEKEEPER_RUNTIME_DIR"] == str(env.runtime)  # the socket the hooks use

    assert "nothing to do" in ok(env, "install")
    assert standins.calls() == [f"launchctl print {TARGET}", f"launchctl print {TARGET}"]
    status = ok(env, "status")
    assert f"launchd agent {svc.LABEL}: running (pid 4242)" in status and "ours, current" in status
    standins.calls()

    out = ok(env, "uninstall")
    assert standins.calls() == [f"launchctl bootout {TARGET}"]
    assert out.splitlines() == [f"unloaded {svc.LABEL}", f"removed {plist}"]
    assert not plist.exists()
    assert logs.is_dir()  # logs are kept


def test_launchd_hand_edits_are_kept_and_bootstrap_failures_are_explained(env: Env, standins: Standins) -> None:
    env.vars["TRACEKEEPER_SERVICE_PLATFORM"] = "launchd"
    error = one_line_error(run(env, "install", STANDIN_NO_GUI="1"))
    assert "launchctl bootstrap" in error and "Domain does not support" in error and "by hand" in error
    plist = env.home / "Library" / "LaunchAgents" / svc.PLIST
    plist.write_text(plist.read_text().replace("<string>Background</string>", "<string>Interactive</string>"))
    error = one_line_error(run(env, "install"))
    assert "edited by hand" in error
    assert "Interactive" in plist.read_text()
    ok(env, "install", "--force")
    assert plistlib.loads(plist.read_bytes())["ProcessType"] == "Background"


def test_a_daemon_that_finds_another_running_is_not_restarted_by_launchd_or_systemd(
    env: Env, standins: Standins
) -> None:
    """launchd has no RestartPreventExitStatus: with KeepAlive {SuccessfulExit: false} it relaunches
    a job after any non-zero exit (launchd.plist(5), throttled to every 10 s), so a daemon that finds
    another one running must exit 0. systemd sees that clean exit before READY=1 as a 'protocol'
    failure of a Type=notify unit, which Restart=on-failure restarts unless RestartPreventExitStatus
    lists the exit status. launchctl cannot run here: the plist is read with plistlib and its
    ProgramArguments are run the way launchd would, with its EnvironmentVariables."""
    env.vars["TRACEKEEPER_SERVICE_PLATFORM"] = "launchd"
    ok(env, "install")
    job = plistlib.loads((env.home / "Library" / "LaunchAgents" / svc.PLIST).read_bytes())
    assert job["KeepAlive"] == {"SuccessfulExit": False}  # no Crashed/other keys that would relaunch it
    unit = svc.template(svc.SERVICE_UNIT).splitlines()
    prevent = [line.partition("=")[2].split() for line in unit if line.startswith("RestartPreventExitStatus=")]
    with running_daemon(env) as first:
        assert first.proc is not None
        second = subprocess.run(
            job["ProgramArguments"],
            env={**env.vars, **job["EnvironmentVariables"]},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert second.returncode == 0, second.stderr  # launchd: a successful exit is not relaunched
        assert [str(second.returncode)] in prevent  # systemd: nor is this one
        assert f"another tracekeeperd is already running (pid {first.proc.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        assert env.status()["daemon"]["pid"] == first.proc.pid


# --- the daemon under systemd's protocols ------------------------------------------------------


def test_socket_activation_starts_the_daemon_which_never_unlinks_the_socket(env: Env) -> None:
    activate = shutil.which("systemd-socket-activate")
    if activate is None:
        pytest.skip("systemd-socket-activate is not installed")
    env.runtime.mkdir(mode=0o700)  # what DirectoryMode=0700 does
    log = env.root / "activated.log"
    # systemd-socket-activate passes on only TERM, PATH, USER and HOME (and LISTEN_*): -E the rest.
    passed = [f"--setenv={name}" for name in sorted(env.vars)]
    argv = [activate, "-l", str(env.socket), "--fdname=tracekeeperd", *passed, sys.executable, "-m", "tracekeeperd"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            env=env.vars,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(env.socket.exists, what="systemd-socket-activate to listen")
        inode = env.socket.stat().st_ino
        time.sleep(0.3)
        assert b"systemd-socket-activate" in Path(f"/proc/{proc.pid}/cmdline").read_bytes()  # not started yet
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as poke:  # the first connection starts it
            poke.connect(str(env.socket))
        daemon = wait_for(lambda: (d := env.status()["daemon"])["running"] and d, what="the daemon to answer")
        assert daemon["pid"] == proc.pid  # exec'd in place: LISTEN_PID matched
        assert daemon["socket"] == str(env.socket)
        assert env.socket.stat().st_ino == inode  # served on the socket it was handed
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    output = log.read_text(errors="replace")
    assert code == 0, output
    assert "tracekeeperd stopped" in output
    assert stat.S_ISSOCK(os.lstat(env.socket).st_mode), "the daemon unlinked the activated socket"
    assert env.socket.stat().st_ino == inode


def test_ready_is_notified_only_once_the_socket_answers_and_status_tracks_the_queue(env: Env) -> None:
    notify_path = env.root / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(notify_path))
        notify.settimeout(30)
        repo, _ = session_repo(env, 3)
        proc = subprocess.Popen(
            [sys.executable, "-m", "tracekeeperd"],
            env={**env.vars, "NOTIFY_SOCKET": str(notify_path)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            first = notify.recv(4096).decode().split("\n")
            # At the moment READY=1 arrives the socket must already answer: no retry, no wait.
            answer = Client(env.socket, timeout=5).status()
            assert first[0] == "READY=1"
            assert first[1] == f"STATUS=listening on {env.socket}"
            assert answer["daemon"]["running"] is True and answer["daemon"]["pid"] == proc.pid
            repo.commit_noted("first")
            message = notify.recv(4096).decode()  # after the batch that uploaded and noted it
            while not message.endswith(" done"):
                message = notify.recv(4096).decode()
            assert message == "STATUS=0 pending, 0 failed, 1 done"
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        assert notify.recv(4096) == b"STOPPING=1"


# --- hardening: the daemon and a real hf_xet upload under the unit's seccomp filters -------------


def _directives(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def _syscall_group(group: str, analyze: str, seen: set[str]) -> set[str]:
    listing = subprocess.run([analyze, "syscall-filter", group], capture_output=True, text=True, check=True).stdout
    names: set[str] = set()
    for line in listing.splitlines()[1:]:
        word = line.strip()
        if word.startswith("@") and word not in seen:
            seen.add(word)
            names |= _syscall_group(word, analyze, seen)
        elif word and not word.startswith("#"):
            names.add(word)
    return names


#: Loads the filters described by argv[1] (JSON), then execs argv[2:]: what systemd does between
#: fork and exec (src/shared/seccomp-util.c in systemd 252), with libseccomp through ctypes.
SANDBOX = """
import ctypes, json, os, sys
spec = json.loads(sys.argv[1])
lib = ctypes.CDLL("libseccomp.so.2")
class Cmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("a", ctypes.c_uint64), ("b", ctypes.c_uint64)]
lib.seccomp_init.restype = ctypes.c_void_p
lib.seccomp_init.argtypes = [ctypes.c_uint32]
lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                       ctypes.POINTER(Cmp)]
lib.seccomp_load.argtypes = [ctypes.c_void_p]
ALLOW, KILL, EQ, MASKED_EQ = 0x7FFF0000, 0x80000000, 4, 7
def errno(value):
    return 0x00050000 | value
def add(ctx, action, name, *conds):
    nr = lib.seccomp_syscall_resolve_name(name.encode())
    if nr < 0:
        return  # not on this architecture
    array = (Cmp * len(conds))(*(Cmp(*c) for c in conds)) if conds else None
    assert lib.seccomp_rule_add_array(ctx, action, nr, len(conds), array) == 0, name
filters = []
rules = lib.seccomp_init(ALLOW)
if spec["mdwe"]:  # MemoryDenyWriteExecute=yes
    WX, X, SHM_EXEC = 0x6, 0x4, 0o100000
    add(rules, errno(1), "mmap", (2, MASKED_EQ, WX, WX))
    add(rules, errno(1), "mprotect", (2, MASKED_EQ, X, X))
    add(rules, errno(1), "pkey_mprotect", (2, MASKED_EQ, X, X))
    add(rules, errno(1), "shmat", (2, MASKED_EQ, SHM_EXEC, SHM_EXEC))
for family in range(46):  # RestrictAddressFamilies=: EAFNOSUPPORT for the others
    if family not in spec["families"]:
        add(rules, errno(97), "socket", (0, EQ, family, 0))
filters.append(rules)
allowed = lib.seccomp_init(KILL)  # SystemCallFilter= allow-list: anything else kills the process
for name in spec["syscalls"]:
    add(allowed, ALLOW, name)
filters.append(allowed)
assert ctypes.CDLL(None).prctl(38, 1, 0, 0, 0) == 0  # NoNewPrivileges=yes (PR_SET_NO_NEW_PRIVS)
for ctx in filters:
    assert lib.seccomp_load(ctx) == 0
os.execv(sys.argv[2], sys.argv[2:])
"""


def _unit_sandbox() -> list[str]:
    """The argv prefix that runs a command under the packaged unit's seccomp-based hardening."""
    analyze = shutil.which("systemd-analyze")
    try:
        ctypes.CDLL("libseccomp.so.2")
    except OSError:
        pytest.skip("needs libseccomp")
    if analyze is None or not sys.platform.startswith("linux"):
        pytest.skip("needs Linux and systemd-analyze")
    unit = _directives(svc.template(svc.SERVICE_UNIT))
    assert unit["NoNewPrivileges"] == "yes"
    assert unit["MemoryDenyWriteExecute"] == "yes"
    syscalls = sorted(_syscall_group(unit["SystemCallFilter"], analyze, set()))
    assert len(syscalls) > 100
    families = sorted(getattr(socket, name) for name in unit["RestrictAddressFamilies"].split())
    spec = {"mdwe": True, "families": families, "syscalls": syscalls}
    return [sys.executable, "-c", SANDBOX, json.dumps(spec)]


@pytest.fixture
def hub(env: Env) -> Iterator[HubStub]:
    with running_hub(env.root / "cas") as stub:
        env.vars.update(HF_ENDPOINT=stub.endpoint, HF_TOKEN="hf_alice_write")
        yield stub


def test_the_daemon_uploads_through_hf_xet_under_the_units_hardening(env: Env, hub: HubStub) -> None:
    sandbox = _unit_sandbox()
    # The sandbox is real: writable+executable memory and other address families are refused.
    probe = "import mmap, socket\ntry:\n    mmap.mmap(-1, 4096, prot=7)\nexcept PermissionError:\n    print('no-wx')\n"
    probe += "try:\n    socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)\nexcept OSError as e:\n    print(e.errno)\n"
    refused = subprocess.run([*sandbox, sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert refused.stdout.split() == ["no-wx", "97"]
    repo, _ = session_repo(env, 5)
    log = env.root / "hardened.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*sandbox, sys.executable, "-P", "-m", "tracekeeperd", "--log-level", "debug"],
            env=env.vars,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: proc.poll() is not None or env.status()["daemon"]["running"], what="the daemon")
        assert proc.poll() is None, log.read_text(errors="replace")
        assert "\nSeccomp:\t2\n" in Path(f"/proc/{proc.pid}/status").read_text()  # SECCOMP_MODE_FILTER
        sha = repo.commit("hardened")
        note = wait_for(lambda: repo.note(sha) or proc.poll() is not None, what="the note", timeout=60)
        assert isinstance(note, str), f"daemon died ({proc.returncode}):\n{log.read_text(errors='replace')}"
        assert note.startswith(f"hf-trace: {hub.endpoint}/buckets/alice/agent-traces/")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0, log.read_text(errors="replace")
