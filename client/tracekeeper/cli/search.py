"""`tracekeeper search QUERY`: full-text search over the sessions linked to this repository's commits.

A thin command over `search.py` (the library; the index is tracekeeperd/searchindex.py). Each
result names its commit, agent, session and turn, with a snippet whose matches are highlighted.
Snippets are transcript text, hostile: spelled out through safetext and printed as literal text,
only the highlight is markup. Errors are raised and printed by the CLI's one error table.
"""

from __future__ import annotations

import re
from pathlib import Path

import click

from ..errors import UsageError
from ..search import SearchHit

_SPACE = re.compile(r"\s+")


def snippet_markup(snippet: str) -> str:
    """One line of rich markup: the snippet's text escaped, its matches in bold."""
    from ..safetext import markup
    from ..search import parts

    flat = _SPACE.sub(" ", snippet).strip()
    return "".join(f"[bold yellow]{markup(text)}[/]" if match else markup(text) for text, match in parts(flat))


def render(hits: list[SearchHit]) -> None:
    from ..output import console
    from ..safetext import markup

    out = console()
    if not hits:
        out.print("no matches")
        return
    for index, hit in enumerate(hits):
        if index:
            out.print()
        head = f"[yellow]{markup(hit.commit[:12])}[/] [bold]{markup(hit.agent)}[/] session {markup(hit.session)}"
        out.print(f"{head} turn {hit.turn}", soft_wrap=True)
        out.print(f"  {snippet_markup(hit.snippet)}", soft_wrap=True)
        out.print(f"  [dim]{markup(hit.url)}[/]", soft_wrap=True)


def to_json(hits: list[SearchHit]) -> dict[str, object]:
    """The `--json` object (docs/reading.md): snippets as plain text, without the match marks."""
    from ..search import plain

    return {
        "results": [
            {
                "commit": hit.commit,
                "agent": hit.agent,
                "session": hit.session,
                "turn": hit.turn,
                "snippet": plain(hit.snippet),
                "url": hit.url,
            }
            for hit in hits
        ]
    }


@click.command("search", short_help="Search the sessions linked to this repository's commits.")
@click.argument("query", required=False)
@click.option("--all", "all_repos", is_flag=True, help="Search every repository the daemon knows.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object (docs/reading.md has its shape).")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="At most this many results.")
@click.option(
    "--reindex",
    is_flag=True,
    help="First rebuild this repository's index from its notes and the store (a clone: after tracekeeper pull).",
)
def search_command(query: str | None, all_repos: bool, as_json: bool, limit: int, reindex: bool) -> None:
    """Full-text search over the agent sessions linked to this repository's commits: prompts,
    answers, tool calls and their output, best matches first. Only redacted text is indexed.

    QUERY is SQLite FTS5 syntax: words (all must match), "a phrase", OR, NOT, prefix*.

    \b
    Examples:
      $ tracekeeper search farewell
      $ tracekeeper search '"rate limit" OR backoff' --all
      $ tracekeeper pull && tracekeeper search --reindex retry   # on a clone
      $ tracekeeper search slugify --json | jq '.results[0].commit'
    """
    from .. import output
    from ..search import reindex as rebuild
    from ..search import search

    if query is None and not reindex:
        raise UsageError("give a QUERY (or --reindex to rebuild the index)")
    if reindex and all_repos:
        raise UsageError("--reindex rebuilds this repository only; run it in each repository, without --all")
    if reindex:
        added = rebuild(Path("."))
        if query is None or not as_json:
            output.info(f"indexed {added} turn(s) from this repository's linked sessions")
        if query is None:
            return
    assert query is not None
    hits = search(query, repo=Path("."), all_repos=all_repos, limit=limit)
    if as_json:
        output.emit_json(to_json(hits))
    else:
        render(hits)
