"""`tracekeeper why PATH[:LINE[-LINE]]`: the conversation that wrote some lines of a file.

A thin command over `why.py` (the library: blame -> notes -> slices -> the edits that wrote the
lines). The prompt comes first because it answers "why"; then the edit, then the link to the
whole trace. Everything from a transcript is hostile text: printed through safetext, never as
rich markup. Errors are raised (WhyError) and printed by the CLI's one error table.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..why import CommitWhy, SessionWhy, Why, WhyError

if TYPE_CHECKING:
    from tracekeeperd.redact import Redactor

#: How much of a prompt, an edit and an excerpt a person sees; `--json` has everything.
PROMPT_CHARS = 400
EDIT_LINES = 8
EXCERPT_CHARS = 300

_TARGET = re.compile(r"^(?P<path>.+?)(?::(?P<start>\d+)(?:-(?P<end>\d+))?)?$")


def parse_target(target: str) -> tuple[str, tuple[int, int] | None]:
    """`path`, `path:12` or `path:12-20` (git's `-L` style without the comma)."""
    match = _TARGET.match(target)
    if not match or not match["path"]:
        raise WhyError(f"expected PATH, PATH:LINE or PATH:START-END, got {target!r}")
    if match["start"] is None:
        return match["path"], None
    start = int(match["start"])
    end = int(match["end"]) if match["end"] else start
    return match["path"], (start, end)


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _session_lines(session: SessionWhy) -> list[str]:
    from ..safetext import markup

    out = [f"  [bold]{markup(session.agent)}[/] session {markup(session.session)}"]
    if session.error:
        out.append(f"    [yellow]transcript unavailable:[/] {markup(session.error)}")
        return out
    if session.prompt:
        out.append(f"    prompt  {markup(_short(session.prompt, PROMPT_CHARS))}")
    for edit in session.edits[-1:]:  # the latest matching edit; --json lists every one
        out.append(f"    edit    {markup(edit.tool)} ({markup(edit.kind)}) {markup(edit.path)}")
        new = (edit.new_text or "").splitlines()
        out.extend(f"      [green]+ {markup(line)}[/]" for line in new[:EDIT_LINES])
        if len(new) > EDIT_LINES:
            out.append(f"      … {len(new) - EDIT_LINES} more line(s)")
    if len(session.edits) > 1:
        out.append(f"    ({len(session.edits) - 1} earlier matching edit(s); --json lists them)")
    if session.excerpt:
        out.append(f"    said    {markup(_short(session.excerpt, EXCERPT_CHARS))}")
    out.append(f"    trace   {markup(session.url)}")
    return out


def _commit_lines(commit: CommitWhy, current: str) -> list[str]:
    from ..safetext import markup

    ranges = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in commit.lines)
    renamed = f"; then named {markup(commit.path)}" if commit.path and commit.path != current else ""
    head = f"[yellow]{commit.commit[:12]}[/] {markup(commit.summary)}  [dim](lines {ranges}{renamed})[/]"
    forgotten = [
        f"  [red]forgotten[/] {markup(t.agent or '?')} session {markup(t.session_id or '?')}"
        f" on {markup(t.at or '?')} by {markup(t.by or '?')}"
        for t in commit.forgotten
    ]
    if not commit.sessions and not forgotten:
        return [head, "  no trace note: no agent session was recorded for this commit"]
    return [head, *(line for session in commit.sessions for line in _session_lines(session)), *forgotten]


def render(answer: Why) -> None:
    from ..output import console
    from ..safetext import markup

    out = console()
    where = answer.path + (f":{answer.lines[0]}-{answer.lines[1]}" if answer.lines else "")
    if not answer.commits:
        out.print(f"{markup(where)}: no committed lines to explain")
        return
    for index, commit in enumerate(answer.commits):
        if index:
            out.print()
        for line in _commit_lines(commit, answer.path):
            out.print(line, soft_wrap=True)


@click.command("why", short_help="The conversation that wrote some lines of a file.")
@click.argument("target", metavar="PATH[:LINE[-LINE]]")
@click.option("--json", "as_json", is_flag=True, help="One JSON object (docs/reading.md has its shape).")
def why_command(target: str, as_json: bool) -> None:
    """From lines of a file to the agent session that wrote them: git blame (honouring
    .git-blame-ignore-revs), the commits' trace notes, each commit's part of the session, and
    in it the edit that wrote the lines with the prompt that led to it.

    \b
    Examples:
      $ tracekeeper why src/app.py:40-52
      $ tracekeeper why src/app.py            # every session behind the file, newest first
      $ tracekeeper why src/app.py:7 --json | jq '.commits[0].sessions[0].prompt'
    """
    from functools import cache

    from tracekeeperd.config import load
    from tracekeeperd.paths import resolve

    from ..output import emit_json
    from ..why import why

    path, lines = parse_target(target)
    config = load()

    @cache
    def redactor() -> Redactor:  # built only if a session is read from a local copy
        from tracekeeperd import redact

        return redact.from_settings(config.redaction)

    answer = why(Path("."), path, lines, resolve(), config.notes_ref, redactor=redactor)
    if as_json:
        emit_json(answer.to_json())
    else:
        render(answer)
