"""`tracekeeper why` through the real CLI: a real repository, notes in the documented format, and
the real fixture transcripts behind them (tests/test_why_lib.py builds the same repositories)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .harness import Env, make_repo
from .test_why_lib import CLAUDE, FAREWELL, FIXTURES, GREET, PI, commit, link

pytestmark = pytest.mark.usefixtures("configured_store")  # the notes' file:// store


def _repo(env: Env):  # type: ignore[no-untyped-def]
    repo = make_repo(env)
    commit(repo, "greet", {"src/app.py": GREET})
    sha = commit(repo, "farewell", {"src/app.py": FAREWELL}, link(env, CLAUDE, 1, 21))
    return repo, sha


def test_why_prints_the_prompt_then_the_edit_then_the_link(env: Env) -> None:
    repo, sha = _repo(env)
    proc = env.cli("-C", str(repo.path), "why", "src/app.py:5-6")
    out = proc.stdout
    assert sha[:12] in out and "farewell" in out
    prompt, edit, trace = out.index("prompt"), out.index("edit "), out.index("trace ")
    assert prompt < edit < trace
    assert "add a farewell(name: str) helper" in out
    assert "+ def farewell(name: str) -> str:" in out
    assert "file://" in out


def test_why_json_has_the_documented_shape(env: Env) -> None:
    repo, sha = _repo(env)
    data = json.loads(env.cli("-C", str(repo.path), "why", "src/app.py:5-6", "--json").stdout)
    assert data["path"] == "src/app.py" and data["lines"] == [5, 6]
    (entry,) = data["commits"]
    assert entry["commit"] == sha and entry["summary"] == "farewell"
    (session,) = entry["sessions"]
    assert set(session) == {"agent", "session", "url", "prompt", "edits", "excerpt"}
    assert session["agent"] == "claude" and "farewell" in session["prompt"]
    assert session["edits"] and session["edits"][-1]["tool"] == "Edit"


def test_why_without_a_range_lists_every_commit_newest_first(env: Env) -> None:
    repo, _ = _repo(env)
    data = json.loads(env.cli("-C", str(repo.path), "why", "src/app.py", "--json").stdout)
    assert data["lines"] is None
    assert [c["summary"] for c in data["commits"]] == ["farewell", "greet"]
    assert data["commits"][1]["sessions"] == []  # a commit without a note: listed, no sessions


def test_why_bad_input_is_one_line(env: Env) -> None:
    repo, _ = _repo(env)
    for target in ("src/app.py:9-2", "src/missing.py:1", ":3"):
        proc = env.cli("-C", str(repo.path), "why", target, check=False)
        assert proc.returncode != 0, target
        assert proc.stderr.startswith("Error: ") and "Traceback" not in proc.stderr, proc.stderr


def test_why_shows_a_transcripts_control_sequences_markup_and_emoji_codes_literally(env: Env) -> None:
    """The prompt is hostile text: its control characters are spelled out and rich markup and
    emoji codes stay literal, as in `tracekeeper show` (tests/test_show.py)."""
    hostile = "In this repo \x1b]0;pwned\x07 [red]not red[/red] :warning: \u202egnp"
    store = env.root / "store" / CLAUDE.agent / Path(CLAUDE.relpath).name
    store.parent.mkdir(parents=True)
    original = (FIXTURES / CLAUDE.relpath).read_text()
    store.write_text(original.replace("In this repo", json.dumps(hostile)[1:-1], 1))
    repo = make_repo(env)
    commit(repo, "greet", {"src/app.py": GREET})
    commit(repo, "farewell", {"src/app.py": FAREWELL}, link(env, CLAUDE, 1, 21))
    env.vars["COLUMNS"] = "400"
    out = env.cli("-C", str(repo.path), "why", "src/app.py:5-6").stdout
    assert "\x1b" not in out and "\u202e" not in out, out
    assert "In this repo \\x1b]0;pwned\\x07 [red]not red[/red] :warning: \\u202egnp" in out, out


def test_why_leaves_out_a_forgotten_session_even_when_a_notes_merge_brings_its_line_back(env: Env) -> None:
    """`forget` replaces the link by a tombstone; a teammate who had not fetched that, and whose
    daemon linked another session to the same commit, still holds the live line. Notes merge
    line by line (cat_sort_uniq), so it comes back next to its tombstone. The tombstone wins:
    `why` no longer points at the forgotten session, and still at the teammate's."""
    repo, sha = _repo(env)
    repo.git("update-ref", "refs/notes/teammate", "refs/notes/hf-traces")
    theirs = link(env, PI, 1, 5)
    held = repo.path.parent / "teammates-note"
    held.write_text(repo.note(sha) + "\n" + "".join(line + "\n" for line in theirs.lines()))
    repo.git("notes", "--ref=refs/notes/teammate", "add", "-f", "-F", str(held), sha)
    forgotten = env.cli("-C", str(repo.path), "forget", CLAUDE.session, "--yes")
    assert "tombstoned the links in 1 note(s)" in forgotten.stdout
    repo.git("notes", "--ref=refs/notes/hf-traces", "merge", "-s", "cat_sort_uniq", "refs/notes/teammate")
    note = repo.note(sha)
    assert f'"session":"{CLAUDE.session}"' in note.split("hf-trace-meta: ", 1)[1]  # live line is back
    assert "hf-trace-forgotten: " in note

    data = json.loads(env.cli("-C", str(repo.path), "why", "src/app.py:5-6", "--json").stdout)
    (entry,) = data["commits"]
    assert entry["commit"] == sha
    assert [session["session"] for session in entry["sessions"]] == [PI.session]
    (stone,) = entry["forgotten"]
    assert stone["agent"] == "claude" and stone["session_id"] == CLAUDE.session
    assert stone["by"] == "test@example.com" and stone["at"].endswith("Z")
    out = env.cli("-C", str(repo.path), "why", "src/app.py:5-6").stdout
    assert "farewell" in out and "/store/claude/" not in out  # the forgotten trace's URL is not offered
    assert [line for line in out.splitlines() if CLAUDE.session in line] == [
        f"  forgotten claude session {CLAUDE.session} on {stone['at']} by test@example.com"
    ]
