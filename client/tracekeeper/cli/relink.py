"""`tracekeeper relink`: a thin command over `rewrite.relink` (links that survive rewrites)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from ..output import emit_json
from ..rewrite import DEFAULT_LIMIT, Relinked, relink
from .options import REPO_OPTION


def _describe(found: list[Relinked]) -> Iterator[dict[str, Any]]:
    for item in found:
        yield {"commit": item.new, "from": item.old, "how": item.how}


@click.command("relink", short_help="Give rewritten or squash-merged commits their trace links.")
@click.argument("rev_range", required=False)
@REPO_OPTION
@click.option("-n", "--max-count", "limit", type=int, default=DEFAULT_LIMIT, show_default=True, help="Newest commits.")
@click.option("--dry-run", is_flag=True, help="Say what would be linked; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
def relink_command(rev_range: str | None, repo: Path, limit: int, dry_run: bool, as_json: bool) -> None:
    """Copy trace links to commits of RANGE (default: HEAD) that have none, from the noted
    commits they were made from: rewritten by git (the rewrite log), cherry-picked, rebased or
    squash-merged on a forge (patch-id, the message). Safe to run again: lines are never duplicated.

    \b
    Examples:
      $ git pull && tracekeeper relink          # after your PR was squash-merged
      $ tracekeeper relink --dry-run origin/main~50..origin/main
    """
    from tracekeeperd.config import load

    found = relink(repo, load().notes_ref, rev_range, limit=limit or None, dry_run=dry_run)
    if as_json:
        emit_json({"dry_run": dry_run, "relinked": list(_describe(found))})
        return
    verb = "would link" if dry_run else "linked"
    if not found:
        click.echo("nothing to relink: every commit that matches a noted one has its links")
        return
    for item in found:
        click.echo(f"{verb} {item.new[:12]} <- {item.old[:12]}  ({item.how})")
    commits = len({item.new for item in found})
    click.echo(f"{commits} commit(s) {'would be ' if dry_run else ''}relinked")
