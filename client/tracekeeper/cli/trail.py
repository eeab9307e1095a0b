"""`tracekeeper log` / `forget`: thin commands over the library `trail.py`."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import click

from tracekeeperd.config import normalize_notes_ref

from ..output import emit_json
from ..safetext import visible
from ..sync import notes_ref
from ..trail import (
    Entry,
    ForgetResult,
    TrailError,
    entry_json,
    forget,
    hold_back,
    let_go,
    log_entries,
    plan_forget,
    plan_sessions,
)
from ..usage_view import usage_text
from .options import REPO_OPTION


def render_log(entries: list[Entry]) -> None:
    """git-log-like text: grep-able, stable without a terminal, coloured on one. Commit messages
    and notes (a teammate's) are hostile input: their text goes through safetext.visible."""
    from ..safetext import visible as v

    for entry in entries:
        head = click.style(entry.sha[:12], fg="yellow")
        click.echo(f"{head} {entry.date[:10]} {v(entry.subject)}  {click.style(f'({v(entry.author)})', dim=True)}")
        for s in entry.sessions:
            prompts = "-" if s.prompts is None else str(s.prompts)
            word = "prompt" if s.prompts == 1 else "prompts"
            click.echo(
                f"    {click.style(v(s.link.agent), bold=True)} {v(s.link.session_id)}"
                f"  lines {s.link.first_line}-{s.link.last_line}  {prompts} {word}  {v(usage_text(s.link.usage))}"
            )
            click.echo(f"    {click.style(v(s.link.url), dim=True)}")
        for t in entry.forgotten:
            click.echo(
                f"    {click.style('forgotten', fg='red')} {v(t.agent or '?')} {v(t.session_id or '?')}"
                f" on {v(t.at)} by {v(t.by)}"
            )
        if not entry.traced and not entry.forgotten:
            click.echo(f"    {click.style('no trace', dim=True)}")


@click.command("log", short_help="List commits with their agent sessions and trace links.")
@click.argument("pathspecs", nargs=-1, metavar="[PATH]...")
@REPO_OPTION
@click.option("-r", "--rev", default="HEAD", show_default=True, help="Revision or range to list.")
@click.option("-n", "--max-count", "limit", type=int, default=None, help="At most N commits.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
def log_command(pathspecs: tuple[str, ...], repo: Path, rev: str, limit: int | None, as_json: bool) -> None:
    """List commits (those touching PATHs, like `git log -- PATH`) with the agent, session, line
    range, prompt count and trace URL of each linked session; commits without a link say so.

    Prompt counts need the transcript on this machine (the daemon's copy, or the configured local store);
    `log` never downloads, so elsewhere they show as "-" (`tracekeeper show` fetches).

    \b
    Examples:
      $ tracekeeper log -n 20
      $ tracekeeper log src/parser.py --json | jq '.commits[] | select(.traced)'
    """
    from tracekeeperd.paths import resolve

    ref = notes_ref()
    entries = log_entries(repo, ref, pathspecs, rev=rev, limit=limit, paths=resolve())
    if as_json:
        emit_json({"notes_ref": normalize_notes_ref(ref), "commits": [entry_json(e) for e in entries]})
    else:
        render_log(entries)


def _plan_json(result: ForgetResult, dry_run: bool) -> dict[str, Any]:
    plan = result.plan
    return {
        "target": plan.what,
        "dry_run": dry_run,
        "traces": [
            {
                "url": t.url,
                "agent": t.agent,
                "session_id": t.session_id,
                "commits": t.commits,
                "deleted": t.url in result.deleted,
                "error": result.errors.get(t.url),
            }
            for t in plan.targets
        ],
        "already_forgotten": [{"url": t.url, "session_id": t.session_id, "at": t.at} for t in plan.already],
        "tombstoned": result.tombstoned,
        "queued_uploads": plan.live_jobs,
        "session_active": plan.active,
        "held_back": [
            {"agent": h["agent"], "session_id": h["session_id"], "cancelled_uploads": h["cancelled"]}
            for h in result.held_back
        ],
    }


def _say_held_back(result: ForgetResult, out: Any) -> None:
    for held in result.held_back:
        sid = visible(str(held["session_id"]))  # from notes (a teammate's): hostile text
        cancelled = f"; {held['cancelled']} queued upload(s) cancelled" if held["cancelled"] else ""
        click.echo(
            f"{visible(str(held['agent']))} session {sid} will not be linked or uploaded again{cancelled}"
            f" (`tracekeeper forget --undo {shlex.quote(sid)}` allows it)",
            file=out,
        )


def _undo(what: str, as_json: bool) -> None:
    from tracekeeperd.paths import resolve

    pairs = let_go(resolve(), what)
    if as_json:
        emit_json({"undone": [{"agent": agent, "session_id": sid} for agent, sid in pairs]})
        return
    for agent, sid in pairs:
        click.echo(
            f"{visible(agent)} session {visible(sid)} may be linked and uploaded again"
            " (links `forget` tombstoned stay tombstoned)"
        )


@click.command("forget", short_help="Delete a session's trace from the store and tombstone its links.")
@click.argument("what", metavar="COMMIT|SESSION")
@REPO_OPTION
@click.option("--dry-run", is_flag=True, help="Say what would be deleted and which notes would change.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True, help="Forget even though the daemon still has uploads of it queued.")
@click.option("--undo", is_flag=True, help="Let a forgotten SESSION be linked and uploaded again.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts (with --yes or --dry-run).")
def forget_command(what: str, *, repo: Path, dry_run: bool, yes: bool, force: bool, undo: bool, as_json: bool) -> None:
    """Delete the uploaded trace of a session (given by its id, or by a COMMIT linked to it:
    then every session of that commit) from the store its URL points at, and replace every link
    to it in the notes by a tombstone saying who removed it and when. This machine's daemon
    then never links or uploads the session again, in any repository, until `--undo SESSION`.
    Running it again is harmless.

    \b
    Examples:
      $ tracekeeper forget 019c8a70-dda7-7f33-98ea-f30553347322 --dry-run
      $ tracekeeper forget HEAD~3 --yes
      $ tracekeeper forget --undo 019c8a70-dda7-7f33-98ea-f30553347322
    """
    from tracekeeperd.paths import resolve

    if undo:
        if dry_run or force:
            raise click.UsageError("--undo takes neither --dry-run nor --force")
        _undo(what, as_json)
        return
    if as_json and not (yes or dry_run):
        raise click.UsageError("--json needs --yes (or --dry-run): a script cannot answer the question")
    ref = notes_ref()
    paths = resolve()
    plan = plan_forget(repo, ref, what, paths)
    out = sys.stderr if as_json else sys.stdout
    if not plan.targets:
        # Forgotten before (maybe on another machine, whose notes we fetched): this machine's
        # daemon must hold the session back too.
        result = ForgetResult(plan)
        if not dry_run:
            result.held_back = hold_back(paths, plan_sessions(plan))
        if as_json:
            emit_json(_plan_json(result, dry_run))
        else:
            when = ", ".join(sorted({visible(str(t.at)) for t in plan.already}))  # tombstones: notes text
            click.echo(f"nothing to forget for {visible(plan.what)}" + (f" (forgotten on {when})" if when else ""))
        return
    for t in plan.targets:  # agent, session and URL come from notes (a teammate's): hostile text
        session = t.session_id
        who = f"{visible(str(t.agent))} session {visible(session)}" if session else "a trace"
        shas = ", ".join(c[:12] for c in t.commits)
        click.echo(f"{who}: {visible(t.url)}\n    linked from {len(t.commits)} commit(s): {shas}", file=out)
    if plan.active:
        click.echo(
            "warning: this session is still active here: commits made while it goes on will not be linked to it",
            file=sys.stderr,
        )
    if plan.live_jobs and not force and not dry_run:
        raise TrailError(
            f"the daemon still has {plan.live_jobs} upload(s) of this session queued (or failed, to be retried);"
            " forgetting cancels them, so their commits get no link: wait for `tracekeeper flush`, or pass --force"
        )
    if dry_run:
        if as_json:
            emit_json(_plan_json(ForgetResult(plan), dry_run))
        else:
            click.echo("dry run: nothing deleted, no note changed")
        return
    try:
        confirmed = yes or click.confirm(
            "Delete from the store and replace these links with tombstones?", default=False, err=True
        )
    except click.Abort:  # end of input: nobody said yes
        confirmed = False
    if not confirmed:
        raise TrailError("nothing forgotten")
    result = forget(repo, ref, plan, paths=paths)
    if as_json:
        emit_json(_plan_json(result, dry_run))
    else:
        for url in result.deleted:
            click.echo(f"deleted {visible(url)}")
        click.echo(f"tombstoned the links in {len(result.tombstoned)} note(s)")
        _say_held_back(result, out)
    if result.errors:
        first = next(iter(result.errors.items()))
        raise TrailError(f"could not delete {first[0]}: {first[1]} (its links are kept; run forget again)")
