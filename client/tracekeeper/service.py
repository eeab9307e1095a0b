"""`tracekeeper service install|uninstall|status`: run tracekeeperd as a user service.

A daemon started by hand is gone after the next reboot, and every commit made meanwhile waits
in the spool. So this writes the user-service files for the platform, with the absolute path
of the interpreter running this command, and asks the service manager to start them:

* Linux: `tracekeeperd.socket` and `tracekeeperd.service` in `$XDG_CONFIG_HOME/systemd/user/`
  (socket activation, Type=notify readiness), enabled with `systemctl --user`.
* macOS: `~/Library/LaunchAgents/com.huggingface.tracekeeperd.plist`, loaded with
  `launchctl bootstrap gui/<uid>`. The daemon binds its own socket there (see docs/service.md).

The templates ship in the package (`tracekeeper/units/`; the copies in the repository's
`systemd/` and `launchd/` directories are the reference, kept identical by a test).

Ownership: every file written carries a `tracekeeper-sha256:` line, the digest of the rest of
the file. A file whose digest no longer matches was edited by hand: it is never overwritten
without `--force` (on systemd, customisations belong in drop-ins, which are never touched).
Re-running `install` with nothing to change changes nothing: no reload, no restart.

For tests, `TRACEKEEPER_SERVICE_PLATFORM=systemd|launchd` picks the platform and
`TRACEKEEPER_SYSTEMCTL` / `TRACEKEEPER_LAUNCHCTL` name the executables to call instead of
`systemctl` / `launchctl`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import plistlib
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any
from xml.parsers.expat import ExpatError
from xml.sax.saxutils import escape

from tracekeeperd.paths import resolve

from .errors import ClientError

PLATFORM_ENV = "TRACEKEEPER_SERVICE_PLATFORM"
SYSTEMCTL_ENV = "TRACEKEEPER_SYSTEMCTL"
LAUNCHCTL_ENV = "TRACEKEEPER_LAUNCHCTL"

SOCKET_UNIT = "tracekeeperd.socket"
SERVICE_UNIT = "tracekeeperd.service"
#: Start order; stop in reverse.
UNITS = (SOCKET_UNIT, SERVICE_UNIT)
LABEL = "com.huggingface.tracekeeperd"
PLIST = f"{LABEL}.plist"

#: `systemctl enable --now` waits for READY=1 (Type=notify); give it more than TimeoutStartSec.
COMMAND_TIMEOUT = 120.0

#: The stamp line: a comment holding the digest of every other line of the file.
_STAMP = re.compile(r"^[^\n]*tracekeeper-sha256: (?P<digest>[0-9a-f]{64}|@SHA256@)[^\n]*\n", re.MULTILINE)

#: Variables the daemon reads that a service does not inherit from the shell running `install`.
_SHELL_ONLY = (
    "HF_TOKEN",
    "HF_HOME",
    "HF_ENDPOINT",
    "HF_TRACE_BUCKET",
    "HF_TRACE_NOTES_REF",
    "TRACEKEEPER_STORE",
    "TRACEKEEPER_STATE_DIR",
    "TRACEKEEPER_RUNTIME_DIR",
    "TRACEKEEPER_LOG_LEVEL",
    "XDG_CONFIG_HOME",
    "XDG_STATE_HOME",
    "XDG_DATA_HOME",
)


class ServiceError(ClientError):
    """The service cannot be installed, removed or queried; the message says what to do."""


class FileState(StrEnum):
    ABSENT = "absent"
    CURRENT = "current"  # ours, byte for byte what install writes now
    OUTDATED = "outdated"  # ours and untouched, but written by another version or interpreter
    EDITED = "edited"  # ours, changed by hand since
    FOREIGN = "foreign"  # not written by tracekeeper (no stamp), or not a regular file


@dataclass(frozen=True)
class Planned:
    """One file install writes: where, what, with which mode."""

    path: Path
    text: str
    mode: int = 0o644

    def state(self) -> FileState:
        return file_state(self.path, self.text)


# --- templates and stamps ------------------------------------------------------------------


def template(name: str) -> str:
    """A template shipped in the package (importlib.resources: works installed and editable)."""
    return resources.files("tracekeeper").joinpath("units", name).read_text(encoding="utf-8")


def _digest(text: str) -> str:
    return hashlib.sha256(_STAMP.sub("", text, count=1).encode()).hexdigest()


def stamp(text: str) -> str:
    """Fill in the template's `tracekeeper-sha256: @SHA256@` line with the digest of the rest."""
    if "@SHA256@" not in text:
        raise ServiceError("template has no tracekeeper-sha256 line (broken installation?)")
    return text.replace("@SHA256@", _digest(text), 1)


def file_state(path: Path, expected: str) -> FileState:
    """Whether `path` is absent, ours as install would write it, ours but older, edited, or foreign."""
    try:
        if path.is_symlink() or not path.is_file():
            return FileState.FOREIGN if path.is_symlink() or path.exists() else FileState.ABSENT
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return FileState.ABSENT
    except (OSError, UnicodeDecodeError):
        return FileState.FOREIGN
    if text == expected:
        return FileState.CURRENT
    match = _STAMP.search(text)
    if match is None:
        return FileState.FOREIGN
    return FileState.OUTDATED if match["digest"] == _digest(text) else FileState.EDITED


def interpreter() -> str:
    """The absolute path of the Python running tracekeeper: the service must run the same one."""
    python = sys.executable
    if not python or not os.path.isabs(python):
        raise ServiceError(
            "cannot tell which Python runs tracekeeper (sys.executable is empty); run tracekeeperd by hand"
        )
    return python


def systemd_exec_path(path: str) -> str:
    """`path` as the first word of ExecStart=: quoted if it has blanks, `%` doubled (specifiers).

    systemd refuses quotes, backslashes and control characters in an executable name.
    """
    if any(c in path for c in "\"'\\") or any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise ServiceError(
            f"systemd cannot run an interpreter whose path contains quotes, backslashes or control characters: {path!r}"
        )
    path = path.replace("%", "%%")
    return f'"{path}"' if any(c.isspace() for c in path) else path


def _write(planned: Planned) -> None:
    """Atomically replace the file, with an explicit mode (a 077 umask once broke watchman's plist)."""
    planned.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = planned.path.with_name(f".{planned.path.name}.tracekeeper.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, planned.mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), planned.mode)
            fh.write(planned.text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, planned.path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _tool(variable: str, name: str, missing_hint: str) -> str:
    """The executable to call: `$variable` if set (tests), else `name` on PATH."""
    override = os.environ.get(variable, "")
    if override:
        if not (os.path.isfile(override) and os.access(override, os.X_OK)):
            raise ServiceError(f"{variable}={override} is not an executable file")
        return override
    found = shutil.which(name)
    if found is None:
        raise ServiceError(f"{name} not found: {missing_hint}")
    return found


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False)
    except OSError as exc:
        raise ServiceError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    except subprocess.TimeoutExpired:
        raise ServiceError(f"`{' '.join(argv)}` did not finish within {COMMAND_TIMEOUT:g}s") from None


def _first_line(proc: subprocess.CompletedProcess[str]) -> str:
    for line in (proc.stderr + "\n" + proc.stdout).splitlines():
        if line.strip():
            return line.strip()
    return f"exit status {proc.returncode}"


def _daemon_outside_manager() -> str | None:
    """Describe a tracekeeperd that answers on the socket, if any (called only when the manager runs none)."""
    from .api import Client, DaemonError, DaemonUnavailable

    try:
        data = Client(resolve().socket, timeout=3).status()
    except DaemonUnavailable:
        return None
    except DaemonError:
        return "a tracekeeperd"
    pid = data.get("daemon", {}).get("pid")
    return f"tracekeeperd (pid {pid})" if pid else "a tracekeeperd"


# --- the two service managers ---------------------------------------------------------------


class Backend:
    """What install/uninstall/status need from a service manager."""

    kind = ""
    location = Path()

    def planned(self) -> list[Planned]:
        raise NotImplementedError

    def require_manager(self) -> None:
        """Raise ServiceError, saying what to do instead, if the service manager cannot be used."""
        raise NotImplementedError

    def runs_daemon(self) -> bool:
        """Whether the manager already holds the socket or runs the daemon (so a daemon that answers is ours)."""
        raise NotImplementedError

    def healthy(self) -> bool:
        """Enabled/loaded and running: nothing for install to do when the files are current too."""
        raise NotImplementedError

    def activate(self, *, reload: bool, replaced: bool) -> list[str]:
        raise NotImplementedError

    def deactivate(self, present: list[Planned]) -> list[str]:
        raise NotImplementedError

    def after_removal(self) -> None:
        """Let the manager forget the removed files."""

    def state(self) -> dict[str, Any]:
        raise NotImplementedError

    def extras(self) -> list[Path]:
        """User files that belong to the service but are never touched (systemd drop-ins)."""
        return []


class Systemd(Backend):
    kind = "systemd"

    def __init__(self) -> None:
        config = os.environ.get("XDG_CONFIG_HOME", "")
        base = Path(config) if os.path.isabs(config) else Path.home() / ".config"
        self.location = base / "systemd" / "user"
        self._systemctl: str | None = None

    def systemctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        if self._systemctl is None:
            self._systemctl = _tool(
                SYSTEMCTL_ENV, "systemctl", "this system does not run systemd; start tracekeeperd by hand instead"
            )
        return _run([self._systemctl, "--user", *args])

    def _checked(self, *args: str) -> None:
        proc = self.systemctl(*args)
        if proc.returncode != 0:
            hint = "; see: journalctl --user -u tracekeeperd" if args[:1] in (("enable",), ("try-restart",)) else ""
            raise ServiceError(f"systemctl --user {' '.join(args)} failed: {_first_line(proc)}{hint}")

    def planned(self) -> list[Planned]:
        python = systemd_exec_path(interpreter())
        return [
            Planned(self.location / SOCKET_UNIT, stamp(template(SOCKET_UNIT))),
            Planned(self.location / SERVICE_UNIT, stamp(template(SERVICE_UNIT).replace("@PYTHON@", python))),
        ]

    def require_manager(self) -> None:
        proc = self.systemctl("show-environment")
        if proc.returncode != 0:
            raise ServiceError(
                f"no systemd user manager to talk to (systemctl --user: {_first_line(proc)}); "
                "run tracekeeperd by hand instead (it stays in the foreground), or log in to a session that has one"
            )

    def _query(self, verb: str, units: list[str]) -> dict[str, str]:
        """One word per unit (`is-active`, `is-enabled` print one line each), or ServiceError."""
        if not units:
            return {}
        proc = self.systemctl(verb, *units)
        answers = proc.stdout.split()
        if len(answers) != len(units):
            raise ServiceError(f"systemctl --user {verb} failed: {_first_line(proc)}")
        return dict(zip(units, answers, strict=True))

    def _active(self) -> dict[str, str]:
        return self._query("is-active", list(UNITS))

    def _enabled(self) -> dict[str, str]:
        # is-enabled fails on a unit file that does not exist: ask only about the ones that do.
        present = [u for u in UNITS if (self.location / u).exists()]
        answers = self._query("is-enabled", present)
        return {u: answers.get(u, "not-installed") for u in UNITS}

    def runs_daemon(self) -> bool:
        active = self._active()
        return active[SOCKET_UNIT] == "active" or active[SERVICE_UNIT] in ("active", "activating", "reloading")

    def healthy(self) -> bool:
        enabled, active = self._enabled(), self._active()
        return all(enabled[u] == "enabled" and active[u] == "active" for u in UNITS)

    def activate(self, *, reload: bool, replaced: bool) -> list[str]:
        if reload:
            self._checked("daemon-reload")
        if replaced:
            # A running daemon keeps its old command line until restarted; try-restart leaves a
            # stopped one stopped. SIGTERM hands jobs in flight back to the queue: nothing is lost.
            self._checked("try-restart", SERVICE_UNIT)
        elif not reload and self.healthy():
            return [f"{SOCKET_UNIT} and {SERVICE_UNIT} are enabled and running; nothing to do"]
        self._checked("enable", "--now", *UNITS)
        return [f"enabled and started {SOCKET_UNIT} and {SERVICE_UNIT} (logs: journalctl --user -u tracekeeperd)"]

    def deactivate(self, present: list[Planned]) -> list[str]:
        units = [p.path.name for p in reversed(present)]
        self._checked("disable", "--now", *units)
        return [f"stopped and disabled {' and '.join(units)}"]

    def after_removal(self) -> None:
        self._checked("daemon-reload")

    def state(self) -> dict[str, Any]:
        try:
            active, enabled = self._active(), self._enabled()
        except ServiceError as exc:
            return {"available": False, "error": str(exc)}
        return {
            "available": True,
            "units": {u: {"enabled": enabled[u], "active": active[u]} for u in UNITS},
            "running": active[SERVICE_UNIT] == "active",
        }

    def extras(self) -> list[Path]:
        found: list[Path] = []
        for unit in UNITS:
            directory = self.location / f"{unit}.d"
            if directory.is_dir():
                found.extend(sorted(directory.glob("*.conf")))
        return found


class Launchd(Backend):
    kind = "launchd"

    def __init__(self) -> None:
        home = Path.home()
        self.location = home / "Library" / "LaunchAgents"
        self.log = home / "Library" / "Logs" / "tracekeeper" / "tracekeeperd.log"
        self.domain = f"gui/{os.getuid()}"
        self.target = f"{self.domain}/{LABEL}"
        self._launchctl: str | None = None

    def _tool(self) -> str:
        if self._launchctl is None:
            self._launchctl = _tool(LAUNCHCTL_ENV, "launchctl", "launchd is macOS-only; start tracekeeperd by hand")
        return self._launchctl

    def launchctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return _run([self._tool(), *args])

    def _path(self, python: str) -> str:
        """A fixed PATH for the agent (launchd's default lacks Homebrew): this Python's and git's dirs first."""
        dirs = [os.path.dirname(python)]
        git = shutil.which("git")
        if git:
            dirs.append(os.path.dirname(git))
        dirs += ["/opt/homebrew/bin", "/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        return ":".join(dict.fromkeys(dirs))

    def planned(self) -> list[Planned]:
        python = interpreter()
        values = {
            "@PYTHON@": python,
            "@LOG@": str(self.log),
            "@PATH@": self._path(python),
            # The socket the git hooks were installed with (the agent may not get this shell's TMPDIR).
            "@RUNTIME_DIR@": str(resolve().runtime_dir),
        }
        text = template(PLIST)
        for placeholder, value in values.items():
            text = text.replace(placeholder, escape(value))
        text = stamp(text)
        try:
            parsed = plistlib.loads(text.encode())
        except (ValueError, ExpatError) as exc:  # e.g. a control character in a path
            raise ServiceError(f"cannot express these paths in a launchd plist: {exc}") from None
        if parsed["ProgramArguments"][0] != python or parsed["StandardErrorPath"] != str(self.log):
            raise ServiceError(f"cannot express the interpreter path {python!r} in a launchd plist")
        return [Planned(self.location / PLIST, text)]

    def require_manager(self) -> None:
        self._tool()  # launchctl itself; bootstrap says if there is no gui domain (SSH session)

    def _loaded(self) -> subprocess.CompletedProcess[str]:
        return self.launchctl("print", self.target)

    def runs_daemon(self) -> bool:
        return self._loaded().returncode == 0

    def healthy(self) -> bool:
        return self._loaded().returncode == 0

    def activate(self, *, reload: bool, replaced: bool) -> list[str]:
        if not reload and not replaced and self.healthy():
            return [f"{LABEL} is loaded; nothing to do"]
        # launchd opens the log file but does not create its directory.
        self.log.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.launchctl("bootout", self.target)  # not loaded yet is fine
        plist = str(self.location / PLIST)
        proc = self.launchctl("bootstrap", self.domain, plist)
        if proc.returncode != 0:
            raise ServiceError(
                f"launchctl bootstrap {self.domain} {plist} failed: {_first_line(proc)} "
                "(from an SSH session there is no gui domain: log in graphically, or run tracekeeperd by hand)"
            )
        return [f"loaded {LABEL} into {self.domain} (logs: {self.log})"]

    def deactivate(self, present: list[Planned]) -> list[str]:
        proc = self.launchctl("bootout", self.target)
        return [f"unloaded {LABEL}" if proc.returncode == 0 else f"{LABEL} was not loaded"]

    def state(self) -> dict[str, Any]:
        try:
            proc = self._loaded()
        except ServiceError as exc:
            return {"available": False, "error": str(exc)}
        if proc.returncode != 0:
            return {"available": True, "loaded": False, "running": False}
        fields: dict[str, str] = {}
        for line in proc.stdout.splitlines():
            key, sep, value = line.strip().partition(" = ")
            if sep and key in ("state", "pid", "last exit code") and key not in fields:
                fields[key] = value.strip()
        return {
            "available": True,
            "loaded": True,
            "running": fields.get("state") == "running",
            "state": fields.get("state"),
            "pid": int(fields["pid"]) if fields.get("pid", "").isdigit() else None,
            "last_exit": fields.get("last exit code"),
        }


def backend() -> Backend:
    """systemd on Linux, launchd on macOS; `TRACEKEEPER_SERVICE_PLATFORM` overrides (tests)."""
    chosen = os.environ.get(PLATFORM_ENV, "")
    if not chosen:
        chosen = {"darwin": "launchd"}.get(sys.platform, "systemd" if sys.platform.startswith("linux") else "")
    if chosen == "systemd":
        return Systemd()
    if chosen == "launchd":
        return Launchd()
    if os.environ.get(PLATFORM_ENV):
        raise ServiceError(f"{PLATFORM_ENV} must be systemd or launchd, not {chosen!r}")
    raise ServiceError(f"no supported service manager on {sys.platform}; run tracekeeperd by hand")


# --- the commands ---------------------------------------------------------------------------


def install_service(manager: Backend, *, force: bool) -> list[str]:
    """Write what differs, then (re)load and start; refuse to clobber hand edits without force."""
    manager.require_manager()
    planned = manager.planned()
    states = {p.path: p.state() for p in planned}
    blocked = [p.path for p in planned if states[p.path] in (FileState.EDITED, FileState.FOREIGN)]
    if blocked and not force:
        what = ", ".join(
            f"{path} ({'edited by hand' if states[path] is FileState.EDITED else 'not written by tracekeeper'})"
            for path in blocked
        )
        hint = (
            "move your changes into a drop-in (systemctl --user edit tracekeeperd), then"
            if manager.kind == "systemd"
            else "keep a copy of your changes, then"
        )
        raise ServiceError(f"refusing to overwrite {what}; {hint} run `tracekeeper service install --force`")
    if not manager.runs_daemon():
        other = _daemon_outside_manager()
        if other:
            raise ServiceError(
                f"{other} is already running outside the service manager; stop it first "
                "(SIGTERM hands its jobs back to the queue, nothing is lost), then run this again"
            )
    lines: list[str] = []
    for p in planned:
        state = states[p.path]
        if state is FileState.CURRENT:
            if (p.path.stat().st_mode & 0o777) != p.mode:
                p.path.chmod(p.mode)
            lines.append(f"unchanged {p.path}")
            continue
        _write(p)
        verb = {FileState.ABSENT: "installed", FileState.OUTDATED: "updated"}.get(state, "overwrote")
        lines.append(f"{verb} {p.path}" + (f" (it was {state.value})" if verb == "overwrote" else ""))
    changed = any(states[p.path] is not FileState.CURRENT for p in planned)
    replaced = any(states[p.path] is not FileState.ABSENT for p in planned) and changed
    lines += manager.activate(reload=changed, replaced=replaced)
    return lines


def uninstall_service(manager: Backend) -> list[str]:
    """Stop, disable and delete the files carrying our stamp; leave everything else alone."""
    planned = manager.planned()
    ours = [p for p in planned if p.state() in (FileState.CURRENT, FileState.OUTDATED, FileState.EDITED)]
    lines = [f"kept {p.path} (not written by tracekeeper)" for p in planned if p.state() is FileState.FOREIGN]
    if not ours:
        return [*lines, f"no tracekeeper service files in {manager.location}; nothing to remove"]
    lines += manager.deactivate(ours)
    for p in ours:
        edited = p.state() is FileState.EDITED
        p.path.unlink()
        lines.append(f"removed {p.path}" + (" (it had local edits)" if edited else ""))
    manager.after_removal()
    lines += [f"kept {extra} (yours)" for extra in manager.extras()]
    return lines


def service_status(manager: Backend) -> dict[str, Any]:
    planned = manager.planned()
    return {
        "platform": manager.kind,
        "location": str(manager.location),
        "interpreter": interpreter(),
        "files": [{"path": str(p.path), "state": p.state().value} for p in planned],
        "drop_ins": [str(path) for path in manager.extras()],
        "manager": manager.state(),
    }


def shell_only_note() -> str | None:
    """Settings a shell has that a service started by systemd/launchd will not see."""
    names = [name for name in _SHELL_ONLY if os.environ.get(name)]
    if not names:
        return None
    return (
        f"note: this shell sets {', '.join(names)}, which the service does not inherit: put settings in "
        "~/.config/tracekeeper/config.toml, log in with `hf auth login`, or see docs/service.md (drop-ins)"
    )
