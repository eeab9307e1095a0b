"""Install and remove the post-commit hook of one repository, chaining what was there.

The hook is a short POSIX sh script with the daemon's paths baked in (the environment can
still override them), so a commit costs one `git rev-parse`, one small file write and a
background poke of the socket: no Python start-up on the commit path.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tracekeeperd.git import clean_env
from tracekeeperd.paths import Paths

MARKER = "# tracekeeper-hook: v1"
CHAINED_SUFFIX = ".pre-tracekeeper"
HOOKS = ("post-commit",)


class InstallError(Exception):
    """Something about this repository prevents a safe install; the message says what."""


@dataclass(frozen=True)
class HookChange:
    hook: Path
    action: str  # "installed", "updated", "unchanged", "removed", "restored", "absent"
    chained: Path | None = None


def _git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=clean_env(), check=False)
    if proc.returncode != 0:
        message = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "git failed"
        raise InstallError(message.removeprefix("fatal: "))
    return proc.stdout.strip()


def hooks_dir(repo: Path) -> Path:
    """The directory git runs hooks from here (honours core.hooksPath and worktrees)."""
    raw = _git(repo, "rev-parse", "--git-path", "hooks")
    path = Path(raw)
    return path if path.is_absolute() else (repo / path).resolve()


def render(name: str, paths: Paths) -> str:
    template = resources.files("tracekeeper").joinpath("hooks", name).read_text()
    return template.replace("@SPOOL_DIR@", shlex.quote(str(paths.spool))).replace(
        "@SOCKET@", shlex.quote(str(paths.socket))
    )


def is_ours(path: Path) -> bool:
    try:
        return MARKER in path.read_text(errors="replace")
    except (FileNotFoundError, IsADirectoryError):
        return False


def _write_executable(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tracekeeper.tmp")
    tmp.write_text(text)
    tmp.chmod(0o755)
    os.replace(tmp, path)


def install(repo: Path, paths: Paths) -> list[HookChange]:
    directory = hooks_dir(repo)
    directory.mkdir(parents=True, exist_ok=True)
    changes = []
    for name in HOOKS:
        hook = directory / name
        chained = hook.with_name(name + CHAINED_SUFFIX)
        text = render(name, paths)
        if hook.is_symlink() or hook.exists():
            if is_ours(hook):
                if hook.read_text() == text:
                    changes.append(HookChange(hook, "unchanged", chained if chained.exists() else None))
                    continue
                _write_executable(hook, text)
                changes.append(HookChange(hook, "updated", chained if chained.exists() else None))
                continue
            if chained.exists() or chained.is_symlink():
                raise InstallError(f"both {hook} and {chained} exist; move one of them away first")
            os.replace(hook, chained)  # keeps a symlink a symlink, and its mode
            _write_executable(hook, text)
            changes.append(HookChange(hook, "installed", chained))
        else:
            _write_executable(hook, text)
            changes.append(HookChange(hook, "installed"))
    return changes


def uninstall(repo: Path) -> list[HookChange]:
    directory = hooks_dir(repo)
    changes = []
    for name in HOOKS:
        hook = directory / name
        chained = hook.with_name(name + CHAINED_SUFFIX)
        if not is_ours(hook):
            changes.append(HookChange(hook, "absent"))
            continue
        if chained.exists() or chained.is_symlink():
            os.replace(chained, hook)
            changes.append(HookChange(hook, "restored", chained))
        else:
            hook.unlink()
            changes.append(HookChange(hook, "removed"))
    return changes


def installed(repo: Path) -> bool:
    return all(is_ours(hooks_dir(repo) / name) for name in HOOKS)
