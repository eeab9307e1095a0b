"""`tracekeeper status`: the daemon, the queue, the spool and unpushed notes, from the daemon
or (without one) from disk (api.offline_status)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from tracekeeperd.paths import resolve

from ..api import collect_status
from ..errors import ClientError
from ..output import ago, console, emit_json

#: The colour of a job's state on a terminal.
COLOURS = {"failed": "red", "pending": "yellow", "uploading": "cyan", "done": "green"}


def _when(job: dict[str, Any], now: float) -> str:
    """Relative, like gh: when a pending job is tried next, else when it last changed."""
    if job["state"] == "pending":
        return ago(job.get("next_attempt_at"), now)
    return ago(job.get("updated_at"), now)


def job_lines(jobs: list[dict[str, Any]], now: float, *, color: bool) -> list[str]:
    """One row per job (short commit and session ids, relative times), then one line per job
    that has something to say (its error, secrets redacted), whole: never wrapped, so an error
    quoting a URL can be copied. Trace URLs are in `--json` and `tracekeeper show`.

    Plain text padded by hand rather than a rich Table, which folds cells at the console's width
    (80 columns when piped). Jobs quote hostile text: every cell goes through safetext.visible.
    """
    from ..safetext import visible

    header = ("ID", "STATE", "COMMIT", "REPO", "SESSION", "TRIES", "WHEN")
    rows = [
        (
            str(job["id"]),
            job["state"],
            job["commit"][:7],
            visible(Path(job["repo"]).name),
            visible(f"{job['agent']}/{job['session_id'][:8]}"),
            str(job["attempts"]),
            _when(job, now),
        )
        for job in jobs
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(cells: tuple[str, ...], state: str | None = None) -> str:
        padded = [cell.ljust(width) for cell, width in zip(cells, widths, strict=True)]
        if color and state is not None:
            padded[1] = click.style(padded[1], fg=COLOURS.get(state, "white"))
        elif color:
            padded = [click.style(cell, bold=True) for cell in padded]
        return "  ".join(padded).rstrip()

    lines = [line(header), *(line(row, job["state"]) for row, job in zip(rows, jobs, strict=True))]
    for job in jobs:
        removed = sum(((job.get("redactions") or {}).get("counts") or {}).values())
        if job.get("last_error"):
            lines.append(f"job {job['id']}: {visible(job['last_error'])}")
        elif removed:
            lines.append(f"job {job['id']}: {removed} secret{'s' if removed != 1 else ''} redacted")
    return lines


def _print_status(data: dict[str, Any]) -> None:
    # Jobs, spool entries and Hub answers quote hostile text (a transcript's path, a payload's
    # session id, a server's message): control characters spelled out, markup left literal.
    from ..safetext import markup

    out = console()
    daemon, queue = data["daemon"], data["queue"]
    now = time.time()
    if daemon.get("running") and "store" in daemon:
        store = daemon["store"]
        privacy = {True: "private", False: "PUBLIC", None: "privacy not checked yet"}[store["private"]]
        if store.get("checked_at"):  # asked of the Hub before every upload; this is the last answer
            privacy += f", checked {ago(store['checked_at'], now)}"
        out.print(f"[green]●[/] tracekeeperd {daemon['version']} running (pid {daemon['pid']}) on {daemon['socket']}")
        out.print(f"  store   {markup(store['location'])} ({privacy})")
        if daemon.get("offline_until"):
            out.print(
                f"  [yellow]store unreachable[/], next try {ago(daemon['offline_until'], now)}: "
                f"{markup(daemon['offline_reason'])}"
            )
        out.print(f"  notes   {daemon['notes_ref']}")
    elif daemon.get("problem"):  # holds the socket, does not answer
        out.print(f"[red]●[/] {markup(daemon['problem'])}")
        out.print("  commits are spooled meanwhile, nothing is lost")
    elif daemon.get("running"):
        out.print(f"[yellow]●[/] tracekeeperd runs on {daemon['socket']} but could not report its status")
    else:
        out.print(f"[red]●[/] tracekeeperd is not running (no answer on {daemon['socket']})")
        out.print("  start it with: tracekeeperd   (commits are spooled meanwhile, nothing is lost)")
    spooled = daemon.get("spool", {})
    if spooled.get("dead_letter"):
        out.print(
            f"  spool   {spooled.get('waiting', 0)} commit(s) waiting, [red]{spooled['dead_letter']} set aside[/] in "
            f"{markup(spooled['dead_letter_dir'])} (newest: {markup(spooled.get('dead_letter_reason') or '?')}); "
            "`tracekeeper retry` puts them back"
        )
    elif spooled.get("waiting"):
        out.print(f"  spool   {spooled['waiting']} commit(s) waiting")
    out.print(
        f"  queue   {queue['pending']} pending, {queue['uploading']} uploading, "
        f"{queue['done']} done, {queue['failed']} failed"
    )
    for repo in data.get("repos") or []:
        for line in (repo.get("error") or "").splitlines():
            out.print(f"  [red]problem[/] {markup(line)}")
        for remote in repo["remotes"]:
            if remote.get("unpushed"):
                out.print(
                    f"  notes   {remote['unpushed']} not pushed to {markup(remote['remote'])}"
                    f" from {markup(repo['repo'])}"
                )
    listed = data.get("repos") or []
    checking = sum(1 for repo in listed if repo.get("pending"))
    if checking:
        out.print(f"  repos   {checking} not checked yet")
    if data.get("repos_quiet"):  # listed only when they have something to say
        quiet = data["repos_quiet"]
        other = "other " if len(listed) > checking else ""
        out.print(f"  repos   {quiet} {other}repositor{'y' if quiet == 1 else 'ies'} with nothing to push")
    oldest = data.get("oldest_pending")
    if oldest:
        out.print(
            f"  oldest pending: {oldest['commit'][:12]} in {markup(oldest['repo'])} ({ago(oldest['created_at'], now)})"
        )
    jobs = data.get("jobs") or []
    if not jobs:
        return
    out.print()
    for line in job_lines(jobs, now, color=out.is_terminal):
        click.echo(line)  # styled by click.style on a terminal; rich would strip its escapes
    if data.get("jobs_not_shown"):
        out.print(f"  … and {data['jobs_not_shown']} older job(s) not shown")
    if queue["failed"]:
        out.print(
            f"  {queue['failed']} failed: fix the cause, then `tracekeeper retry [JOB]...`, "
            "or give up on them: `tracekeeper drop JOB... | --failed`"
        )


@click.command("status", short_help="Show the daemon and the upload queue.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: daemon, queue, jobs.")
@click.option("--all", "include_done", is_flag=True, help="Include finished jobs.")
def status(as_json: bool, include_done: bool) -> None:
    """Show whether the daemon runs, where traces go, and every job not yet done.

    Works without the daemon too: the queue and the spool are read from disk.

    \b
    Examples:
      $ tracekeeper status
      $ tracekeeper status --all --json | jq '.jobs[] | select(.state == "failed")'
    """
    data = collect_status(resolve(), include_done)
    if as_json:
        emit_json(data)
    else:
        _print_status(data)
    if data["error"]:
        raise ClientError(data["error"])
