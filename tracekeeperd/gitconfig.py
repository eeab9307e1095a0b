"""Git config values tracekeeper adds, recorded so that taking them out again is exact.

`sync.configure` (fetch refspecs, the notes merge strategy) and `rewrite.configure` (notes
rewrite settings) both add values to a repository's config that the user may also have set,
identically or not. Each value added is recorded next to it under a record key
(`<key> <value>` per line, in the same scope), so undoing removes one occurrence of exactly
what was added and nothing the user chose: the one record of config changes `install` undoes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from . import git

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

    def _config(self, *args: str, check: bool = True) -> tuple[int, str]:
        proc = git.run(self.git_dir, ["config", *args], cwd=self.cwd, check=check)
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
