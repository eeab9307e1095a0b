"""`tracekeeper.why`: from lines of a file to the tool call, prompt and explanation that wrote them.

Real git repositories whose files hold exactly what an edit recorded in a fixture transcript
wrote, with trace notes in the documented format (rendered by `notes.TraceLink`) whose URLs
are `file://` copies of the transcript in the store this machine is configured for: a
teammate's machine, where `show.load` finds no daemon queue and reads the store. No daemon is
needed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tracekeeper import show
from tracekeeper import why as why_mod
from tracekeeper.why import WhyError, blame, why
from tracekeeperd import notes
from tracekeeperd.paths import Paths

from .harness import Env, Repo, make_repo

#: The notes' `file://` store is this machine's configured store (conftest.configured_store).
pytestmark = pytest.mark.usefixtures("configured_store")

FIXTURES = Path(__file__).parent / "fixtures"
REF = "refs/notes/hf-traces"

GREET = 'def greet(name: str) -> str:\n    return f"hello, {name}"\n'
FAREWELL = GREET + '\n\ndef farewell(name: str) -> str:\n    return f"goodbye, {name}"\n'
SLUG_V1 = (
    "import re\n\n\ndef slugify(title: str) -> str:\n"
    '    """Lower-case words joined by dashes, for URLs."""\n'
    '    return re.sub(r"[^a-z]+", "-", title.lower()).strip("-")\n'
)
SLUG_V2 = SLUG_V1.replace(
    '    return re.sub(r"[^a-z]+", "-", title.lower()).strip("-")\n',
    '    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "untitled"\n',
)
CONFIG_V1 = (
    "import os\nfrom dataclasses import dataclass\n\n\n@dataclass(frozen=True)\nclass Settings:\n"
    '    """Where the demo server listens."""\n\n    port: str = os.environ.get("PORT", "8000")\n'
)
CONFIG_V2 = CONFIG_V1.replace(
    'port: str = os.environ.get("PORT", "8000")', 'port: int = int(os.environ.get("PORT", "8000"))'
)
CLI_V1 = (
    "import argparse\n\nparser = argparse.ArgumentParser()\n"
    'parser.add_argument("--config")\nargs = parser.parse_args()\n'
)
CLI_V2 = CLI_V1.replace(
    'parser.add_argument("--config")\n',
    'parser.add_argument("--config")\nparser.add_argument("--verbose", action="store_true")\n',
)
PARSE_V1 = (
    "from datetime import datetime\n\n\ndef parse(text: str) -> datetime:\n"
    '    return datetime.strptime(text, "%d/%m")\n'
)
PARSE_V2 = PARSE_V1.replace("%d/%m", "%m/%d")


@dataclass(frozen=True)
class Transcript:
    relpath: str
    agent: str
    session: str


CLAUDE = Transcript(
    "claude/opentraces_claude-linear-edit-real-session.jsonl", "claude", "164b9ad1-4c1b-4602-9102-5276951a1594"
)
PI = Transcript("pi/pi-linear-edit-real-session.jsonl", "pi", "019eb1ff-4699-790c-9a4c-d637d93b8bc7")
CODEX = Transcript(
    "codex/sessions/2026/03/04/rollout-2026-03-04T10-29-58-019cb9a1-5e2f-7c30-9d41-2a6b8c0e1f35.jsonl",
    "codex",
    "019cb9a1-5e2f-7c30-9d41-2a6b8c0e1f35",
)
GEMINI = Transcript(
    "gemini/tmp/demo/chats/session-2026-03-05T14-02-4e5f6a7b.jsonl", "gemini", "4e5f6a7b-8c9d-4e0f-9a1b-2c3d4e5f6a7b"
)
CURSOR = Transcript(
    "cursor/projects/home-dev-src-demo/agent-transcripts/3f2b6c1e-9a47-4d2b-8c1e-5b7d9e0a1c2f.jsonl",
    "cursor",
    "3f2b6c1e-9a47-4d2b-8c1e-5b7d9e0a1c2f",
)
COPILOT = Transcript(
    "copilot/session-state/b0ff98c0-8e01-4b73-bf92-9649b139931b/events.jsonl",
    "copilot",
    "b0ff98c0-8e01-4b73-bf92-9649b139931b",
)


def paths_for(env: Env) -> Paths:
    """A machine with no daemon state: show.load goes to the store the note points at."""
    return Paths(env.root / "run", env.root / "state", env.root / "config", env.root / "data")


def link(env: Env, transcript: Transcript, first: int, last: int) -> notes.TraceLink:
    """The note link the daemon would write for lines first..last of the transcript."""
    store = env.root / "store" / transcript.agent / Path(transcript.relpath).name
    if not store.exists():
        store.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(FIXTURES / transcript.relpath, store)
    data = store.read_bytes()
    size = sum(len(line) + 1 for line in data.split(b"\n")[:last])
    return notes.TraceLink(
        url=store.as_uri(),
        agent=transcript.agent,
        session_id=transcript.session,
        first_line=first,
        last_line=last,
        bytes=size,
        sha256=hashlib.sha256(data[:size]).hexdigest(),
    )


def commit(repo: Repo, message: str, files: dict[str, str], *links: notes.TraceLink) -> str:
    sha = repo.commit_files(files, message)
    if links:
        note = repo.path.parent / f"note-{sha}"
        note.write_text("".join(line + "\n" for item in links for line in item.lines()))
        repo.git("notes", f"--ref={REF}", "add", "-F", str(note), sha)
    return sha


def explain(env: Env, repo: Repo, path: str, lines: tuple[int, int] | None) -> why_mod.Why:
    return why(repo.path, path, lines, paths_for(env), REF)


@dataclass(frozen=True)
class Case:
    transcript: Transcript
    path: str
    before: str | None
    after: str
    slice: tuple[int, int]
    lines: tuple[int, int]
    tool: str
    prompt: str


CASES = [
    Case(
        CLAUDE, "src/app.py", GREET, FAREWELL, (1, 21), (5, 6), "Edit", "In this repo, add a farewell(name: str) helper"
    ),
    Case(PI, "src/app.py", GREET, FAREWELL, (1, 18), (5, 6), "edit", "In this repo, add a farewell(name: str) helper"),
    Case(CODEX, "text.py", None, SLUG_V1, (1, 14), (4, 6), "apply_patch", "add a slugify(title) helper"),
    Case(GEMINI, "config.py", None, CONFIG_V1, (1, 8), (6, 9), "write_file", "add a config.py with a Settings"),
    Case(CURSOR, "cli.py", CLI_V1, CLI_V2, (1, 7), (5, 5), "StrReplace", "add a --verbose flag to cli.py"),
    Case(COPILOT, "parse.py", PARSE_V1, PARSE_V2, (1, 14), (5, 5), "edit", "fix the failing test in test_parse.py"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.transcript.agent)
def test_why_finds_the_edit_and_its_prompt(env: Env, case: Case) -> None:
    repo = make_repo(env)
    human = commit(repo, "start", {case.path: case.before}) if case.before is not None else None
    agent = commit(repo, "agent work", {case.path: case.after}, link(env, case.transcript, *case.slice))
    answer = explain(env, repo, case.path, case.lines)
    (found,) = answer.commits
    assert (found.commit, found.summary, found.path) == (agent, "agent work", case.path)
    (session,) = found.sessions
    assert (session.agent, session.session, session.error) == (case.transcript.agent, case.transcript.session, None)
    assert (session.source, session.verified) == ("store", True)
    assert session.edits, "no edit matched"
    assert session.edits[0].tool == case.tool
    assert session.prompt is not None and session.prompt.startswith(case.prompt)
    assert session.excerpt == session.edits[0].explanation != ""
    if human is not None:
        (start,) = explain(env, repo, case.path, (1, 1)).commits
        assert (start.commit, start.sessions) == (human, ())


def test_a_file_renamed_since_and_lines_changed_by_a_later_commit(env: Env) -> None:
    repo = make_repo(env)
    first = commit(repo, "add slugify", {"text.py": SLUG_V1}, link(env, CODEX, 1, 14))
    repo.git("mv", "text.py", "slug.py")
    second = commit(repo, "move to slug.py", {"slug.py": SLUG_V2}, link(env, CODEX, 15, 25))

    (old,) = explain(env, repo, "slug.py", (4, 4)).commits
    assert (old.commit, old.path, old.lines) == (first, "text.py", ((4, 4),))
    (session,) = old.sessions
    (created,) = session.edits
    assert (created.kind, created.path) == ("create", "text.py")
    assert session.prompt == "add a slugify(title) helper in a new text.py that turns a title into a URL slug"

    (new,) = explain(env, repo, "slug.py", (6, 6)).commits
    assert (new.commit, new.path) == (second, "slug.py")
    (moved,) = new.sessions[0].edits
    assert (moved.kind, moved.path, moved.from_path) == ("patch", "slug.py", "text.py")
    assert new.sessions[0].prompt is not None and new.sessions[0].prompt.startswith("move it to slug.py")

    whole = explain(env, repo, "slug.py", None)
    assert [(c.commit, c.lines) for c in whole.commits] == [(second, ((6, 6),)), (first, ((1, 5),))]
    assert whole.lines is None and whole.path == "slug.py"


def test_only_the_later_commit_answers_for_lines_it_changed_again(env: Env) -> None:
    repo = make_repo(env)
    first = commit(repo, "config", {"config.py": CONFIG_V1}, link(env, GEMINI, 1, 8))
    second = commit(repo, "int port", {"config.py": CONFIG_V2}, link(env, GEMINI, 9, 14))
    (only,) = explain(env, repo, "config.py", (9, 9)).commits
    assert only.commit == second
    (replaced,) = only.sessions[0].edits
    assert (replaced.tool, replaced.kind) == ("replace", "replace")
    assert only.sessions[0].prompt == "PORT arrives as a string; make the port an int"
    both = explain(env, repo, "config.py", (6, 9)).commits
    assert [(c.commit, c.lines) for c in both] == [(second, ((9, 9),)), (first, ((6, 8),))]
    assert [e.tool for e in both[1].sessions[0].edits] == ["write_file"]


def test_the_latest_edit_in_a_slice_is_preferred(env: Env) -> None:
    """One commit for the whole session: write_file, then replace on the same file."""
    repo = make_repo(env)
    commit(repo, "config", {"config.py": CONFIG_V2}, link(env, GEMINI, 1, 14))
    (port,) = explain(env, repo, "config.py", (9, 9)).commits
    assert [e.tool for e in port.sessions[0].edits] == ["replace"]  # write_file wrote `port: str`
    (whole,) = explain(env, repo, "config.py", None).commits
    assert [e.tool for e in whole.sessions[0].edits] == ["replace", "write_file"]
    assert whole.sessions[0].prompt == "PORT arrives as a string; make the port an int"


def test_a_commit_with_two_sessions(env: Env) -> None:
    repo = make_repo(env)
    commit(repo, "start", {"src/app.py": GREET})
    sha = commit(repo, "farewell", {"src/app.py": FAREWELL}, link(env, CLAUDE, 1, 21), link(env, PI, 1, 18))
    (found,) = explain(env, repo, "src/app.py", (5, 6)).commits
    assert found.commit == sha
    assert {s.agent: s.edits[0].tool for s in found.sessions} == {"claude": "Edit", "pi": "edit"}
    prompts = {s.agent: s.prompt for s in found.sessions}
    assert prompts["claude"] is not None and "returns 'goodbye, <name>'" in prompts["claude"]
    assert prompts["pi"] is not None and "run a focused check" in prompts["pi"]


def test_git_blame_ignore_revs_is_honoured(env: Env) -> None:
    repo = make_repo(env)
    commit(repo, "start", {"src/app.py": GREET})
    agent = commit(repo, "farewell", {"src/app.py": FAREWELL}, link(env, CLAUDE, 1, 21))
    reformatted = FAREWELL.replace('    return f"goodbye, {name}"', '    return  f"goodbye, {name}"  ')
    formatter = commit(repo, "reformat", {"src/app.py": reformatted})

    (plain,) = explain(env, repo, "src/app.py", (6, 6)).commits
    assert (plain.commit, plain.sessions) == (formatter, ())

    (repo.path / ".git-blame-ignore-revs").write_text(f"# formatting\n{formatter}\n")
    (skipped,) = explain(env, repo, "src/app.py", (6, 6)).commits
    assert skipped.commit == agent
    assert skipped.sessions[0].edits[0].tool == "Edit"  # whitespace does not hide the edit's line

    # blame.ignoreRevsFile is git's own setting: honoured without the conventional file.
    (repo.path / ".git-blame-ignore-revs").rename(repo.path / ".formatting-revs")
    repo.git("config", "blame.ignoreRevsFile", ".formatting-revs")
    assert [c.commit for c in explain(env, repo, "src/app.py", (6, 6)).commits] == [agent]


def test_lines_no_edit_wrote_fall_back_to_the_slice(env: Env) -> None:
    repo = make_repo(env)
    commit(repo, "slugify", {"text.py": SLUG_V1, "NOTES.txt": "slugs are lower-case\n"}, link(env, CODEX, 1, 14))
    (found,) = explain(env, repo, "NOTES.txt", None).commits
    (session,) = found.sessions
    assert session.edits == ()
    assert session.prompt == "add a slugify(title) helper in a new text.py that turns a title into a URL slug"
    assert session.excerpt.startswith("Added `slugify()` in text.py")


def test_to_json_has_the_issues_shape(env: Env) -> None:
    repo = make_repo(env)
    sha = commit(repo, "add slugify", {"text.py": SLUG_V1}, link(env, CODEX, 1, 14))
    data = explain(env, repo, "text.py", (4, 6)).to_json()
    assert set(data) == {"path", "lines", "commits"}
    assert (data["path"], data["lines"]) == ("text.py", [4, 6])
    (entry,) = data["commits"]
    assert set(entry) == {"commit", "summary", "sessions", "forgotten"}
    assert entry["forgotten"] == []  # tombstones of `tracekeeper forget`: none here
    assert (entry["commit"], entry["summary"]) == (sha, "add slugify")
    (session,) = entry["sessions"]
    assert set(session) == {"agent", "session", "url", "prompt", "edits", "excerpt"}
    assert session["url"].startswith("file://")
    (edited,) = session["edits"]
    assert edited["tool"] == "apply_patch" and edited["kind"] == "create" and edited["path"] == "text.py"
    assert edited["new_text"] == SLUG_V1
    assert explain(env, repo, "text.py", None).to_json()["lines"] is None


def test_blame_groups_lines_by_commit_and_skips_uncommitted_ones(env: Env) -> None:
    repo = make_repo(env)
    first = commit(repo, "one", {"f.txt": "alpha\nbeta\ngamma\n"})
    second = commit(repo, "two", {"f.txt": "alpha\nBETA\ngamma\ndelta\n"})
    (repo.path / "f.txt").write_text("alpha\nBETA\ngamma\ndelta\nnot committed\n")
    blamed = blame(repo.path, "f.txt")
    assert [(b.commit, b.lines, b.text) for b in blamed] == [
        (second, ((2, 2), (4, 4)), ("BETA", "delta")),
        (first, ((1, 1), (3, 3)), ("alpha", "gamma")),
    ]
    # A path relative to a subdirectory, or absolute, names the same file.
    (repo.path / "sub").mkdir()
    assert blame(repo.path / "sub", "../f.txt", (2, 2))[0].commit == second
    assert blame(Path("/"), str(repo.path / "f.txt"), (1, 1))[0].commit == first
    # git C-quotes unusual names in the porcelain output; the name in the commit comes back as is.
    accented = commit(repo, "accents", {"café/naïve.py": "x = 1\n"})
    assert [(b.commit, b.path) for b in blame(repo.path, "café/naïve.py")] == [(accented, "café/naïve.py")]


def test_an_unreadable_transcript_is_reported_not_raised(env: Env) -> None:
    repo = make_repo(env)
    gone = link(env, CODEX, 1, 14)
    Path(gone.url.removeprefix("file://")).unlink()
    commit(repo, "add slugify", {"text.py": SLUG_V1}, gone)
    (found,) = explain(env, repo, "text.py", None).commits
    (session,) = found.sessions
    # The local store's own word for a trace that is gone (stores.locate -> LocalStore.fetch).
    assert session.error is not None and session.error.startswith(f"the trace is not in {env.root}")
    assert (session.prompt, session.edits) == (None, ())


def test_errors_are_one_line(env: Env) -> None:
    repo = make_repo(env)
    commit(repo, "one", {"f.txt": "a\nb\n"})
    (repo.path / "untracked.txt").write_text("x\n")
    outside = env.root / "elsewhere.txt"
    outside.write_text("x\n")
    cases = [
        (repo.path, "untracked.txt", None, "cannot blame untracked.txt: no such path 'untracked.txt' in HEAD"),
        (repo.path, "f.txt", (5, 9), "cannot blame f.txt: file f.txt has only 2 lines"),
        (repo.path, "f.txt", (3, 1), "bad line range 3-1"),
        (repo.path, str(outside), None, f"{env.root} is not in a git repository"),  # the file's own repository
        (env.root, "src/app/nowhere/x.txt", None, "cannot blame nowhere/x.txt: no such path 'nowhere/x.txt' in HEAD"),
    ]
    for where, path, lines, message in cases:
        with pytest.raises(WhyError) as caught:
            why(where, path, lines, paths_for(env), REF)
        assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_repository_whose_directory_name_ends_in_a_space(env: Env) -> None:
    """git prints the top level followed by a newline only; stripping more would name another
    directory and call every file in it "outside the repository"."""
    repo = make_repo(env, "app ")
    sha = commit(repo, "farewell", {"src/app.py": FAREWELL}, link(env, CLAUDE, 1, 21))
    answer = explain(env, repo, "src/app.py", (5, 6))
    assert answer.path == "src/app.py"
    assert [c.commit for c in answer.commits] == [sha]


# --- reading only the slice (and a look-back for its prompt) ---------------------------------------


def _claude_lines() -> list[bytes]:
    return (FIXTURES / CLAUDE.relpath).read_bytes().splitlines()


def _busywork(count: int, tag: str) -> list[bytes]:
    """``count`` Bash calls and their results in Claude Code's record shapes, with no prompt between."""
    lines: list[bytes] = []
    for n in range(count):
        call = f"toolu_{tag}{n:05d}"
        use = {"type": "tool_use", "id": call, "name": "Bash", "input": {"command": f"pytest -k case{n}"}}
        result = {"type": "tool_result", "tool_use_id": call, "content": f"{n} passed"}
        for kind, message in (
            ("assistant", {"id": f"msg_{tag}{n:05d}", "role": "assistant", "content": [use]}),
            ("user", {"role": "user", "content": [result]}),
        ):
            record = {
                "type": kind,
                "message": message,
                "sessionId": CLAUDE.session,
                "timestamp": "2026-06-05T05:00:00Z",
            }
            lines.append(json.dumps(record).encode())
    return lines


def _claude_link(env: Env, name: str, lines: list[bytes], first: int, last: int) -> notes.TraceLink:
    """A note link for lines first..last of a made-up Claude Code session ``lines`` in the store."""
    store = env.root / "store" / "claude" / name
    store.parent.mkdir(parents=True, exist_ok=True)
    data = b"".join(line + b"\n" for line in lines)
    store.write_bytes(data)
    size = sum(len(line) + 1 for line in lines[:last])
    return notes.TraceLink(
        url=store.as_uri(),
        agent="claude",
        session_id=CLAUDE.session,
        first_line=first,
        last_line=last,
        bytes=size,
        sha256=hashlib.sha256(data[:size]).hexdigest(),
    )


def test_a_prompt_far_before_the_slice_is_still_the_edits_prompt(env: Env) -> None:
    # The fixture's prompt (line 1) and Read, then 1,200 tool lines with no prompt, then its Edit:
    # the slice starts at the Edit, far beyond the first look-back, which must keep widening.
    lines = _claude_lines()
    session = lines[:6] + _busywork(600, "far") + lines[6:]
    edit_line = 6 + 1200 + 1
    repo = make_repo(env)
    commit(repo, "greet", {"src/app.py": GREET})
    commit(repo, "farewell", {"src/app.py": FAREWELL}, _claude_link(env, "far.jsonl", session, edit_line, len(session)))
    (found,) = explain(env, repo, "src/app.py", (5, 6)).commits
    (answer,) = found.sessions
    assert answer.edits and answer.edits[0].tool == "Edit" and answer.edits[0].line == edit_line
    assert answer.prompt is not None and answer.prompt.startswith("In this repo, add a farewell(name: str) helper")
    assert answer.excerpt == answer.edits[0].explanation != ""
    # The same answer as a slice holding the prompt itself gives.
    whole = _claude_link(env, "whole.jsonl", session, 1, len(session))
    repo2 = make_repo(env, "second")
    commit(repo2, "greet", {"src/app.py": GREET})
    commit(repo2, "farewell", {"src/app.py": FAREWELL}, whole)
    (again,) = explain(env, repo2, "src/app.py", (5, 6)).commits
    assert (again.sessions[0].prompt, again.sessions[0].excerpt) == (answer.prompt, answer.excerpt)


def test_a_slice_that_starts_with_its_prompt_is_read_without_the_session_before_it(env: Env) -> None:
    # 4,000 lines of an earlier task, then the fixture's prompt and Edit as the commit's slice.
    earlier = _busywork(2000, "old")
    session = earlier + _claude_lines()
    first = len(earlier) + 1
    link_ = _claude_link(env, "long.jsonl", session, first, len(session))
    repo = make_repo(env)
    commit(repo, "greet", {"src/app.py": GREET})
    sha = commit(repo, "farewell", {"src/app.py": FAREWELL}, link_)
    trail = show.load(paths_for(env), sha, link_)
    conversation = why_mod.slice_conversation(trail)
    assert conversation is not None
    assert first - why_mod.LOOK_BACK <= conversation.start <= first  # not line 1
    assert [edit.tool for edit in conversation.edits] == ["Edit"]
    assert conversation.edits[0].prompt.startswith("In this repo, add a farewell(name: str) helper")
    (found,) = explain(env, repo, "src/app.py", (5, 6)).commits
    assert found.sessions[0].prompt == conversation.edits[0].prompt


def test_an_edit_block_repeated_from_before_the_window_is_not_the_slices_edit(env: Env) -> None:
    # Claude Code's parser drops a block repeated under the same message id (claude.py): a copy of
    # the fixture's Edit record in a later slice (which starts with its own prompt, so the window
    # needs no look-back) is no edit of that slice, though a reading that starts at the window
    # would take it for a new one.
    lines = _claude_lines()
    again = {"type": "user", "message": {"role": "user", "content": "run the tests again"}, "sessionId": CLAUDE.session}
    later = [json.dumps(again).encode(), *_busywork(5, "late"), lines[6]]
    session = lines + _busywork(200, "mid") + later
    link_ = _claude_link(env, "repeat.jsonl", session, len(session) - len(later) + 1, len(session))
    repo = make_repo(env)
    commit(repo, "greet", {"src/app.py": GREET})
    commit(repo, "farewell", {"src/app.py": FAREWELL}, link_)
    (found,) = explain(env, repo, "src/app.py", (5, 6)).commits
    (answer,) = found.sessions
    assert answer.edits == ()
    assert answer.prompt == "run the tests again"
