"""`tracekeeper summary <range>`: the agent sessions behind a range of commits, for a pull request.

For each commit of the range (`git rev-list --reverse`: oldest first, the order the branch was
written in and the order a reviewer reads a PR's commits), its linked sessions (agent, link,
line range), the first prompt of its part of each session, how many prompts (turns) and tool
calls that part holds, the files the commit touched and the tokens the note records; commits
without a note are listed as such; totals at the end. Markdown for a PR description or comment,
or one JSON object.

Everything a transcript or a note says is hostile: the Markdown is made for GitHub's renderer
(CommonMark + GFM tables + @mentions), where a prompt could otherwise close the table, add a
`javascript:` link or raw HTML, or notify people. `markdown_text` flattens it to one line,
entity-encodes `&<>"`, backslash-escapes every other ASCII punctuation character (CommonMark
allows that for all of them: no emphasis, link, code span, fence, table pipe or autolink can
form) and puts a zero-width space after `@` and `#` (GitHub's mention and issue-reference
filters run on the rendered text, where a backslash is already gone). Only http(s) links to a
trace become links, with their destination percent-encoded.

The conversation comes from wherever `show` finds it (this machine's transcript or snapshot,
else the store, with this user's credentials). Where it cannot be read (CI without a token), the
session is still listed with its link and tokens, and says why its prompt is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from tracekeeperd import git, notes
from tracekeeperd.agents import Turn
from tracekeeperd.agents.usage import Usage
from tracekeeperd.errors import GitError, TracekeeperError
from tracekeeperd.paths import Paths
from tracekeeperd.redact import Redactor

from .errors import ClientError
from .safetext import visible
from .usage_view import Tally, counts_text, usage_json

if TYPE_CHECKING:
    from .show import Trail

#: Characters of a first prompt in the Markdown (the JSON keeps `PROMPT_JSON_CHARS`).
PROMPT_CHARS = 200
PROMPT_JSON_CHARS = 2000
SUBJECT_CHARS = 80
#: Files named per commit in the Markdown; the JSON lists them all.
FILES_SHOWN = 3
#: GitHub refuses a comment or description longer than 65,536 characters.
MARKDOWN_LIMIT = 60_000

ORDER = "oldest-first"


class SummaryError(ClientError):
    """A range that cannot be summarised; the message is one line."""


@dataclass
class SessionSummary:
    link: notes.TraceLink
    first_prompt: str | None = None
    turns: int | None = None
    tool_calls: int | None = None
    source: str | None = None  # "transcript", "snapshot", "store"
    unavailable: str | None = None  # why the conversation could not be read


@dataclass
class CommitSummary:
    sha: str
    author: str
    subject: str
    files: list[str]
    sessions: list[SessionSummary] = field(default_factory=list)
    forgotten: int = 0  # links `forget` tombstoned

    @property
    def tally(self) -> Tally:
        return Tally.of(s.link.usage for s in self.sessions)


@dataclass
class Summary:
    rev_range: str
    commits: list[CommitSummary]

    @property
    def slices(self) -> list[SessionSummary]:
        """Each session slice once: commits made back to back with no new transcript lines share
        their range (docs/notes.md), and a slice's turns and tokens were spent once."""
        unique: dict[tuple[str, int, int], SessionSummary] = {}
        for c in self.commits:
            for s in c.sessions:
                unique.setdefault((s.link.url, s.link.first_line, s.link.last_line), s)
        return list(unique.values())

    @property
    def tally(self) -> Tally:
        return Tally.of(s.link.usage for s in self.slices)


# --- gathering ---------------------------------------------------------------------------------


def _commits(git_dir: Path, rev_range: str) -> list[str]:
    if rev_range.startswith("-"):
        raise SummaryError(f"{rev_range!r} is not a revision range")
    proc = git.run(git_dir, ["rev-list", "--reverse", rev_range, "--"], check=False, env=git.IN_ENGLISH)
    if proc.returncode != 0:
        stderr = proc.stderr.decode(errors="replace").strip().splitlines()
        reason = (stderr or ["git rev-list failed"])[0].removeprefix("fatal: ")
        raise SummaryError(f"cannot list the commits of {rev_range!r}: {reason}")
    return proc.stdout.decode().split()


def _headers(git_dir: Path, shas: list[str]) -> dict[str, tuple[str, str]]:
    """{sha: (author, subject)} in one git process (ids on stdin: a long range fits no argv)."""
    if not shas:
        return {}
    out = git.run(
        git_dir,
        ["log", "--stdin", "--no-walk=unsorted", "--no-notes", "--format=%H%x00%an%x00%s"],
        input="".join(f"{sha}\n" for sha in shas).encode(),
    ).stdout
    headers: dict[str, tuple[str, str]] = {}
    for line in out.decode(errors="replace").splitlines():
        sha, _, rest = line.partition("\x00")
        author, _, subject = rest.partition("\x00")
        headers[sha] = (author, subject)
    return headers


def _files(git_dir: Path, shas: list[str]) -> dict[str, list[str]]:
    """{sha: paths it changed against its first parent} in one git process (`diff-tree --stdin`
    prints each commit's id, then its paths; a merge prints nothing and lists no files)."""
    files: dict[str, list[str]] = {sha: [] for sha in shas}
    if not shas:
        return files
    proc = git.run(
        git_dir,
        ["diff-tree", "--stdin", "-r", "--root", "--no-renames", "--name-only", "-z"],
        input="".join(f"{sha}\n" for sha in shas).encode(),
    )
    current: str | None = None
    for token in proc.stdout.decode(errors="surrogateescape").split("\x00"):
        if token in files:
            current = token
        elif token and current is not None:
            files[current].append(token.encode(errors="surrogateescape").decode(errors="replace"))
    return files


class _Conversations:
    """Each session read (and redacted, and parsed) once per summary.

    A pull request's commits often share one session: its latest copy (this machine's transcript,
    or the store's) starts with what each earlier commit saw, so a copy that matches one link's
    sha256 is tried first for the next link of the same URL before anything is read again.
    """

    def __init__(self, paths: Paths, redactor: Redactor | None) -> None:
        self.paths = paths
        self.redactor = redactor
        self._read: dict[str, tuple[Trail, list[Turn], bool]] = {}

    def _conversation(self, sha: str, link: notes.TraceLink) -> tuple[Trail, list[Turn], bool] | str:
        from . import show

        cached = self._read.get(link.url)
        if cached is not None and show.matches(cached[0].data, link):
            return cached
        try:
            trail = show.load(self.paths, sha, link, self.redactor)
        except ClientError as exc:
            return str(exc)
        if not trail.verified:
            return "the transcript found differs from what the commit saw"
        fmt, numbered, legacy = trail.conversation()
        if fmt is None:
            return "the transcript's format is not known to this version"
        self._read[link.url] = (trail, list(fmt.turns(numbered)), legacy)
        return self._read[link.url]

    def session(self, sha: str, link: notes.TraceLink) -> SessionSummary:
        """The slice's first prompt and counts, from the redacted conversation `show` would print."""
        out = SessionSummary(link)
        found = self._conversation(sha, link)
        if isinstance(found, str):
            out.unavailable = found
            return out
        trail, turns, legacy = found
        out.source = trail.source
        in_slice = turns if legacy else [t for t in turns if link.first_line <= t.line <= link.last_line]
        prompts = [t for t in in_slice if t.kind == "user"]
        # A commit made while the agent worked on an earlier prompt answers that one.
        earlier = [t for t in turns if t.kind == "user" and t.line < link.first_line]
        first = prompts[0] if prompts else (earlier[-1] if earlier else None)
        out.first_prompt = first.text if first else None
        out.turns = len(prompts)
        out.tool_calls = sum(1 for t in in_slice if t.kind == "tool_call")
        return out


def build(
    repo: Path,
    rev_range: str,
    *,
    notes_ref: str,
    paths: Paths,
    redactor: Redactor | None = None,
) -> Summary:
    """The summary of every commit in `rev_range` (anything `git rev-list` takes), oldest first."""
    try:
        git_dir = git.find_git_dir(repo)
    except TracekeeperError as exc:
        raise SummaryError(str(exc)) from None
    try:
        shas = _commits(git_dir, rev_range)
        headers = _headers(git_dir, shas)
        files = _files(git_dir, shas)
        book = notes.all_notes(git_dir, notes_ref) if shas else {}
    except GitError as exc:
        raise SummaryError(str(exc)) from None
    conversations = _Conversations(paths, redactor)
    commits: list[CommitSummary] = []
    for sha in shas:
        author, subject = headers.get(sha, ("", ""))
        text = book.get(sha, "")
        links = notes.live_links(text)
        forgotten = {stone.url for stone in notes.parse_tombstones(text)}
        commit = CommitSummary(sha, author, subject, files.get(sha, []), forgotten=len(forgotten))
        commit.sessions = [conversations.session(sha, link) for link in links]
        commits.append(commit)
    return Summary(rev_range, commits)


# --- JSON --------------------------------------------------------------------------------------


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _sum(values: list[int | None]) -> int:
    return sum(value for value in values if value is not None)


def _totals(summary: Summary) -> dict[str, Any]:
    slices = summary.slices
    return {
        "commits": len(summary.commits),
        "commits_with_sessions": sum(1 for c in summary.commits if c.sessions),
        "sessions": len({s.link.url for s in slices}),
        "sessions_unreadable": sum(1 for s in slices if s.turns is None),
        "turns": _sum([s.turns for s in slices]),
        "tool_calls": _sum([s.tool_calls for s in slices]),
        "files": len({path for c in summary.commits for path in c.files}),
        "usage": summary.tally.json(),
    }


def as_json(summary: Summary) -> dict[str, Any]:
    """One object: the range, its commits (oldest first) with their sessions, and totals."""
    return {
        "range": summary.rev_range,
        "order": ORDER,
        "commits": [
            {
                "commit": c.sha,
                "author": c.author,
                "subject": c.subject,
                "files": c.files,
                "noted": bool(c.sessions),
                "forgotten_sessions": c.forgotten,
                "sessions": [
                    {
                        "agent": s.link.agent,
                        "session_id": s.link.session_id,
                        "url": s.link.url,
                        "lines": [s.link.first_line, s.link.last_line],
                        "first_prompt": None if s.first_prompt is None else _shorten(s.first_prompt, PROMPT_JSON_CHARS),
                        "turns": s.turns,
                        "tool_calls": s.tool_calls,
                        "usage": usage_json(s.link.usage),
                        "source": s.source,
                        "unavailable": s.unavailable,
                    }
                    for s in c.sessions
                ],
                "usage": c.tally.json(),
            }
            for c in summary.commits
        ],
        "totals": _totals(summary),
    }


# --- Markdown ----------------------------------------------------------------------------------

_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}
#: After `@` and `#`: GitHub's mention and issue-reference filters do not match across it.
_ZWSP = "&#8203;"
#: What can start markup inside a line: emphasis and strikethrough, code spans and fences, links
#: and images, raw HTML and entities, table pipes, math (`$`), autolinks (`:` of a scheme, `.` of
#: `www.`). Escaping more would be just as inert, only harder to read in the source.
_MARKUP = '\\`*_~[](){}<>&"!|$:.#@'
_ESCAPED = {char: _ENTITIES.get(char, "\\" + char) for char in _MARKUP}
_ESCAPED["@"] = "@" + _ZWSP
_ESCAPED["#"] = "\\#" + _ZWSP


def markdown_text(text: str, limit: int | None = None) -> str:
    """Hostile text as inert Markdown on one line: shown as written, never as markup (module doc)."""
    flat = " ".join(visible(" ".join(text.split())).split())
    if limit is not None:
        flat = _shorten(flat, limit)
    return "".join(_ESCAPED.get(char, char) for char in flat)


def _link(text: str, url: str) -> str:
    """`[text](url)` for an http(s) URL (percent-encoded so it cannot end early), else the text."""
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        scheme = ""
    if scheme not in ("http", "https"):
        return markdown_text(text)
    return f"[{markdown_text(text)}]({quote(url, safe=':/?=%~-._')})"


def _tokens_cell(tally: Tally) -> str:
    if tally.known is None:
        return "unknown" if tally.links else ""
    cell = counts_text(tally.known.total()) if tally.known.models else "0"
    if tally.unknown:
        cell += f" + {tally.unknown} unknown"
    return markdown_text(cell)


def _count(values: list[int | None]) -> str:
    if not values:
        return ""
    known = _sum(values)
    return f"{known}" + ("+?" if None in values else "")


def _row(c: CommitSummary) -> str:
    commit = f"`{c.sha[:12]}` {markdown_text(c.subject, SUBJECT_CHARS)}"
    files = f"{len(c.files)}"
    if c.files:
        named = ", ".join(markdown_text(path, 60) for path in c.files[:FILES_SHOWN])
        more = f" +{len(c.files) - FILES_SHOWN}" if len(c.files) > FILES_SHOWN else ""
        files += f": {named}{more}"
    if not c.sessions:
        what = "forgotten" if c.forgotten else "no agent session noted"
        return f"| {commit} | *{what}* |  |  |  | {files} |  |"
    agents = ", ".join(_link(s.link.agent, s.link.url) for s in c.sessions)
    prompt = next((s.first_prompt for s in c.sessions if s.first_prompt), None)
    if prompt is not None:
        prompt_cell = markdown_text(prompt, PROMPT_CHARS)
    else:
        reasons = {s.unavailable for s in c.sessions if s.unavailable}
        prompt_cell = "*conversation not available*" if reasons else ""
    turns = _count([s.turns for s in c.sessions])
    tools = _count([s.tool_calls for s in c.sessions])
    return f"| {commit} | {agents} | {prompt_cell} | {turns} | {tools} | {files} | {_tokens_cell(c.tally)} |"


def _per_model(usage: Usage | None) -> list[str]:
    if usage is None:
        return []
    return [f"- {markdown_text(name)}: {markdown_text(counts_text(counts))}" for name, counts in usage.models]


def as_markdown(summary: Summary) -> str:
    """A section for a PR description or comment (see docs/summary.md)."""
    totals = _totals(summary)
    head = [
        f"### Agent sessions in {markdown_text(summary.rev_range)}",
        "",
        "| Commit | Agent | First prompt | Turns | Tool calls | Files | Tokens |",
        "| --- | --- | --- | ---: | ---: | --- | --- |",
    ]
    rows = [_row(c) for c in summary.commits]
    tally = summary.tally
    tokens = f"tokens {_tokens_cell(tally)}" if tally.links else "no tokens"
    unreadable = totals["sessions_unreadable"]
    tail = [
        "",
        f"**Totals:** {totals['commits']} commit{'s' if totals['commits'] != 1 else ''}"
        f" ({totals['commits_with_sessions']} with an agent session) · {totals['sessions']} session"
        f"{'s' if totals['sessions'] != 1 else ''} · {totals['turns']} turns · {totals['tool_calls']} tool calls"
        f"{f' ({unreadable} conversation(s) not available)' if unreadable else ''}"
        f" · {totals['files']} files · {tokens}",
        *(["", *_per_model(tally.known)] if _per_model(tally.known) else []),
        "",
        "<sub>Listed oldest first by `tracekeeper summary`. Turns are prompts; tokens are what the"
        " agents recorded (input includes cached), never estimated.</sub>",
    ]
    if not summary.commits:
        return "\n".join([f"### Agent sessions in {markdown_text(summary.rev_range)}", "", "No commits.", ""])
    body = head + rows
    size = sum(len(line) + 1 for line in body + tail)
    while size > MARKDOWN_LIMIT and len(body) > len(head) + 1:
        size -= len(body.pop()) + 1
    cut = len(head) + len(rows) - len(body)
    if cut:
        body.append(f"| … {cut} more commit(s): see `tracekeeper summary --json` |  |  |  |  |  |  |")
    return "\n".join(body + tail) + "\n"
