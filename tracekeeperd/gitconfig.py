"""Git config values tracekeeper adds, recorded so that taking them out again is exact.

`sync.configure` (fetch refspecs, the notes merge strategy) and `rewrite.configure` (notes
rewrite settings) both add values to a repository's config that the user may also have set,
identically or not. Each value added is recorded next to it under a record key
(`<key> <value>` per line, in the same scope), so undoing removes one occurrence of exactly
what was added and nothing the user chose: the one record of config changes `install` undoes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from . import git
from .errors import GitError

#: git takes `<config>.lock` for every config write and gives up at once when another writer
#: holds it ("could not lock config file ... File exists", config.c git_config_set_multivar_in_file_gently:
#: no timeout, unlike refs' core.filesRefLockTimeout). Two of our processes can write at once
#: (a pre-push hook's background `push` and the user's own `tracekeeper push`), so a write
#: waits for the other writer up to this long.
CONFIG_LOCK_WAIT = 5.0

Scope = Literal["local", "global"]
#: "added"; "present" (already so: left alone); "kept" (the user chose another value: left
#: alone, `detail` says what that costs); "removed"; "gone" (recorded as ours, no longer set).
Action = Literal["added", "present", "kept", "removed", "gone"]


@dataclass(frozen=True)
class ConfigChange:
    key: str
    value: str
    action: Action
    detail: str | None = None


@dataclass(frozen=True)
class Recorded:
    """The config of one repository (or the user's global config) and where our additions are listed.

    `cwd` is where git runs (`-C`); `git_dir` pins the repository when it is known, so a
    repository-pointing variable in the environment cannot redirect the writes.
    """

    cwd: Path
    record_key: str
    scope: Scope = "local"
    git_dir: Path | None = None
    #: How a write waits while another process holds the config's lock (injected in tests).
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)

    def _config(self, *args: str, check: bool = True) -> tuple[int, str]:
        waited, delay = 0.0, 0.02
        while True:
            try:
                # In English: the lock message below is translated (config.c `_()`), and values
                # are bytes git does not translate.
                proc = git.run(self.git_dir, ["config", *args], cwd=self.cwd, check=check, env=git.IN_ENGLISH)
            except GitError as exc:
                if "could not lock config file" not in exc.stderr or waited >= CONFIG_LOCK_WAIT:
                    raise
                self.sleep(delay)  # another writer holds `<config>.lock`: git's own write is short
                waited, delay = waited + delay, min(delay * 2, 0.5)
                continue
            return proc.returncode, proc.stdout.decode(errors="replace")

    def values(self, key: str, *, any_scope: bool = False) -> list[str]:
        """Every value of `key` in this scope (every scope with `any_scope`); git exits 1 when none."""
        flags = [] if any_scope else [f"--{self.scope}"]
        code, out = self._config(*flags, "--get-all", key, check=False)
        return out.splitlines() if code == 0 else []

    def records(self) -> list[tuple[str, str]]:
        return [(key, value) for key, _, value in (line.partition(" ") for line in self.values(self.record_key))]

    def add(self, key: str, value: str) -> ConfigChange:
        """Add `key = value` and record it as ours."""
        self._config(f"--{self.scope}", "--add", key, value)
        self.record(key, value)
        return ConfigChange(key, value, "added")

    def record(self, key: str, value: str) -> None:
        """Record `key = value`, already set, as ours (a migration from an older record)."""
        self._config(f"--{self.scope}", "--add", self.record_key, f"{key} {value}")

    def unset_one(self, key: str, value: str) -> bool:
        """Remove one occurrence of `key = value`; an identical value the user added too stays."""
        count = self.values(key).count(value)
        if not count:
            return False
        self._config(f"--{self.scope}", "--fixed-value", "--unset-all", key, value)
        for _ in range(count - 1):
            self._config(f"--{self.scope}", "--add", key, value)
        return True

    def undo(self, which: Callable[[str, str], bool] | None = None) -> list[ConfigChange]:
        """Remove every recorded value (`which` of them) and its record; git drops empty sections."""
        changes = []
        for key, value in self.records():
            if which is not None and not which(key, value):
                continue
            removed = self.unset_one(key, value)
            changes.append(ConfigChange(key, value, "removed" if removed else "gone"))
            self.unset_one(self.record_key, f"{key} {value}")
        return changes
