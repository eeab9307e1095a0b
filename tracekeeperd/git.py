"""Run git for a given repository with an environment that cannot leak into another repo.

A hook that wakes the daemon runs with `GIT_DIR`, `GIT_INDEX_FILE` and friends set; if the
daemon (or something that spawned it) inherited them, every git call would silently target
that one repository. So the repository-local variables git lists in
`git rev-parse --local-env-vars` are always removed, and the repository is always explicit.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO

from .errors import GitError

#: `git rev-parse --local-env-vars` (git 2.39 - 2.55), plus the numbered config overrides.
LOCAL_ENV_VARS = frozenset(
    {
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_CONFIG",
        "GIT_CONFIG_PARAMETERS",
        "GIT_CONFIG_COUNT",
        "GIT_OBJECT_DIRECTORY",
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_IMPLICIT_WORK_TREE",
        "GIT_GRAFT_FILE",
        "GIT_INDEX_FILE",
        "GIT_NO_REPLACE_OBJECTS",
        "GIT_REPLACE_REF_BASE",
        "GIT_PREFIX",
        "GIT_INTERNAL_SUPER_PREFIX",
        "GIT_SHALLOW_FILE",
        "GIT_COMMON_DIR",
        "GIT_QUARANTINE_PATH",
    }
)

DEFAULT_TIMEOUT = 30.0


def clean_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment minus anything that would point git at a particular repository."""
    env = os.environ if env is None else env
    return {
        key: value
        for key, value in env.items()
        if key not in LOCAL_ENV_VARS and not key.startswith(("GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_"))
    }


def run(
    git_dir: Path | str,
    args: Sequence[str],
    *,
    work_tree: Path | str | None = None,
    input: bytes | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run `git --git-dir=<git_dir> [--work-tree=...] <args>` and raise GitError on failure."""
    argv = ["git", f"--git-dir={git_dir}"]
    if work_tree is not None:
        argv.append(f"--work-tree={work_tree}")
    argv.extend(args)
    try:
        proc = subprocess.run(
            argv,
            input=input,
            capture_output=True,
            env=clean_env(),
            timeout=timeout,
            check=False,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise GitError(f"git {args[0]} timed out after {timeout:g}s", -1, "") from exc
    except FileNotFoundError as exc:
        raise GitError("git is not installed or not on PATH", -1, str(exc)) from exc
    if check and proc.returncode != 0:
        stderr = proc.stderr.decode(errors="replace").strip()
        first = stderr.splitlines()[-1] if stderr else f"exit {proc.returncode}"
        raise GitError(f"git {args[0]} failed: {first}", proc.returncode, stderr)
    return proc


def output(git_dir: Path | str, args: Sequence[str], **kwargs: object) -> str:
    return run(git_dir, args, **kwargs).stdout.decode(errors="replace").strip()  # type: ignore[arg-type]


def common_dir(git_dir: Path) -> Path:
    """The repository's shared git dir: the same for every linked worktree."""
    raw = output(git_dir, ["rev-parse", "--git-common-dir"])
    path = Path(raw)
    return path if path.is_absolute() else (git_dir / path).resolve()


def remote_url(git_dir: Path, remote: str = "origin") -> str | None:
    proc = run(git_dir, ["config", "--get", f"remote.{remote}.url"], check=False)
    value = proc.stdout.decode(errors="replace").strip()
    return value or None


def find_git_dir(path: Path) -> Path:
    """The git dir of the repository (or worktree) containing `path`."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "--absolute-git-dir"],
            capture_output=True,
            env=clean_env(),
            timeout=DEFAULT_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        raise GitError("git is not installed or not on PATH", -1, str(exc)) from exc
    if proc.returncode != 0:
        stderr = proc.stderr.decode(errors="replace").strip()
        raise GitError(f"{path} is not in a git repository", proc.returncode, stderr)
    return Path(proc.stdout.decode().strip())


class Pipe:
    """A long-lived `git --git-dir=<git_dir> <args>` to talk to over pipes (`cat-file --batch`).

    stderr goes to an unnamed temporary file, not a pipe nobody drains, so a chatty git can
    never block on it; `error()` reads it after a failure.
    """

    def __init__(self, git_dir: Path | str, args: Sequence[str]) -> None:
        import tempfile

        self.args = list(args)
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the process)
        try:
            self.proc = subprocess.Popen(
                ["git", f"--git-dir={git_dir}", *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                env=clean_env(),
            )
        except FileNotFoundError as exc:
            self._stderr.close()
            raise GitError("git is not installed or not on PATH", -1, str(exc)) from exc
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin: IO[bytes] = self.proc.stdin
        self.stdout: IO[bytes] = self.proc.stdout

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()

    def error(self) -> GitError:
        """What went wrong, once the process is stopped (killed if it still runs)."""
        self.kill()
        self.proc.wait()
        self._stderr.seek(0)
        stderr = self._stderr.read().decode(errors="replace").strip()
        first = (stderr.splitlines() or ["it stopped answering"])[-1]
        return GitError(f"git {self.args[0]} failed: {first}", self.proc.returncode, stderr)

    def close(self) -> None:
        self.kill()
        self.proc.wait()
        for stream in (self.stdin, self.stdout, self._stderr):
            # A pipe to a killed process may fail to flush; nothing is waiting on it.
            with contextlib.suppress(OSError):
                stream.close()


def existing_commits(git_dir: Path, shas: Iterable[str]) -> set[str]:
    """Which of `shas` name commits in this repository, in one git process."""
    wanted = list(dict.fromkeys(shas))
    if not wanted:
        return set()
    proc = run(
        git_dir, ["cat-file", "--batch-check=%(objectname) %(objecttype)"], input="\n".join(wanted).encode() + b"\n"
    )
    out = set()
    for line in proc.stdout.decode().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] == "commit":
            out.add(parts[0])
    return out
