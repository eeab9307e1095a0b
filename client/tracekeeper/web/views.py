"""What each page of `tracekeeper web` shows, as plain data for the templates.

Everything here is blocking (git, file reads, parsing) and runs on a worker thread; nothing
here knows HTTP. Transcript text is hostile: it leaves here as ``Clip`` values whose parts are
plain strings with control characters spelled out (safetext.visible); the templates escape
them (Jinja2 autoescape), so no transcript byte is ever markup. Long texts are cut, with the
rest folded away or, past a size a page should not carry, behind a link to the plain text.
Sessions are read a page at a time: a page is a run of transcript lines bounded by a count
and a byte budget, so a 100 MB session costs a page, not the whole file.
"""

from __future__ import annotations

import difflib
import posixpath
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from tracekeeperd import git, notes
from tracekeeperd.agents import Edit, Turn
from tracekeeperd.config import normalize_notes_ref
from tracekeeperd.errors import TracekeeperError

from .. import show
from ..errors import ClientError
from ..safetext import visible
from .loader import Blob, Loader, Slice

if TYPE_CHECKING:
    from ..search import SearchHit
    from ..why import Why

#: A page of a session: at most this many transcript lines, and it ends after the line that
#: crosses the byte budget (so one huge line is a page of its own).
PAGE_LINES = 200
PAGE_BYTES = 1 << 20
#: Shown of one text before "show more"; the rest folded up to FOLD_CHARS, past that a link.
HEAD_CHARS = 3000
HEAD_LINES = 60
FOLD_CHARS = 100_000
#: Commits on one page of the timeline.
TIMELINE_PAGE = 30
PROMPT_CHARS = 240
#: Lines of a file the blame page shows.
BLAME_LINES = 20_000


class WebError(ClientError):
    """Something a page cannot show (no such commit, session or file); shown as the page."""

    def __init__(self, message: str, status: int = 404) -> None:
        super().__init__(message)
        self.status = status


# --- text ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Clip:
    """A text cut for a page: ``head`` is shown, ``rest`` folded, ``hidden`` chars behind ``more``."""

    head: str
    rest: str = ""
    hidden: int = 0
    more: str | None = None


def clip(text: str, *, more: str | None = None, chars: int = HEAD_CHARS, lines: int = HEAD_LINES) -> Clip:
    cut = min(len(text), chars)
    newline = -1
    for _ in range(lines):
        newline = text.find("\n", newline + 1, cut)
        if newline < 0:
            break
    else:
        cut = newline
    if cut >= len(text):
        return Clip(visible(text, multiline=True))
    rest = text[cut:]
    if len(rest) <= FOLD_CHARS:
        return Clip(visible(text[:cut], multiline=True), visible(rest, multiline=True), len(rest))
    return Clip(visible(text[:cut], multiline=True), "", len(rest), more)


def one_line(text: str, limit: int = PROMPT_CHARS) -> str:
    text = " ".join(text.split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return visible(text)


# --- conversation --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiffLine:
    kind: Literal["add", "del", "ctx", "hunk"]
    text: str


@dataclass(frozen=True)
class EditView:
    path: str
    kind: str
    lines: tuple[DiffLine, ...]
    hidden: int


@dataclass
class Item:
    """One step of the conversation as shown: a message, a folded tool call, a marker."""

    kind: Literal["user", "assistant", "system", "tool", "commit"]
    line: int
    text: Clip
    name: str = ""
    when: str = ""
    output: Clip | None = None
    output_line: int = 0
    edits: list[EditView] = field(default_factory=list)
    commit: str = ""  # "commit" markers: the commit made after this line
    anchor: bool = False  # the first item of its transcript line carries the #L<line> anchor


DIFF_LINES = 400


def edit_view(edit: Edit) -> EditView:
    old = edit.old_text.splitlines()
    new = edit.new_text.splitlines()
    rows: list[DiffLine] = []
    if edit.kind == "replace":
        for row in list(difflib.unified_diff(old, new, lineterm="", n=3))[2:]:
            if row.startswith("@@"):
                rows.append(DiffLine("hunk", row))
            elif row.startswith("+"):
                rows.append(DiffLine("add", row[1:]))
            elif row.startswith("-"):
                rows.append(DiffLine("del", row[1:]))
            else:
                rows.append(DiffLine("ctx", row[1:]))
    else:
        rows += [DiffLine("del", line) for line in old]
        rows += [DiffLine("add", line) for line in new]
    shown = tuple(DiffLine(row.kind, visible(row.text[:2000])) for row in rows[:DIFF_LINES])
    return EditView(visible(edit.path), edit.kind, shown, max(0, len(rows) - DIFF_LINES))


def _stamp(when: datetime | None) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S") if when else ""


def conversation(
    turns: Iterable[Turn], edits: Iterable[Edit], more_url: str, marks: dict[int, list[str]] | None = None
) -> list[Item]:
    """Turns as items: each tool result folded under its call (paired by call id, or the call
    just before it), edits attached to their calls, and commit markers after their last line."""
    by_call: dict[str, list[Edit]] = {}
    by_line: dict[int, list[Edit]] = {}
    for edit in edits:
        if edit.call_id:
            by_call.setdefault(edit.call_id, []).append(edit)
        else:
            by_line.setdefault(edit.line, []).append(edit)
    items: list[Item] = []
    calls: dict[str, Item] = {}
    marks = dict(marks or {})
    last_call: Item | None = None

    def flush_marks(up_to: int) -> None:
        for line in sorted(n for n in marks if n < up_to):
            items.extend(Item("commit", line, Clip(""), commit=sha) for sha in marks.pop(line))

    for turn in turns:
        flush_marks(turn.line)
        more = f"{more_url}{turn.line}"
        text = clip(turn.text.strip(), more=more)
        if turn.kind == "tool_call":
            item = Item("tool", turn.line, text, visible(turn.name or "tool"), _stamp(turn.timestamp))
            found = by_call.get(turn.call_id or "", []) or by_line.get(turn.line, [])
            item.edits = [edit_view(edit) for edit in found]
            if turn.call_id:
                calls[turn.call_id] = item
            last_call = item
            items.append(item)
        elif turn.kind == "tool_result":
            target = calls.get(turn.call_id or "") if turn.call_id else last_call
            if target is not None and target.output is None:
                target.output = text
                target.output_line = turn.line
            else:  # its call was on an earlier page, or the agent did not pair them
                items.append(Item("tool", turn.line, Clip(""), visible(turn.name or "tool result"), output=text))
        else:
            kind: Literal["user", "assistant", "system"] = turn.kind
            items.append(Item(kind, turn.line, text, visible(turn.name or ""), _stamp(turn.timestamp)))
    flush_marks(1 << 62)
    anchored: set[int] = set()
    for item in items:
        if item.kind != "commit" and item.line not in anchored:
            item.anchor = True
            anchored.add(item.line)
    return items


@dataclass(frozen=True)
class Page:
    first: int
    last: int  # the last line shown (first - 1 when none)
    end: int  # the last line of the range paged over
    previous: int | None  # where the previous page starts
    next: int | None


def page_of(blob: Blob, start: int, first: int, end: int) -> Page:
    """The lines from ``start`` (clamped to first..end) that fit in one page.

    Only the lines of this page (and the one after it) are looked up, so a first page never
    scans the rest of a 100 MB session; ``end`` is the note's, or the bytes' if they end sooner.
    """
    start = min(max(start, first), max(end, first))
    if not blob.has(start):  # past what the bytes hold (a hand-made URL): their last page
        end = max(blob.count, first)
        start = min(start, end)
    last, budget = start - 1, 0
    while last < end and last - start + 1 < PAGE_LINES and budget < PAGE_BYTES and blob.has(last + 1):
        last += 1
        budget += blob.size(last)
    back, budget = start, 0
    while back > first and start - back < PAGE_LINES and budget < PAGE_BYTES:
        back -= 1
        budget += blob.size(back)
    following = last + 1 if last < end and blob.has(last + 1) else None
    return Page(start, last, end, back if start > first else None, following)


def read_page(piece: Slice, page: Page, more_url: str, marks: dict[int, list[str]] | None = None) -> list[Item]:
    fmt = piece.blob.format(piece.link.agent)
    if fmt is None:
        return [Item("system", page.first, Clip("(this transcript's format is not known; nothing to show)"))]
    numbered = list(piece.blob.numbered(page.first, page.last))
    return conversation(fmt.turns(numbered), fmt.edits(numbered), more_url, marks)


# --- timeline ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionRow:
    agent: str
    session: str
    lines: tuple[int, int]
    prompt: str
    url: str
    error: str = ""
    tokens: str = ""
    #: The session page, built from the raw ids: `agent`/`session` are their shown (escaped) forms.
    href: str = ""


@dataclass(frozen=True)
class CommitRow:
    sha: str
    author: str
    date: str
    subject: str
    sessions: tuple[SessionRow, ...]
    forgotten: int


@dataclass(frozen=True)
class Timeline:
    rows: tuple[CommitRow, ...]
    page: int
    more: bool
    path: str
    author: str
    agent: str


def first_prompt(piece: Slice) -> str:
    fmt = piece.blob.format(piece.link.agent)
    if fmt is None:
        return ""
    link = piece.link
    for turn in fmt.turns(piece.blob.numbered(link.first_line, link.last_line)):
        if turn.kind == "user" and turn.text.strip():
            return one_line(turn.text)
    return ""


def _session_row(loader: Loader, sha: str, link: notes.TraceLink) -> SessionRow:
    try:
        prompt = first_prompt(loader.load(sha, link))
        error = ""
    except show.ShowError as exc:
        prompt, error = "", visible(str(exc))
    return SessionRow(
        visible(link.agent),
        visible(link.session_id),
        (link.first_line, link.last_line),
        prompt,
        visible(link.url),
        error,
        tokens(link),
        session_href(link.agent, link.session_id),
    )


def timeline(
    repo: Path, notes_ref: str, loader: Loader, *, path: str = "", author: str = "", agent: str = "", page: int = 0
) -> Timeline:
    """Commits of HEAD newest first, a page at a time, with their sessions (git log's filters:
    --author, and the agent through --grep on the notes, which git matches with --notes)."""
    ref = normalize_notes_ref(notes_ref)
    argv = ["log", f"--notes={ref}", "--format=%x1e%H%x1f%an%x1f%aI%x1f%s%x1f%N"]
    argv += [f"--skip={page * TIMELINE_PAGE}", f"--max-count={TIMELINE_PAGE + 1}"]
    if author:
        argv += ["--regexp-ignore-case", "--fixed-strings", f"--author={author}"]
    if agent:
        argv += ["--fixed-strings", f'--grep="agent":"{agent}"']
    argv += ["HEAD", "--"]
    if path:
        argv.append(path)
    try:
        proc = git.run(None, argv, cwd=repo, check=False, timeout=120)
    except TracekeeperError as exc:
        raise WebError(str(exc), 500) from None
    if proc.returncode != 0:
        if git.run(None, ["rev-parse", "--verify", "--quiet", "HEAD"], cwd=repo, check=False).returncode == 1:
            return Timeline((), page, False, path, author, agent)  # no commit yet
        stderr = proc.stderr.decode(errors="replace").strip().splitlines()
        raise WebError((stderr or ["git log failed"])[-1].removeprefix("fatal: "), 400)
    records = proc.stdout.decode(errors="replace").split("\x1e")[1:]
    rows: list[CommitRow] = []
    for record in records[:TIMELINE_PAGE]:
        sha, name, date, subject, note = [*record.split("\x1f", 4), "", "", "", ""][:5]
        sha = sha.strip()
        stones = notes.parse_tombstones(note)
        links = notes.live_links(note)
        if agent and not any(link.agent == agent for link in links):
            continue  # the agent's name was in the commit message, not in a link
        sessions = tuple(_session_row(loader, sha, link) for link in links)
        rows.append(CommitRow(sha, visible(name), date[:19].replace("T", " "), visible(subject), sessions, len(stones)))
    return Timeline(tuple(rows), page, len(records) > TIMELINE_PAGE, path, author, agent)


# --- commit --------------------------------------------------------------------------------------


@dataclass
class SessionPart:
    index: int
    agent: str
    session: str
    url: str
    source: str
    verified: bool
    lines: tuple[int, int]
    page: Page | None
    items: list[Item]
    error: str = ""
    tokens: str = ""
    #: The session page, built from the raw ids: `agent`/`session` are their shown (escaped) forms.
    href: str = ""


@dataclass(frozen=True)
class CommitView:
    sha: str
    subject: str
    author: str
    date: str
    stat: str
    parts: tuple[SessionPart, ...]
    forgotten: tuple[str, ...]


def session_href(agent: str, session: str) -> str:
    from urllib.parse import quote

    return f"/session/{quote(agent, safe='')}/{quote(session, safe='')}"


def commit_view(
    git_dir: Path, notes_ref: str, loader: Loader, rev: str, *, only: int | None = None, start: int = 0
) -> CommitView:
    """The commit and each linked session's slice; ``only``/``start`` page through one of them.

    One git process reads the commit, its note and its diff stat (each costs ~10-20 ms)."""
    if not rev or rev.startswith("-"):
        raise WebError(f"{rev!r} is not a commit")
    ref = normalize_notes_ref(notes_ref)
    fmt = "--format=%H%x1f%s%x1f%an%x1f%aI%x1f%N%x1e"
    proc = git.run(
        git_dir, ["log", "-1", "--no-walk", f"--notes={ref}", fmt, "--stat=160", f"{rev}^{{commit}}", "--"], check=False
    )
    if proc.returncode != 0:
        raise WebError(f"{rev!r} is not a commit in this repository")
    head, _, stat = proc.stdout.decode(errors="replace").partition("\x1e")
    sha, subject, author, date, note = [*head.split("\x1f", 4), "", "", "", "", ""][:5]
    stones = notes.parse_tombstones(note)
    links = notes.live_links(note)
    parts: list[SessionPart] = []
    for index, link in enumerate(links):
        base = SessionPart(
            index,
            visible(link.agent),
            visible(link.session_id),
            visible(link.url),
            "",
            False,
            (link.first_line, link.last_line),
            None,
            [],
            tokens=tokens(link),
            href=session_href(link.agent, link.session_id),
        )
        if only is not None and index != only:
            parts.append(base)
            continue
        try:
            piece = loader.load(sha, link)
        except show.ShowError as exc:
            base.error = visible(str(exc))
            parts.append(base)
            continue
        base.source, base.verified = piece.source, piece.verified
        base.page = page_of(piece.blob, start or link.first_line, link.first_line, link.last_line)
        more = f"{session_href(link.agent, link.session_id)}/text/"
        base.items = read_page(piece, base.page, more)
        parts.append(base)
    forgotten = tuple(
        visible(f"{s.agent or '?'} session {s.session_id or '?'} forgotten by {s.by or '?'}") for s in stones
    )
    return CommitView(
        sha,
        visible(subject.strip()),
        visible(author),
        date[:19].replace("T", " "),
        visible(stat.strip("\n"), multiline=True),
        tuple(parts),
        forgotten,
    )


# --- session -------------------------------------------------------------------------------------


@dataclass
class SessionIndex:
    """Every link in the notes, by session: which commits a session produced, and where."""

    oid: str = ""
    sessions: dict[tuple[str, str], list[tuple[str, notes.TraceLink]]] = field(default_factory=dict)


def session_index(git_dir: Path, notes_ref: str, cached: SessionIndex | None) -> SessionIndex:
    ref = normalize_notes_ref(notes_ref)
    oid = git.run(git_dir, ["rev-parse", "--verify", "--quiet", ref], check=False).stdout.decode().strip()
    if cached is not None and cached.oid == oid:
        return cached
    index = SessionIndex(oid)
    for sha, text in notes.all_notes(git_dir, ref).items():
        for link in notes.live_links(text):
            index.sessions.setdefault((link.agent, link.session_id), []).append((sha, link))
    for links in index.sessions.values():
        links.sort(key=lambda pair: (pair[1].last_line, pair[1].bytes))
    return index


@dataclass(frozen=True)
class SessionView:
    agent: str
    session: str
    url: str
    source: str
    verified: bool
    page: Page
    items: list[Item]
    commits: tuple[tuple[str, int, int], ...]  # (sha, first line, last line)


def _newest(index: SessionIndex, agent: str, session: str) -> list[tuple[str, notes.TraceLink]]:
    links = index.sessions.get((agent, session))
    if not links:
        raise WebError(f"no commit in this repository links {agent} session {session}")
    return links


def session_piece(loader: Loader, index: SessionIndex, agent: str, session: str) -> Slice:
    """The most complete copy of the session: the link that covers the most of it."""
    links = _newest(index, agent, session)
    error: show.ShowError | None = None
    for sha, link in reversed(links):
        try:
            return loader.load(sha, link)
        except show.ShowError as exc:
            error = error or exc
    raise WebError(visible(str(error)), 502)


def session_view(loader: Loader, index: SessionIndex, agent: str, session: str, start: int = 1) -> SessionView:
    piece = session_piece(loader, index, agent, session)
    links = _newest(index, agent, session)
    marks: dict[int, list[str]] = {}
    for sha, link in links:
        marks.setdefault(link.last_line + 1, []).append(sha)
    page = page_of(piece.blob, start, 1, piece.blob.count)
    shown = {n: shas for n, shas in marks.items() if page.first < n <= page.last + 1}
    items = read_page(piece, page, f"{session_href(agent, session)}/text/", shown)
    return SessionView(
        visible(agent),
        visible(session),
        visible(piece.link.url),
        piece.source,
        piece.verified,
        page,
        items,
        tuple((sha, link.first_line, link.last_line) for sha, link in links),
    )


def line_text(loader: Loader, index: SessionIndex, agent: str, session: str, line: int) -> str:
    """Every turn read from one transcript line, whole: the "see all" of a text cut on a page."""
    piece = session_piece(loader, index, agent, session)
    if not 1 <= line <= piece.blob.count:
        raise WebError(f"the session has no line {line}")
    fmt = piece.blob.format(agent)
    if fmt is None:
        raise WebError("this transcript's format is not known")
    turns = list(fmt.turns(piece.blob.numbered(line, line)))
    return "\n\n".join(f"[{turn.kind}{' ' + turn.name if turn.name else ''}]\n{turn.text}" for turn in turns)


# --- search --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    commit: str
    agent: str
    session: str
    turn: int  # the transcript line of the matching turn
    snippet: tuple[tuple[str, bool], ...]  # (text, is a match)
    url: str

    @property
    def shown(self) -> tuple[str, str]:
        """Agent and session as shown (the raw values go into links, quoted)."""
        return visible(self.agent), visible(self.session)


def hit(found: SearchHit, parts: Callable[[str], list[tuple[str, bool]]]) -> Hit:
    """A `search.SearchHit` (commit, agent, session, turn, snippet, url) made safe for a page;
    ``parts`` is search.parts, which splits the snippet at the index's match marks."""
    return Hit(
        str(found.commit),
        str(found.agent),
        str(found.session),
        found.turn,
        tuple((visible(text, multiline=True), match) for text, match in parts(str(found.snippet))),
        visible(str(found.url)),
    )


# --- tokens --------------------------------------------------------------------------------------


def tokens(link: notes.TraceLink) -> str:
    """The link's token counts as `log` and `show` print them (usage_view): "tokens unknown" where
    the note records none, never an estimate. Model names come from transcripts: spelled out."""
    from ..usage_view import usage_text

    return visible(usage_text(link.usage))


# --- blame ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlameLine:
    number: int
    text: str
    commit: str  # "" when not committed
    session: tuple[str, str, int] | None  # (agent, session, transcript line of the edit or slice)
    first: bool  # first line of a run by the same commit
    title: str  # the prompt behind the lines (or the commit's subject), in full
    why: str  # the same, short enough for the margin


@dataclass(frozen=True)
class BlameView:
    path: str
    lines: tuple[BlameLine, ...]
    cut: int


def blame_view(answer: Why, text: str) -> BlameView:
    owner: dict[int, tuple[str, tuple[str, str, int] | None, str]] = {}
    for commit in answer.commits:
        target: tuple[str, str, int] | None = None
        title = one_line(commit.summary, 200)
        for session in commit.sessions:
            if session.error:
                continue
            line = session.edits[0].line if session.edits else 0
            target = (session.agent, session.session, line)
            if session.prompt:
                title = one_line(session.prompt, 300)
            break
        for first, last in commit.lines:
            for number in range(first, last + 1):
                owner[number] = (commit.commit, target, title)
    rows: list[BlameLine] = []
    previous = None
    all_lines = text.splitlines()
    for number, content in enumerate(all_lines[:BLAME_LINES], start=1):
        sha, target, title = owner.get(number, ("", None, "not committed"))
        short = one_line(title, 60) if target else ""
        rows.append(BlameLine(number, visible(content[:4000]), sha, target, sha != previous, title, short))
        previous = sha
    return BlameView(visible(answer.path), tuple(rows), max(0, len(all_lines) - BLAME_LINES))


def blame(repo: Path, notes_ref: str, loader: Loader, path: str) -> BlameView:
    from .. import why

    # why.py takes absolute paths and `..` (a CLI user names files as they like); a URL names a
    # file of this repository, so anything that leaves it is refused before git is asked.
    clean = posixpath.normpath(path)
    if path.startswith("/") or clean == ".." or clean.startswith("../"):
        raise WebError(f"{visible(path)} is outside the repository")
    try:
        answer = why.why(repo, path, None, loader.paths, notes_ref, redactor=loader.redactor)
    except why.WhyError as exc:
        raise WebError(str(exc)) from None
    top = git.toplevel(repo) or repo
    try:
        text = (top / answer.path).read_bytes().decode(errors="replace")
    except OSError as exc:
        raise WebError(f"cannot read {answer.path}: {exc.strerror or exc}") from None
    return blame_view(answer, text)


def files(repo: Path, limit: int = 2000) -> Sequence[tuple[str, str]]:
    """Tracked files for the blame page's index: (name for the link, name as shown)."""
    proc = git.run(None, ["ls-files", "-z"], cwd=repo, check=False)
    names = [name for name in proc.stdout.decode(errors="replace").split("\0") if name][:limit]
    return [(name, visible(name)) for name in names]
