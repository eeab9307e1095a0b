"""`tracekeeper summary RANGE`: the agent sessions behind a range of commits, as Markdown or JSON.

A thin command over `summary.py` (the library gathers and renders; it never prints). Meant for a
pull request: `tracekeeper summary origin/main..HEAD | gh pr comment N --body-file -` posts it
with the forge's own CLI and credentials; tracekeeper holds none (docs/summary.md).
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command("summary", short_help="Markdown (or JSON) of the agent sessions behind a range of commits.")
@click.argument("rev_range", metavar="RANGE")
@click.option(
    "-C", "repo", type=click.Path(exists=True, file_okay=False, path_type=Path), default=".", help="Repository."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
def summary_command(rev_range: str, repo: Path, as_json: bool) -> None:
    """Summarise each commit of RANGE (anything `git rev-list` takes, listed oldest first): its
    agent sessions and their links, the first prompt, turns (prompts), tool calls, the files it
    touched and the tokens its note records; commits without a note are listed as such, and
    totals come last. The output is Markdown for a pull request description or comment.

    Prompts come from this machine's copy of the session, else from the store (with your
    credentials); where neither can be read the session is still listed, with its tokens.

    \b
    Examples:
      $ tracekeeper summary origin/main..HEAD
      $ tracekeeper summary origin/main..HEAD | gh pr comment 42 --body-file -
      $ tracekeeper summary HEAD~5..HEAD --json | jq '.totals'
    """
    from tracekeeperd import redact
    from tracekeeperd.config import load
    from tracekeeperd.paths import resolve

    from ..output import emit_json
    from ..summary import as_json as to_json
    from ..summary import as_markdown, build

    config = load()
    result = build(
        repo, rev_range, notes_ref=config.notes_ref, paths=resolve(), redactor=redact.from_settings(config.redaction)
    )
    if as_json:
        emit_json(to_json(result))
    else:
        click.echo(as_markdown(result), nl=False)
