"""`tracekeeper show COMMIT`: the part of each linked session that led to a commit (library: show.py)."""

from __future__ import annotations

from pathlib import Path

import click

from tracekeeperd.paths import resolve

from .. import show as show_mod
from ..output import console, emit_json
from ..safetext import markup, visible
from ..usage_view import usage_text
from .options import REPO_OPTION


def render(sha: str, items: list[show_mod.Trail], *, full: bool) -> None:
    """The conversation for a terminal. Transcript and note text is hostile: every piece of it goes
    through safetext.markup (control characters spelled out, rich markup left literal), and
    emoji codes are not expanded."""
    out = console()
    for trail in items:
        link = trail.link
        span = "whole session" if full else f"lines {link.first_line}-{link.last_line}"
        check = "[green]verified[/]" if trail.verified else "[yellow]transcript differs from what the commit saw[/]"
        who = f"[bold]{markup(link.agent)}[/] session {markup(link.session_id)}"
        out.print(f"{who} · {span} · {trail.source} · {check}")
        out.print(f"[dim]{markup(link.url)}[/]")
        out.print(f"[dim]{markup(usage_text(link.usage))}[/]")
        turns = trail.turns(full=full)
        if not turns:
            out.print("[dim](no readable turns in this range; try --raw)[/]")
        for turn in turns:
            text = markup(turn.text.strip(), multiline=True)
            if turn.kind == "user":
                out.print(f"\n[bold cyan]> user[/]  [dim]line {turn.line}[/]\n{text}")
            elif turn.kind == "assistant":
                out.print(f"\n[bold]< assistant[/]  [dim]line {turn.line}[/]\n{text}")
            elif turn.kind == "tool_call":
                call = markup(turn.text.strip()[: show_mod.RESULT_CHARS], multiline=True)
                out.print(f"[magenta]⚙ {markup(turn.name or 'tool')}[/] {call}")
            elif turn.kind == "tool_result":
                # Spelled out before shortening, which would turn a CR into a line break.
                out.print(
                    f"[dim]{markup(show_mod.shorten(visible(turn.text.strip(), multiline=True)), multiline=True)}[/]"
                )
            else:
                out.print(f"[dim italic]{text}[/]")
        out.print()


@click.command("show", short_help="Show the agent conversation behind a commit.")
@click.argument("commit", default="HEAD")
@REPO_OPTION
@click.option("--full", is_flag=True, help="The whole session, not just this commit's part.")
@click.option("--raw", is_flag=True, help="The transcript's JSONL lines instead of a conversation.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
def show(commit: str, repo: Path, full: bool, raw: bool, as_json: bool) -> None:
    """Show, for each session linked to COMMIT, the part of the transcript that led to it.

    \b
    Examples:
      $ tracekeeper show              # HEAD
      $ tracekeeper show abc123 --full
      $ tracekeeper show HEAD~2 --raw | jq .
    """
    import sys

    from tracekeeperd import redact
    from tracekeeperd.config import load

    # ShowError, TracekeeperError and RedactionError reach main(), whose errors_table says them.
    config = load()
    redactor = redact.from_settings(config.redaction)
    sha, items = show_mod.trails(repo, commit, resolve(), config.notes_ref, redactor)
    if not items:
        raise show_mod.ShowError(f"commit {sha[:12]} has no trace note (was an agent session active when it was made?)")
    if raw:
        sys.stdout.buffer.write(show_mod.raw(items, full=full))
    elif as_json:
        emit_json(show_mod.as_json(sha, items, full=full))
    else:
        render(sha, items, full=full)
