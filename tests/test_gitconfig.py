"""gitconfig.Recorded against real git: writes that meet another writer's config lock."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tracekeeperd import gitconfig
from tracekeeperd.errors import GitError
from tracekeeperd.gitconfig import Recorded


def test_a_write_waits_while_another_writer_holds_the_config_lock(tmp_path: Path) -> None:
    """Found by a CI run: the pre-push hook's background `push` and the user's `tracekeeper push`
    both write the refspec; git gives up at once on a held `config.lock` ("File exists"). Our
    write waits for the other writer instead (time injected: the lock goes at the first wait)."""
    repo = tmp_path / "r"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    lock = repo / ".git" / "config.lock"
    lock.write_text("another writer\n")
    waits: list[float] = []

    def other_writer_done(seconds: float) -> None:
        waits.append(seconds)
        lock.unlink()

    recorded = Recorded(repo, "tracekeeper.test", git_dir=repo / ".git", sleep=other_writer_done)
    assert recorded.add("remote.origin.fetch", "+refs/notes/x*:refs/notes/remotes/origin/x*").action == "added"
    assert len(waits) == 1
    assert recorded.values("remote.origin.fetch") == ["+refs/notes/x*:refs/notes/remotes/origin/x*"]


def test_a_lock_that_is_never_released_still_fails_in_the_end(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / ".git" / "config.lock").write_text("stuck\n")
    waits: list[float] = []
    recorded = Recorded(repo, "tracekeeper.test", git_dir=repo / ".git", sleep=waits.append)
    with pytest.raises(GitError, match="config"):
        recorded.add("a.b", "c")
    assert sum(waits) >= gitconfig.CONFIG_LOCK_WAIT


def test_a_write_waits_for_the_lock_under_a_translated_git_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """git translates "could not lock config file" (config.c wraps it in `_()`; po/de.po has
    "Konnte Konfigurationsdatei ... nicht sperren"): the message our wait looks for is only
    there when git speaks English, whatever the user's locale (LANGUAGE is honoured under
    C.UTF-8 with glibc's gettext, as on a German desktop)."""
    monkeypatch.setenv("LANGUAGE", "de")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    repo = tmp_path / "r"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    lock = repo / ".git" / "config.lock"
    lock.write_text("another writer\n")
    waits: list[float] = []

    def other_writer_done(seconds: float) -> None:
        waits.append(seconds)
        lock.unlink()

    recorded = Recorded(repo, "tracekeeper.test", git_dir=repo / ".git", sleep=other_writer_done)
    assert recorded.add("a.b", "c").action == "added"
    assert len(waits) == 1
