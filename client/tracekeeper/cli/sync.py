"""`tracekeeper push` / `pull`: thin commands over the library `sync.py` (notes that travel).

Also the script behind `python -m tracekeeper.sync`, what the pre-push hook runs detached
after the user's push (`_main` below: push and pull only, lighter than the whole CLI).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click

from tracekeeperd.errors import TracekeeperError

from ..output import emit_json
from ..sync import background_push, log, notes_ref, pull_notes, push_notes, targets
from .options import REPO_OPTION


@click.command(short_help="Push trace notes to a remote (merging theirs first).")
@click.argument("remote", required=False)
@REPO_OPTION
@click.option("--all", "all_remotes", is_flag=True, help="Every remote.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per remote, in a list.")
@click.option("--background", is_flag=True, hidden=True)
@click.option("--wait-pid", type=int, default=None, hidden=True)
@click.option("--pushed", default="", hidden=True, help="The hook's `<remote ref>=<oid> ...`.")
def push(
    *,
    remote: str | None,
    repo: Path,
    all_remotes: bool,
    as_json: bool,
    background: bool,
    wait_pid: int | None,
    pushed: str,
) -> int:
    """Fetch REMOTE's notes, merge them into yours, and push the result, never forced.

    REMOTE defaults to where `git push` goes. Retries when another clone pushed at the same
    time. The pre-push hook runs this in the background after every `git push`.

    \b
    Examples:
      $ tracekeeper push
      $ tracekeeper push upstream
      $ tracekeeper push --all --json
    """
    if background:
        # Detached from the user's terminal: nothing to print to, so failures go to sync.log.
        try:
            ref = notes_ref()
        except TracekeeperError as exc:
            log(f"{repo}: {exc}")
            return 1
        refs = [(name, oid) for name, _, oid in (item.rpartition("=") for item in pushed.split()) if name]
        return background_push(repo.resolve(), remote or "origin", ref, wait_pid, refs)
    ref = notes_ref()
    results = [push_notes(repo, name, ref) for name in targets(repo, remote, all_remotes)]
    if as_json:
        emit_json([{**asdict(r), "pulled": asdict(r.pulled)} for r in results])
        return 0
    for r in results:
        oid = f" {r.pushed_oid[:12]}" if r.pushed_oid else ""
        retried = f" after {r.attempts} attempts" if r.attempts > 1 else ""
        click.echo(f"{r.remote}: {r.outcome.value}{oid}{retried} (their notes: {r.pulled.outcome.value})")
    return 0


@click.command(short_help="Fetch trace notes from a remote and merge them in.")
@click.argument("remote", required=False)
@REPO_OPTION
@click.option("--all", "all_remotes", is_flag=True, help="Every remote.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per remote, in a list.")
def pull(*, remote: str | None, repo: Path, all_remotes: bool, as_json: bool) -> None:
    """Fetch REMOTE's notes into refs/notes/remotes/REMOTE/ and merge them into yours.

    Your notes are never overwritten: a commit both sides noted keeps both sides' lines.

    \b
    Examples:
      $ tracekeeper pull
      $ tracekeeper pull --all
    """
    ref = notes_ref()
    results = [pull_notes(repo, name, ref) for name in targets(repo, remote, all_remotes)]
    if as_json:
        emit_json([asdict(r) for r in results])
        return
    for r in results:
        click.echo(f"{r.remote}: {r.outcome.value}")


@click.group()
def _main() -> None:
    """`python -m tracekeeper.sync push|pull`: what the pre-push hook runs, lighter than the CLI."""


_main.add_command(push)
_main.add_command(pull)

if __name__ == "__main__":  # via `python -m tracekeeper.sync` (see the end of sync.py)
    import sys

    from .runner import run

    sys.exit(run(_main, sys.argv[1:], "tracekeeper.sync"))
