"""Real parts for integration tests: temp homes, git repos, the daemon as a separate process.

Nothing here is mocked. A test gets its own HOME and XDG dirs (short paths, because the
socket must fit in sun_path), runs `tracekeeperd` with `python -m`, installs the real hook
with `tracekeeper install`, and commits with real git, which runs the real hook.
"""

from __future__ import annotations

import json
import os
import pty
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import sqlite3

    from tracekeeperd.searchindex import Link

    from .hubstub import HubStub

T = TypeVar("T")

UUID_A = "019c8a70-dda7-7f33-98ea-f30553347322"
UUID_B = "55604662-cf2a-4331-851a-ec234028f8ca"


def wait_for(predicate: Callable[[], T], timeout: float = 20.0, what: str = "condition") -> T:
    """Poll until `predicate` returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)


@dataclass
class Env:
    root: Path
    vars: dict[str, str]

    @property
    def home(self) -> Path:
        return Path(self.vars["HOME"])

    @property
    def runtime(self) -> Path:
        return Path(self.vars["XDG_RUNTIME_DIR"]) / "tracekeeper"

    @property
    def socket(self) -> Path:
        return self.runtime / "sock"

    @property
    def state(self) -> Path:
        return Path(self.vars["XDG_STATE_HOME"]) / "tracekeeper"

    @property
    def spool(self) -> Path:
        return self.state / "spool"

    @property
    def local_store(self) -> Path:
        return Path(self.vars["XDG_DATA_HOME"]) / "tracekeeper" / "traces"

    def cli(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "tracekeeper", *args],
            env=self.vars,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.root,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"tracekeeper {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
        return proc

    def status(self, *extra: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.cli("status", "--json", *extra).stdout)
        return data

    def stored(self, url: str) -> Path:
        """The local store's file behind a trace URL (file://.../traces/<path>)."""
        return self.local_store / url.split("/traces/", 1)[1]

    def write_config(self, text: str) -> Path:
        """Write the user's tracekeeper config file (config.toml under XDG_CONFIG_HOME's default)."""
        path = self.home / ".config" / "tracekeeper" / "config.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def transcript(self, name: str = f"rollout-2026-11-25T09-00-00-{UUID_A}.jsonl") -> Path:
        path = self.home / ".codex" / "sessions" / "2026" / "11" / "25" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


def make_env(**overrides: str) -> Iterator[Env]:
    root = Path(tempfile.mkdtemp(prefix="tk", dir="/tmp"))
    home = root / "h"
    runtime = root / "r"
    for directory in (home, runtime):
        directory.mkdir(mode=0o700)
    gitconfig = home / ".gitconfig"
    gitconfig.write_text(
        "[user]\n\tname = Test\n\temail = test@example.com\n[init]\n\tdefaultBranch = main\n"
        "[commit]\n\tgpgsign = false\n"
    )
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH")}
    env = {
        **keep,
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(runtime),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "TRACEKEEPER_RETRY_BASE": "0.2",
        "TRACEKEEPER_RETRY_CAP": "1.0",
        "TRACEKEEPER_RETRY_JITTER": "0.1",
        # Retries within one attempt (stores/hf.py): their schedule is asserted in
        # test_stores_unit with an injected sleep; daemons under test need not spend it.
        "TRACEKEEPER_RETRY_BURST": "0.02",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_XET_TELEMETRY_ENABLED": "false",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
        "HF_XET_CLIENT_RETRY_MAX_ATTEMPTS": "2",
        "HF_XET_CLIENT_RETRY_BASE_DELAY": "100ms",
        "HF_XET_CLIENT_RETRY_MAX_DURATION": "3s",
        "HF_HOME": str(home / ".cache" / "huggingface"),
        "PYTHONUNBUFFERED": "1",
    }
    env.update(overrides)
    try:
        yield Env(root=root, vars=env)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Daemon:
    env: Env
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(default_factory=Path)
    #: Put before the daemon's command line (`prlimit ... --`: a limit it should inherit, say).
    prefix: list[str] = field(default_factory=list)
    #: Tests read the debug log; benchmarks pass None: the user's default level (config's "info"),
    #: since formatting and writing a debug line per step is CPU a user's daemon never spends.
    log_level: str | None = "debug"

    def start(self, wait: bool = True) -> Daemon:
        self.log = self.env.root / f"daemon-{time.monotonic_ns()}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    *self.prefix,
                    sys.executable,
                    "-m",
                    "tracekeeperd",
                    *(["--log-level", self.log_level] if self.log_level else []),
                ],
                env=self.env.vars,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if wait:
            wait_for(self._ready, timeout=30, what="the daemon to answer on its socket")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.output()}")
        return bool(self.env.cli("status", "--json").stdout and self.env.status()["daemon"]["running"])

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


@contextmanager
def running_daemon(env: Env) -> Iterator[Daemon]:
    daemon = Daemon(env).start()
    try:
        yield daemon
    except BaseException:
        # pytest shows captured stdout of a failing test: the daemon's side of the story.
        print(f"--- daemon log ({daemon.log}) ---\n{daemon.output()[-20000:]}")
        raise
    finally:
        daemon.stop()


@dataclass
class Repo:
    env: Env
    path: Path

    def git(self, *args: str, check: bool = True, extra_env: dict[str, str] | None = None) -> str:
        proc = subprocess.run(
            ["git", *args],
            cwd=self.path,
            env={**self.env.vars, **(extra_env or {})},
            capture_output=True,
            text=True,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
        return proc.stdout.strip()

    @property
    def git_dir(self) -> Path:
        return Path(self.git("rev-parse", "--absolute-git-dir"))

    def install(self) -> Repo:
        self.env.cli("install", "-C", str(self.path))
        return self

    def activate(self, transcript: Path, **payload: Any) -> Path:
        """Write hf-traces-active.json as the recipe's Codex SessionStart hook does."""
        body = {
            "session_id": UUID_A,
            "transcript_path": str(transcript),
            "cwd": str(self.path),
            "hook_event_name": "SessionStart",
            "model": "gpt-5",
            **payload,
        }
        target = Path(self.git("rev-parse", "--git-path", "hf-traces-active.json"))
        target = target if target.is_absolute() else self.path / target
        target.write_text(json.dumps(body))
        return target

    def commit(self, message: str = "change", *, file: str = "file.txt") -> str:
        target = self.path / file
        with target.open("a") as fh:
            fh.write(f"{message}\n")
        self.git("add", file)
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")

    def commit_files(self, files: dict[str, str], message: str) -> str:
        """Commit `files` (path -> whole new content, parents created) as one commit; its sha."""
        for name, content in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            self.git("add", name)
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")

    def note(self, sha: str, ref: str = "refs/notes/hf-traces") -> str:
        return self.git("notes", f"--ref={ref}", "show", sha, check=False)

    def commit_noted(self, message: str = "x", *, timeout: float = 20.0) -> str:
        """Commit, then wait (with a deadline) until the running daemon has noted the commit."""
        sha = self.commit(message)
        wait_for(lambda: self.note(sha), timeout=timeout, what=f"the note on {message!r} ({sha[:12]})")
        return sha

    def start_session(self, lines: int = 2, transcript: Path | None = None) -> Path:
        """An agent session active here (the recipe's SessionStart hook), its transcript `lines` long."""
        transcript = transcript or self.env.transcript()
        if lines and not transcript.exists():
            append_lines(transcript, lines)
        self.activate(transcript)
        return transcript


def make_repo(env: Env, name: str = "app", parent: Path | None = None) -> Repo:
    path = (parent or env.root / "src") / name
    path.mkdir(parents=True)
    repo = Repo(env, path)
    repo.git("init", "-q")
    return repo


def session_repo(env: Env, lines: int = 2, name: str = "app", transcript: Path | None = None) -> tuple[Repo, Path]:
    """A repository with tracekeeper installed and an agent session active in it: the set-up
    most end-to-end tests start from. The transcript gets `lines` lines unless it exists (a
    second repository of the same session shares it)."""
    repo = make_repo(env, name).install()
    return repo, repo.start_session(lines, transcript)


def append_lines(path: Path, count: int, start: int = 1, stamp: str = "2026-11-25T09:00:00.000Z") -> None:
    with path.open("a") as fh:
        for i in range(start, start + count):
            record = {"timestamp": stamp, "type": "event_msg", "payload": {"type": "agent_message", "n": i}}
            fh.write(json.dumps(record) + "\n")


def note_links(text: str) -> list[dict[str, Any]]:
    return [json.loads(line.split(": ", 1)[1]) for line in text.splitlines() if line.startswith("hf-trace-meta: ")]


def daemon_once(env: Env, overrides: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Start `tracekeeperd` expecting it to refuse to run; returns its exit and output."""
    return subprocess.run(
        [sys.executable, "-m", "tracekeeperd"],
        env={**env.vars, **(overrides or {})},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def cli_on_terminal(
    env: Env, *args: str, columns: int = 80, cwd: Path | None = None, stderr_too: bool = True
) -> tuple[int, str, str]:
    """Run the real CLI with stdout (and stderr, if `stderr_too`) on one pseudo-terminal, as a user at a
    terminal would: rich and click then style their output and strip nothing. Returns the exit code,
    what the terminal got (the tty's CRLF folded back) and the piped stderr ("" when it went to the tty)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracekeeper", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave if stderr_too else subprocess.PIPE,
        env={**env.vars, "TERM": "xterm-256color", "COLUMNS": str(columns)},
        cwd=cwd or env.root,
    )
    os.close(slave)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    code = proc.wait(timeout=60)
    errors = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    return code, b"".join(chunks).decode().replace("\r\n", "\n"), errors


@contextmanager
def uploaded_elsewhere(env: Env) -> Iterator[tuple[HubStub, Path, str]]:
    """(hub, repo, commit) on a teammate's machine: the commit's trace was uploaded by the real
    daemon to the Hub stand-in, and the transcript, queue and snapshots are gone, so only the
    bucket has it."""
    from .hubstub import running_hub
    from .transcripts import CODEX_SHORT, FIXTURES

    with running_hub(env.root / "cas") as hub:
        env.vars.update(HF_ENDPOINT=hub.endpoint, HF_TOKEN="hf_alice_write")
        repo = make_repo(env).install()
        source = FIXTURES / CODEX_SHORT
        transcript = env.transcript(source.name)
        shutil.copy(source, transcript)
        repo.activate(transcript)
        with running_daemon(env):
            sha = repo.commit_noted("x")
        transcript.unlink()
        shutil.rmtree(env.state)  # a teammate's machine: no queue, no snapshots
        yield hub, repo.path, sha


@contextmanager
def web_server(env: Env, repo: Path, *extra: str, browser: bool = False) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """The real `tracekeeper web` (with --no-browser unless `browser`); yields the URL from its first
    line of stdout and the process, and stops it with Ctrl-C (SIGINT) if it still runs."""
    flags = () if browser else ("--no-browser",)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracekeeper", "-C", str(repo), "web", *flags, *extra],
        env=env.vars,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), (url, proc.stderr.read() if proc.poll() is not None else "")
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def index_bytes(
    conn: sqlite3.Connection,
    data: bytes,
    link: Link,
    *,
    url: str,
    agent: str,
    session: str,
    source_id: str | None = None,
) -> int:
    """Index a redacted session held in memory, as the daemon indexes its copy on disk: the whole of
    `data` is the source, linked to one commit by `link`."""
    import io

    from tracekeeperd import searchindex

    return searchindex.index_session(
        conn,
        url=url,
        agent=agent,
        session=session,
        source=io.BytesIO(data),
        size=len(data),
        links=[link],
        source_id=source_id,
    )
