"""Unit tests for `tracekeeperd.notes`: the note format, merging, and writing to a real repository."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tracekeeperd import git, notes
from tracekeeperd.errors import GitError, TransientError
from tracekeeperd.notes import LINK_PREFIX, META_PREFIX, TraceLink, add_link, add_missing, parse, read

REF = "refs/notes/hf-traces"
URL = "https://huggingface.co/buckets/me/agent-traces/tree/app-1a2b3c4d/sessions/codex-s1.jsonl"
LINK = TraceLink(url=URL, agent="codex", session_id="s1", first_line=1, last_line=12, bytes=3456, sha256="ab" * 32)
OTHER = TraceLink(
    url=URL.replace("codex-s1", "claude-s2"),
    agent="claude",
    session_id="s2",
    first_line=5,
    last_line=9,
    bytes=99,
    sha256="cd" * 32,
)


# --- rendering and parsing -------------------------------------------------------------


def test_lines_render_exactly() -> None:
    assert LINK.lines() == [
        f"hf-trace: {URL}",
        'hf-trace-meta: {"agent":"codex","bytes":3456,"lines":[1,12],"session":"s1",'
        f'"sha256":"{"ab" * 32}","url":"{URL}","v":1}}',
    ]


def test_parse_round_trips() -> None:
    text = "\n".join(LINK.lines() + OTHER.lines()) + "\n"
    assert parse(text) == [LINK, OTHER]


def test_parse_ignores_damaged_and_foreign_lines() -> None:
    text = "\n".join(
        [
            "Reviewed-by: someone",
            "hf-trace: https://example.invalid/only-the-recipe-line",
            META_PREFIX + "{not json",
            META_PREFIX + '{"url": "u"}',  # missing keys
            META_PREFIX + '{"url":"u","agent":"a","session":"s","lines":[1],"bytes":1,"sha256":"x"}',
            META_PREFIX + '{"url":"u","agent":"a","session":"s","lines":[1,2],"bytes":"many","sha256":"x"}',
            META_PREFIX + "[1, 2, 3]",
            META_PREFIX + "null",
            *LINK.lines(),
        ]
    )
    assert parse(text) == [LINK]


#: A teammate's note line nested deeper than json.loads can recurse: a few KB, fetched with `pull`.
NESTED = "[" * 5000 + "]" * 5000


def test_lines_nested_too_deep_for_json_are_damaged_lines_not_a_crash() -> None:
    from tracekeeperd import notes

    text = "\n".join([META_PREFIX + NESTED, notes.TOMBSTONE_PREFIX + NESTED, *LINK.lines()]) + "\n"
    assert parse(text) == [LINK]
    assert notes.parse_tombstones(text) == []
    assert notes.trace_lines(text) == LINK.lines()
    assert notes.merge_lines(text, OTHER.lines()) == text + "\n".join(OTHER.lines()) + "\n"


def test_parse_survives_cat_sort_uniq() -> None:
    """`git notes merge -s cat_sort_uniq` sorts and dedupes lines; every meta line names its own URL."""
    text = "\n".join(LINK.lines() + OTHER.lines() + LINK.lines() + ["foreign line"])
    merged = "\n".join(sorted(set(text.splitlines())))
    lines = merged.splitlines()
    assert lines.index(LINK.lines()[1]) < lines.index(LINK.lines()[0]), "sorting really did separate the pair"
    assert sorted(parse(merged), key=lambda link: link.session_id) == [LINK, OTHER]
    # Each parsed link still knows which `hf-trace:` line it belongs to.
    for link in parse(merged):
        assert f"{LINK_PREFIX}{link.url}" in merged.splitlines()


# --- merging ---------------------------------------------------------------------------


def test_merge_into_an_empty_note() -> None:
    assert add_missing("", LINK.lines()) == "\n".join(LINK.lines()) + "\n"


def test_merge_is_idempotent() -> None:
    once = add_missing("", LINK.lines())
    assert once is not None
    assert add_missing(once, LINK.lines()) is None
    # Also when someone dropped the trailing newline or sorted the lines.
    assert add_missing(once.rstrip("\n"), LINK.lines()) is None
    assert add_missing("\n".join(sorted(once.splitlines())), LINK.lines()) is None


def test_merge_keeps_foreign_lines_and_adds_a_second_session() -> None:
    existing = "Reviewed-by: someone\n\nsee also: ticket 42\n"
    first = add_missing(existing, LINK.lines())
    assert first is not None
    second = add_missing(first, OTHER.lines())
    assert second is not None
    assert second.startswith("Reviewed-by: someone\n\nsee also: ticket 42\n")
    assert second.endswith("\n") and not second.endswith("\n\n")
    assert parse(second) == [LINK, OTHER]
    assert second.count(LINK_PREFIX + URL + "\n") == 1


def test_merge_adds_only_the_missing_meta_line_next_to_a_recipe_line() -> None:
    """A note the seed recipe wrote already has `hf-trace: <url>`; it must not be repeated."""
    recipe = f"hf-trace: {URL}\n"
    merged = add_missing(recipe, LINK.lines())
    assert merged == recipe + LINK.lines()[1] + "\n"


def test_meta_line_is_valid_json_with_sorted_keys() -> None:
    meta = json.loads(LINK.lines()[1].removeprefix(META_PREFIX))
    assert list(meta) == sorted(meta)
    assert meta["v"] == 1


# --- a real repository -----------------------------------------------------------------


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A fresh repository with one commit; the user's git config cannot interfere."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    work = tmp_path / "repo"
    work.mkdir()
    env = git.clean_env()

    def run(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=work, env=env, check=True, capture_output=True, text=True
        ).stdout.strip()

    run("init", "-q")
    run("config", "user.name", "Test")
    run("config", "user.email", "test@example.com")
    run("commit", "-q", "--allow-empty", "-m", "first")
    return work / ".git", run("rev-parse", "HEAD")


def test_add_link_writes_once(repo: tuple[Path, str]) -> None:
    git_dir, sha = repo
    assert read(git_dir, REF, sha) == ""
    assert add_link(git_dir, REF, sha, LINK) is True
    text = read(git_dir, REF, sha)
    assert text == "\n".join(LINK.lines()) + "\n"
    assert add_link(git_dir, REF, sha, LINK) is False
    assert read(git_dir, REF, sha) == text
    notes_commits = git.output(git_dir, ["rev-list", "--count", REF])
    assert notes_commits == "1", "the idempotent second call must not even create a notes commit"


def test_add_link_second_session_keeps_the_first(repo: tuple[Path, str]) -> None:
    git_dir, sha = repo
    git.run(git_dir, ["notes", f"--ref={REF}", "add", "-m", "Reviewed-by: someone", sha])
    assert add_link(git_dir, REF, sha, LINK)
    assert add_link(git_dir, REF, sha, OTHER)
    text = read(git_dir, REF, sha)
    assert text.startswith("Reviewed-by: someone\n")
    assert parse(text) == [LINK, OTHER]


def test_add_link_to_an_unresolvable_name_is_a_git_error_not_transient(
    repo: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a full object id names a note's object; anything else fails at once, never retried."""
    git_dir, _ = repo
    waits: list[float] = []
    monkeypatch.setattr(notes, "_sleep", waits.append)
    with pytest.raises(GitError, match="not a full object id") as info:
        add_link(git_dir, REF, "no-such-commit", LINK)
    assert not isinstance(info.value, TransientError)
    assert waits == [], "a failure that is not a race is not retried"
    assert git.run(git_dir, ["rev-parse", "-q", "--verify", REF], check=False).returncode == 1


#: git's messages as a German desktop gets them (git ships de.po; C.UTF-8 lets LANGUAGE pick it).
GERMAN = {"LANGUAGE": "de", "LANG": "C.UTF-8"}


@pytest.mark.parametrize("language", [{}, GERMAN], ids=["english", "german"])
def test_a_held_notes_lock_is_retried_then_reported_as_transient(
    repo: tuple[Path, str], monkeypatch: pytest.MonkeyPatch, language: dict[str, str]
) -> None:
    for key, value in language.items():
        monkeypatch.setenv(key, value)
    git_dir, sha = repo
    lock = git_dir / "refs" / "notes" / "hf-traces.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("held by a concurrent git command\n")
    waits: list[float] = []
    monkeypatch.setattr(notes, "_sleep", waits.append)
    with pytest.raises(TransientError, match="stayed locked"):
        add_link(git_dir, REF, sha, LINK)
    # Six attempts, five waits growing from 0.05 s (plus up to 0.05 s jitter), each capped at 1 s:
    # a lock held by another git command is waited out for a second or two, not minutes.
    assert len(waits) == 5
    assert 0.05 <= waits[0] <= 0.1 and all(w <= 1.0 for w in waits)
    assert waits[-1] > waits[0], "the waits back off"
    assert read(git_dir, REF, sha) == ""
    lock.unlink()
    assert add_link(git_dir, REF, sha, LINK) is True


@pytest.mark.parametrize("language", [{}, GERMAN], ids=["english", "german"])
def test_add_link_works_when_git_has_no_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, language: dict[str, str]
) -> None:
    """A daemon started without the user's git config must still be able to write notes,
    whatever language git speaks to the user."""
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {"HOME": str(tmp_path), "GIT_CONFIG_NOSYSTEM": "1", "PATH": os.environ["PATH"]}
    subprocess.run(["git", "init", "-q", str(repo)], env=env, check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(repo),
            "-c",
            "user.name=a",
            "-c",
            "user.email=a@b",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "x",
        ],
        env=env,
        check=True,
    )
    sha = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    for key in list(os.environ):
        if key.startswith("GIT_") or key in ("EMAIL",):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for key, value in language.items():
        monkeypatch.setenv(key, value)
    link = TraceLink("file:///x.jsonl", "codex", "s", 1, 2, 10, "0" * 64)
    assert add_link(repo / ".git", "refs/notes/hf-traces", sha, link) is True
    assert parse(read(repo / ".git", "refs/notes/hf-traces", sha)) == [link]
