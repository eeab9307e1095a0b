"""`tracekeeper push` / `pull`: thin commands over the library `sync.py` (notes that travel).

Also the script behind `python -m tracekeeper.sync`, what the pre-push hook runs detached
after the user's push (`_main` below: push and pull only, lighter than the whole CLI).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click

from tracekeeperd.errors import TracekeeperError

from ..output import Progress, emit_json, info
from ..sync import PushResult, background_push, log, notes_ref, pull_notes, push_notes, targets
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
    results = []
    for name in targets(repo, remote, all_remotes):
        with Progress(f"pushing notes to {name}"):
            result = push_notes(repo, name, ref)
        results.append(result)
        if not as_json:
            info(push_summary(result))
    if as_json:
        emit_json([{**asdict(r), "pulled": asdict(r.pulled)} for r in results])
    return 0


def push_summary(result: PushResult) -> str:
    """One line per remote, like git's: what reached it; its notes merged first, if any."""
    extra = []
    if result.pulled.received:
        extra.append(f"{result.pulled.received} of theirs merged first")
    if result.attempts > 1:
        extra.append(f"after {result.attempts} attempts")
    tail = f" ({', '.join(extra)})" if extra else ""
    return f"notes pushed to {result.remote}: {result.sent} new{tail}"


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
    results = []
    for name in targets(repo, remote, all_remotes):
        with Progress(f"fetching notes from {name}"):
            result = pull_notes(repo, name, ref)
        results.append(result)
        if not as_json:
            info(f"notes pulled from {result.remote}: {result.received} new")
    if as_json:
        emit_json([asdict(r) for r in results])


@click.group()
def _main() -> None:
    """`python -m tracekeeper.sync push|pull`: what the pre-push hook runs, lighter than the CLI."""


_main.add_command(push)
_main.add_command(pull)

if __name__ == "__main__":  # via `python -m tracekeeper.sync` (see the end of sync.py)
    import sys

    from .runner import run

    sys.exit(run(_main, sys.argv[1:], "tracekeeper.sync"))
