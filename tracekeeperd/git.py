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
from typing import IO, Any

from .errors import GitError
from .gitenv import LOCAL_ENV_VARS, clean_env

__all__ = ["LOCAL_ENV_VARS", "clean_env"]  # re-exported: the runner's callers read them here

DEFAULT_TIMEOUT = 30.0

#: For a command whose stderr we read (a held lock, no identity): git translates its messages
#: (po/*.po; a German desktop gets "Die Datei existiert bereits"), and under LC_ALL=C gettext
#: leaves them in English.
IN_ENGLISH = {"LC_ALL": "C"}

#: Used only when git has no identity at all (a daemon started without the user's git config
#: or env): a notes commit needs one, and failing every retry forever would help nobody.
FALLBACK_IDENTITY = ["-c", "user.name=tracekeeper", "-c", "user.email=tracekeeper@localhost"]


def verb(args: Sequence[str]) -> str:
    """The subcommand, past any `-c key=value` options: what an error message names."""
    rest = list(args)
    while rest[:1] == ["-c"]:
        rest = rest[2:]
    return rest[0] if rest else "git"


def run(
    git_dir: Path | str | None,
    args: Sequence[str],
    *,
    cwd: Path | str | None = None,
    work_tree: Path | str | None = None,
    input: bytes | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    check: bool = True,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run `git [-C <cwd>] [--git-dir=<git_dir>] [--work-tree=...] <args>`: the one git runner.

    Every git call of tracekeeper and tracekeeperd goes through here (hookcmd.py excepted: it
    cannot afford importing `subprocess`, and says so), so each gets an argv list, the clean
    environment (plus `env`, which adds to it), a timeout, and `GitError` for anything that
    goes wrong: git missing, a timeout, and (with `check`) a non-zero exit. With
    `check=False` a non-zero exit is the caller's to read from the returned process.

    `git_dir=None` lets git discover the repository from `cwd`. `cwd` is passed as `-C`, not
    as the child's working directory, so a directory that does not exist is git's own
    `fatal: cannot change to ...` rather than a Python exception that reads like git is
    missing; git resolves relative remotes and paths against it all the same.
    """
    argv = ["git"]
    if cwd is not None:
        argv += ["-C", str(cwd)]
    if git_dir is not None:
        argv.append(f"--git-dir={git_dir}")
    if work_tree is not None:
        argv.append(f"--work-tree={work_tree}")
    argv.extend(args)
    environ = clean_env()
    if env:
        environ.update(env)
    try:
        proc = subprocess.run(
            argv,
            input=input,
            capture_output=True,
            env=environ,
            timeout=timeout,
            check=False,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise GitError(f"git {verb(args)} timed out after {timeout:g}s", -1, "") from exc
    except FileNotFoundError as exc:
        raise GitError("git is not installed or not on PATH", -1, str(exc)) from exc
    except OSError as exc:
        raise GitError(f"cannot run git: {exc}", -1, str(exc)) from exc
    if check and proc.returncode != 0:
        stderr = proc.stderr.decode(errors="replace").strip()
        first = stderr.splitlines()[-1] if stderr else f"exit {proc.returncode}"
        raise GitError(f"git {verb(args)} failed: {first}", proc.returncode, stderr)
    return proc


def run_text(
    git_dir: Path | str | None,
    args: Sequence[str],
    **kwargs: Any,
) -> subprocess.CompletedProcess[str]:
    """`run`, with stdout and stderr decoded (UTF-8; a byte that is not becomes U+FFFD)."""
    proc = run(git_dir, args, **kwargs)
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    )


def run_committing(
    git_dir: Path | str | None, args: Sequence[str], **kwargs: Any
) -> subprocess.CompletedProcess[bytes]:
    """`run` for a command that makes a commit (`commit-tree`, `notes merge`); if git has no
    identity at all ("Please tell me who you are", "unable to auto-detect email address"),
    once more as tracekeeper (FALLBACK_IDENTITY)."""
    env = {**(kwargs.pop("env", None) or {}), **IN_ENGLISH}
    try:
        return run(git_dir, args, env=env, **kwargs)
    except GitError as exc:
        if "tell me who you are" not in exc.stderr and "auto-detect email" not in exc.stderr:
            raise
        return run(git_dir, [*FALLBACK_IDENTITY, *args], env=env, **kwargs)


def output(git_dir: Path | str | None, args: Sequence[str], **kwargs: Any) -> str:
    return run(git_dir, args, **kwargs).stdout.decode(errors="replace").strip()


def is_ancestor(git_dir: Path | str | None, ancestor: str, descendant: str, *, cwd: Path | str | None = None) -> bool:
    """Whether `ancestor` is in `descendant`'s history. git's exit status 1 is "no"; any other
    failure (a missing object, a broken repository) raises GitError rather than passing for "no"
    (builtin/merge-base.c, handle_is_ancestor: 0 yes, 1 no, 128 on errors)."""
    proc = run(git_dir, ["merge-base", "--is-ancestor", ancestor, descendant], cwd=cwd, check=False)
    if proc.returncode not in (0, 1):
        raise GitError("git merge-base --is-ancestor failed", proc.returncode, proc.stderr.decode(errors="replace"))
    return proc.returncode == 0


def toplevel(path: Path | str) -> Path | None:
    """The root of the working tree `path` is in; None in a bare repository or outside one.

    Only the trailing newline is cut: a directory name may end in a space."""
    proc = run(None, ["rev-parse", "--show-toplevel"], cwd=path, check=False)
    top = proc.stdout.decode(errors="replace").removesuffix("\n")
    return Path(top) if proc.returncode == 0 and top else None


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
    proc = run(None, ["rev-parse", "--absolute-git-dir"], cwd=path, check=False)
    if proc.returncode != 0:
        stderr = proc.stderr.decode(errors="replace").strip()
        raise GitError(f"{path} is not in a git repository", proc.returncode, stderr)
    return Path(proc.stdout.decode().strip())


class Pipe:
    """A long-lived `git --git-dir=<git_dir> <args>` to talk to over pipes (`cat-file --batch`).

    stderr goes to an unnamed temporary file, not a pipe nobody drains, so a chatty git can
    never block on it; `error()` reads it after a failure.
    """

    def __init__(self, git_dir: Path | str, args: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        import tempfile

        self.args = list(args)
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the process)
        try:
            self.proc = subprocess.Popen(
                ["git", f"--git-dir={git_dir}", *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                env={**clean_env(), **(env or {})},
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


#: What a set of files looked like: (path, inode, size, mtime in ns) per file, None where there
#: is none. Two equal stamps mean none of the files was rewritten (git replaces a ref file, and
#: `packed-refs` and `reftable/tables.list`, through a lock file and a rename: a new inode).
FileStamp = tuple[tuple[str, int, int, int] | None, ...]


def read_common_dir(git_dir: str | os.PathLike[str]) -> str:
    """`common_dir` without running git: the common dir a linked worktree's `commondir` file
    names (relative to the git dir, or absolute), else the git dir itself (git's
    Documentation/gitrepository-layout.txt). The worker's and the status cache's stamps take
    it per write and per sweep, where a `git rev-parse` each would be the whole cost."""
    try:
        relative = Path(git_dir, "commondir").read_text().strip()
    except OSError:
        return os.fspath(git_dir)
    return os.path.normpath(os.path.join(git_dir, relative))


def stat_stamp(paths: Iterable[str | os.PathLike[str]]) -> FileStamp:
    """A `FileStamp` of `paths`: one `stat` each, no git."""
    out: list[tuple[str, int, int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append(None)
            continue
        out.append((os.fspath(path), st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)
