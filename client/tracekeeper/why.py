"""From lines of a file to the conversation that wrote them (the library behind `tracekeeper why`).

`git blame` (honouring `.git-blame-ignore-revs`) names the commits that last changed the lines;
each commit's trace note names its sessions and the slice of each transcript that led to it;
that slice is loaded exactly as `tracekeeper show` loads it (agent transcript, daemon snapshot,
then the store, each checked against the note's sha256); inside the slice, the edit tool calls
that wrote those lines are found (agents/edits.py), with the user prompt that led to them and
the assistant's explanation. When no edit in a slice matches (the lines were written by a shell
command, or by hand in the same commit), the session still answers with the slice's prompt.

Nothing here prints: the CLI, the MCP tool and the web page render the `Why` this returns, and
`Why.to_json()` is the `--json` shape. Transcript text in it is hostile input: renderers must
escape it for their medium.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cmp_to_key
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracekeeperd import git, notes
from tracekeeperd.agents import DETECT_LINES, Edit, TranscriptFormat, Turn, detect, get_format
from tracekeeperd.agents.base import from_turns
from tracekeeperd.agents.edits import match_edits
from tracekeeperd.errors import GitError, TracekeeperError

from . import show
from .errors import ClientError

if TYPE_CHECKING:
    from tracekeeperd.paths import Paths
    from tracekeeperd.redact import Redactor

#: Where `git blame` looks for revisions to skip, by the convention GitHub and GitLab follow.
IGNORE_REVS_FILE = ".git-blame-ignore-revs"
#: Blaming a long-lived file walks its whole history; git's usual 30 s is not enough for that.
BLAME_TIMEOUT = 300.0
#: Lines read before a slice at first, to find the prompt that led to it; doubled until one is found.
LOOK_BACK = 64
_HEX = frozenset("0123456789abcdef")


class WhyError(ClientError):
    """A path, range or repository that cannot be explained; the message is one line."""


@dataclass(frozen=True)
class Blamed:
    """The lines of the file that one commit last changed, as `git blame` attributes them.

    ``path`` is the file's name in that commit (blame follows renames), ``lines`` the
    1-based inclusive ranges of those lines in the current file, ``text`` their content
    (identical in that commit: that is what blame means) and ``time`` the committer time.
    """

    commit: str
    path: str
    lines: tuple[tuple[int, int], ...]
    text: tuple[str, ...]
    summary: str
    time: int


@dataclass(frozen=True)
class SessionWhy:
    """One linked session's answer: the edits in its slice that wrote the lines, and why.

    ``prompt`` is the user turn that led to the latest matched edit, or (no edit matched)
    the last prompt up to the end of the slice; ``excerpt`` is the assistant's explanation
    around that edit, or the slice's last assistant text. ``error`` says why the transcript
    could not be read (then there is nothing else); ``source``/``verified`` are show's.
    """

    agent: str
    session: str
    url: str
    prompt: str | None
    edits: tuple[Edit, ...]
    excerpt: str
    source: str | None = None
    verified: bool = False
    error: str | None = None


@dataclass(frozen=True)
class CommitWhy:
    commit: str
    summary: str
    path: str
    lines: tuple[tuple[int, int], ...]
    sessions: tuple[SessionWhy, ...]
    #: Sessions `tracekeeper forget` removed from this commit's note (their tombstones).
    forgotten: tuple[notes.Tombstone, ...] = ()


@dataclass(frozen=True)
class Why:
    """The answer for a file or a range of its lines: commits newest first."""

    path: str
    lines: tuple[int, int] | None
    commits: tuple[CommitWhy, ...] = field(default_factory=tuple)
    #: How many commits blame named in all (`commits` may be one page of them: why's offset/limit).
    total: int = 0

    def to_json(self) -> dict[str, Any]:
        """The `--json` object: {"path", "lines", "commits": [{"commit", "summary", "sessions": [...],
        "forgotten": [...]}]}."""
        return {
            "path": self.path,
            "lines": list(self.lines) if self.lines else None,
            "commits": [
                {
                    "commit": commit.commit,
                    "summary": commit.summary,
                    "sessions": [
                        {
                            "agent": session.agent,
                            "session": session.session,
                            "url": session.url,
                            "prompt": session.prompt,
                            "edits": [edit_json(edit) for edit in session.edits],
                            "excerpt": session.excerpt,
                        }
                        for session in commit.sessions
                    ],
                    "forgotten": [
                        {"agent": t.agent, "session_id": t.session_id, "url": t.url, "at": t.at, "by": t.by}
                        for t in commit.forgotten
                    ],
                }
                for commit in self.commits
            ],
        }


def edit_json(edit: Edit) -> dict[str, Any]:
    return {
        "tool": edit.tool,
        "kind": edit.kind,
        "path": edit.path,
        "from_path": edit.from_path,
        "line": edit.line,
        "call_id": edit.call_id,
        "old_text": edit.old_text,
        "new_text": edit.new_text,
    }


# --- blame ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Where:
    git_dir: Path
    top: Path
    file: Path  # absolute
    relative: str  # to top, POSIX


def _toplevel(directory: Path) -> Path:
    """The working tree's root; `git --git-dir` alone would take the current directory for it."""
    try:
        top = git.toplevel(directory)
    except GitError as exc:
        raise WhyError(f"cannot run git in {directory}: {exc}") from None
    if top is None:
        raise WhyError(f"{directory} is not in a git working tree")
    return top


def _where(repo: Path, path: str) -> _Where:
    """The repository holding ``path`` (absolute, or relative to ``repo``) and the path in it."""
    file = Path(os.path.abspath(repo / path))
    # The file may be gone from the working tree (deleted, or a typo): ask its nearest directory.
    start = next((parent for parent in file.parents if parent.is_dir()), repo)
    try:
        git_dir = git.find_git_dir(start)
    except TracekeeperError as exc:
        raise WhyError(str(exc)) from None
    top = _toplevel(start).resolve()
    try:
        relative = file.relative_to(top)
    except ValueError:
        resolved = file.resolve()  # the repository was named through a symlink
        try:
            relative = resolved.relative_to(top)
        except ValueError:
            raise WhyError(f"{path} is outside the repository {top}") from None
        file = resolved
    return _Where(git_dir, top, file, relative.as_posix())


def _unquote(name: str) -> str:
    """A path as git prints it: C-quoted (octal bytes) when it has unusual characters."""
    if len(name) < 2 or not (name.startswith('"') and name.endswith('"')):
        return name
    raw = name[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape")
    return raw.encode("latin-1", "replace").decode("utf-8", "replace")


def _ranges(numbers: Sequence[int]) -> tuple[tuple[int, int], ...]:
    ranges: list[tuple[int, int]] = []
    for number in sorted(numbers):
        if ranges and number == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], number)
        else:
            ranges.append((number, number))
    return tuple(ranges)


@dataclass
class _Group:
    commit: str
    path: str
    summary: str
    time: int
    numbers: list[int] = field(default_factory=list)
    text: list[str] = field(default_factory=list)


def parse_line_porcelain(output: str) -> list[Blamed]:
    """Group `git blame --line-porcelain` output by (commit, file name in that commit).

    With ``--line-porcelain`` every line carries its commit's full header (git's
    Documentation/git-blame.adoc, "THE PORCELAIN FORMAT"), including ``filename``, so a
    line's original name never depends on which line mentioned its commit first.
    """
    groups: dict[tuple[str, str], _Group] = {}
    header: dict[str, str] = {}
    commit, final = "", 0
    for line in output.split("\n"):
        if line.startswith("\t"):
            if commit.strip("0"):  # all zeros: not committed yet
                path = _unquote(header.get("filename", ""))
                group = groups.setdefault(
                    (commit, path),
                    _Group(commit, path, header.get("summary", ""), int(header.get("committer-time", "0") or 0)),
                )
                group.numbers.append(final)
                group.text.append(line[1:])
            commit, header = "", {}
            continue
        first, _, rest = line.partition(" ")
        if not commit and len(first) in (40, 64) and _HEX.issuperset(first):  # SHA-1 or SHA-256
            numbers = rest.split()
            commit, final = first, int(numbers[1]) if len(numbers) > 1 else 0
        elif commit:
            header[first] = rest
    blamed = [Blamed(g.commit, g.path, _ranges(g.numbers), tuple(g.text), g.summary, g.time) for g in groups.values()]
    blamed.sort(key=lambda b: (-b.time, b.lines[0][0]))
    return blamed


def _blame(where: _Where, lines: tuple[int, int] | None) -> list[Blamed]:
    args = ["blame", "--line-porcelain"]
    # git honours blame.ignoreRevsFile itself; the conventional file is honoured when present.
    ignore = where.top / IGNORE_REVS_FILE
    if ignore.is_file():
        args += ["--ignore-revs-file", str(ignore)]
    if lines is not None:
        args += ["-L", f"{lines[0]},{lines[1]}"]
    args += ["--", where.relative]
    # From the top of the working tree: git reads a relative blame.ignoreRevsFile (and the
    # path) from the current directory, and does not move there when started outside it.
    try:
        proc = git.run(
            where.git_dir, ["-C", str(where.top), *args], work_tree=where.top, timeout=BLAME_TIMEOUT, check=False
        )
    except TracekeeperError as exc:  # git missing, or the timeout
        raise WhyError(f"cannot blame {where.relative}: {exc}") from None
    if proc.returncode != 0:
        stderr = proc.stderr.decode(errors="replace").strip().splitlines()
        reason = stderr[-1].removeprefix("fatal: ") if stderr else f"git blame exited {proc.returncode}"
        raise WhyError(f"cannot blame {where.relative}: {reason}")
    return _newest_first(where.git_dir, parse_line_porcelain(proc.stdout.decode(errors="replace")))


def _newest_first(git_dir: Path, blamed: list[Blamed]) -> list[Blamed]:
    """Order commits made in the same second (a rebase, a script) by ancestry, not by line."""

    def is_ancestor(older: str, newer: str) -> bool:
        return git.run(git_dir, ["merge-base", "--is-ancestor", older, newer], check=False).returncode == 0

    def newer_first(a: Blamed, b: Blamed) -> int:
        if a.time != b.time:
            return b.time - a.time
        if a.commit != b.commit and is_ancestor(b.commit, a.commit):
            return -1
        if a.commit != b.commit and is_ancestor(a.commit, b.commit):
            return 1
        return a.lines[0][0] - b.lines[0][0]

    return sorted(blamed, key=cmp_to_key(newer_first))


def blame(repo: Path, path: str, lines: tuple[int, int] | None = None) -> list[Blamed]:
    """Who last changed ``lines`` (1-based, inclusive; None: the whole file) of ``path``, newest first.

    ``path`` is absolute or relative to ``repo`` (a directory in the working tree). The
    working tree's version is blamed, so line numbers are the ones in the user's editor;
    lines not committed yet are left out.
    """
    _check_range(lines)
    return _blame(_where(repo, path), lines)


def _check_range(lines: tuple[int, int] | None) -> None:
    if lines is not None and not (1 <= lines[0] <= lines[1]):
        raise WhyError(f"bad line range {lines[0]}-{lines[1]}: lines start at 1 and the end must not precede the start")


# --- sessions ------------------------------------------------------------------------------------


def _last(turns: Sequence[Turn], kind: str, first_line: int = 0) -> str | None:
    return next((turn.text for turn in reversed(turns) if turn.kind == kind and turn.line >= first_line), None)


@dataclass(frozen=True)
class SliceConversation:
    """What `why` reads of one session: its turns from line ``start`` to the slice's last line.

    ``start`` is 1 when the whole session up to the slice was parsed (a replayed format, an
    unverified or oddly cut copy, or a prompt that lies far back); otherwise a line before the
    slice far enough back that a user prompt precedes the slice's first edit call, so every
    edit's prompt and explanation are what a reading from line 1 gives.
    """

    fmt: TranscriptFormat
    turns: tuple[Turn, ...]
    edits: tuple[Edit, ...]  # those in the slice
    start: int


def _edits(fmt: TranscriptFormat, turns: Sequence[Turn], numbered: Sequence[tuple[int, bytes]]) -> list[Edit]:
    # The format's edits are from_turns(turns, edit_tools): take them from the turns already read.
    return list(from_turns(turns, fmt.edit_tools) if fmt.edit_tools else fmt.edits(numbered))


def _prompt_leads(turns: Sequence[Turn], fmt: TranscriptFormat, first_line: int) -> bool:
    """Whether a user turn comes before the slice's first edit call (or, with none, at all)."""
    for turn in turns:
        if turn.kind == "user":
            return True
        if turn.kind == "tool_call" and turn.line >= first_line and (turn.name or "") in fmt.edit_tools:
            return False
    return False


def _line_start(data: bytes, end: int, count: int) -> int:
    """The offset of the line ``count`` lines before the one ending at ``end`` (its newline)."""
    position = end
    for _ in range(count):
        position = data.rfind(b"\n", 0, position)
        if position < 0:
            return 0
    return position + 1


def _seen_before(data: bytes, end: int, call_id: str) -> bool:
    forms = {call_id.encode(), json.dumps(call_id)[1:-1].encode()}
    return any(data.find(form, 0, end) >= 0 for form in forms)


def _windowed(fmt: TranscriptFormat, head: bytes, link: notes.TraceLink) -> SliceConversation | None:
    """The slice parsed with a look-back that doubles until a prompt leads it; None: read it all.

    ``head`` is the verified bytes up to the slice's end, holding exactly ``last_line`` lines.
    Each attempt re-parses its window from its first line (parsers carry state forward): the
    look-backs parsed add up to at most twice the last one, plus the slice once per attempt.
    """
    first, last = link.first_line, link.last_line
    back = LOOK_BACK
    start, offset = last + 1, len(head)
    while True:
        target = max(1, first - back)
        offset = _line_start(head, offset - 1, start - target) if start > target else offset
        start = target
        lines = head[offset:-1].split(b"\n")
        numbered = [(n, line.removesuffix(b"\r")) for n, line in enumerate(lines, start=start)]
        turns = list(fmt.turns(numbered))
        if start == 1 or _prompt_leads(turns, fmt, first):
            break
        back *= 2
    in_slice = [edit for edit in _edits(fmt, turns, numbered) if first <= edit.line <= last]
    if start > 1 and any(edit.call_id and _seen_before(head, offset, edit.call_id) for edit in in_slice):
        return None  # a call repeated from before the window (a de-duplicated block): read it all
    return SliceConversation(fmt, tuple(turns), tuple(in_slice), start)


def slice_conversation(trail: show.Trail) -> SliceConversation | None:
    """The turns `why` needs of a trail, and the slice's edits; None for an unknown format.

    A line-local format with a verified copy is parsed from just before the slice (see
    ``_windowed``); anything else (Gemini's replayed log or legacy `.json`, a copy that does
    not match the note) from line 1 to the slice's end, once.
    """
    link = trail.link
    head = trail.data[: link.bytes]
    if trail.verified and head.endswith(b"\n") and head.count(b"\n") == link.last_line >= link.first_line >= 1:
        detected = detect(Path(f"{link.agent}-{link.session_id}.jsonl"), _first_lines(trail.data, DETECT_LINES))
        if detected is not None and detected.line_local:
            windowed = _windowed(detected, head, link)
            if windowed is not None:
                return windowed
    fmt, numbered, _ = trail.conversation()
    # Up to what the commit saw; a transcript too short to detect is read as its agent's format.
    numbered = numbered[: link.last_line]
    fmt = fmt or get_format(link.agent)
    if fmt is None:
        return None
    turns = list(fmt.turns(numbered))
    in_slice = [edit for edit in _edits(fmt, turns, numbered) if link.first_line <= edit.line <= link.last_line]
    return SliceConversation(fmt, tuple(turns), tuple(in_slice), 1)


def _first_lines(data: bytes, count: int) -> list[bytes]:
    """The first ``count`` complete lines, as `Trail.conversation` hands them to `detect`."""
    position = -1
    for _ in range(count):
        found = data.find(b"\n", position + 1)
        if found < 0:
            break
        position = found
    return [line.removesuffix(b"\r") for line in data[: position + 1].split(b"\n")[:-1]] if position >= 0 else []


def explain_session(
    paths: Paths,
    blamed: Blamed,
    link: notes.TraceLink,
    file_paths: Sequence[str],
    redactor: Redactor | Callable[[], Redactor] | None = None,
) -> SessionWhy:
    """One session's part in ``blamed``: the edits of its slice that wrote those lines."""
    try:
        trail = show.load(paths, blamed.commit, link, redactor)
    except show.StoreUnreadable:
        raise  # no session of this store can be read: say so once, with what to do
    except show.ShowError as exc:
        return SessionWhy(link.agent, link.session_id, link.url, None, (), "", error=str(exc))
    conversation = slice_conversation(trail)
    if conversation is None:
        return SessionWhy(
            link.agent, link.session_id, link.url, None, (), "", trail.source, trail.verified, "unknown format"
        )
    matched = match_edits(conversation.edits, blamed.text, file_paths)
    if matched:
        latest = matched[0]
        return SessionWhy(
            link.agent,
            link.session_id,
            link.url,
            latest.prompt or None,
            tuple(matched),
            latest.explanation,
            trail.source,
            trail.verified,
        )
    turns = conversation.turns
    return SessionWhy(
        link.agent,
        link.session_id,
        link.url,
        _last(turns, "user"),
        (),
        _last(turns, "assistant", link.first_line) or "",
        trail.source,
        trail.verified,
    )


def why(
    repo: Path,
    path: str,
    lines: tuple[int, int] | None,
    paths: Paths,
    notes_ref: str,
    *,
    redactor: Redactor | Callable[[], Redactor] | None = None,
    offset: int = 0,
    limit: int | None = None,
) -> Why:
    """Explain ``lines`` of ``path`` (None: the whole file): each commit, newest first, with its sessions.

    A commit without a trace note is listed with no sessions (a human wrote those lines,
    or no session was recorded). Sessions whose slice has a matching edit come first.
    ``redactor`` may be a function that builds one: only a local copy of a session needs it.
    ``offset``/``limit`` explain only those of the blamed commits (blame is cheap, reading
    sessions is not: the MCP server pages a long history this way); ``total`` counts them all.
    """
    _check_range(lines)
    where = _where(repo, path)
    commits: list[CommitWhy] = []
    every = _blame(where, lines)
    for blamed in every[offset : None if limit is None else offset + limit]:
        text = notes.read(where.git_dir, notes_ref, blamed.commit)
        file_paths = sorted({blamed.path, where.relative})
        sessions = [explain_session(paths, blamed, link, file_paths, redactor) for link in notes.live_links(text)]
        sessions.sort(key=lambda session: not session.edits)
        stones = tuple(notes.parse_tombstones(text))
        commits.append(CommitWhy(blamed.commit, blamed.summary, blamed.path, blamed.lines, tuple(sessions), stones))
    return Why(where.relative, lines, tuple(commits), len(every))
