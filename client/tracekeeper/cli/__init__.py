"""`tracekeeper`: a thin layer of click commands over api.py, install.py and the queue."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import click

from tracekeeperd import __version__
from tracekeeperd.paths import resolve

from .. import output
from ..api import Client, DaemonError, DaemonNotResponding, DaemonUnavailable
from ..errors import ClientError
from ..output import ExitStatus, ago, console, emit_json
from ..runner import STATE, run


def _client(timeout: float = 10.0) -> Client:
    return Client(resolve().socket, timeout=timeout)


#: Subcommands living in their own modules: imported only when that command runs (or its own
#: --help), so `tracekeeper --help` stays near a bare interpreter start. name -> (module, attribute,
#: short help); tests/test_cli_shell.py checks the short help against the real command's.
LAZY_COMMANDS: dict[str, tuple[str, str, str]] = {
    "agents": ("tracekeeper.agent_setup", "agents", "Coding-agent hooks: list, install, uninstall."),
    "doctor": ("tracekeeper.doctor", "doctor", "Check the whole setup and say how to fix what is wrong."),
    "forget": (
        "tracekeeper.trail",
        "forget_command",
        "Delete a session's trace from the store and tombstone its links.",
    ),
    "install": ("tracekeeper.install", "install_command", "Install the git hooks in this repository."),
    "log": ("tracekeeper.trail", "log_command", "List commits with their agent sessions and trace links."),
    "pull": ("tracekeeper.sync", "pull", "Fetch trace notes from a remote and merge them in."),
    "push": ("tracekeeper.sync", "push", "Push trace notes to a remote (merging theirs first)."),
    "redact": ("tracekeeper.redact_cmd", "redact", "Show what redaction would remove from a transcript."),
    "relink": ("tracekeeper.rewrite", "relink_command", "Give rewritten or squash-merged commits their trace links."),
    "service": ("tracekeeper.service", "service", "Run tracekeeperd as a user service (systemd or launchd)."),
    "uninstall": ("tracekeeper.install", "uninstall_command", "Remove the git hooks from this repository."),
    "why": ("tracekeeper.cli.why", "why_command", "The conversation that wrote some lines of a file."),
}


class LazyGroup(click.Group):
    """click's documented LazyGroup pattern, plus a help listing that imports nothing.

    click's own `format_commands` calls `get_command` for every name to read its short help,
    which would import every module; the table above carries the short help instead.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS and cmd_name not in self.commands:
            module, attribute, _ = LAZY_COMMANDS[cmd_name]
            # __import__ rather than importlib.import_module: the import statement's path, which
            # -X importtime reports (tests/test_cli_shell.py relies on that to see what loads).
            command = getattr(__import__(module, fromlist=[attribute]), attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"{module}.{attribute} is not a click command")
            self.commands[cmd_name] = command
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows: list[tuple[str, str]] = []
        for name in self.list_commands(ctx):
            if name in self.commands:
                command = self.commands[name]
                if command.hidden:
                    continue
                rows.append((name, command.get_short_help_str(formatter.width - 6 - len(name))))
            else:
                rows.append((name, LAZY_COMMANDS[name][2]))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _change_dir(ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path | None:
    """git's -C: change directory before anything else, so every path (and -C of a subcommand) is
    relative to it. A missing or unusable directory is one usage error (exit 2) for every command."""
    if value is None or ctx.resilient_parsing:
        return value
    import os

    try:
        os.chdir(value)
    except OSError as exc:
        raise click.BadParameter(f"cannot change to {str(value)!r}: {exc.strerror or exc}", ctx, _param) from None
    return value


def _set_quiet(_ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    output.set_quiet(value)
    return value


def _set_traceback(_ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        STATE["traceback"] = True
    return value


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tracekeeper")
@click.option(
    "-C",
    "directory",
    type=click.Path(exists=True, file_okay=False, path_type=Path),  # the same check as each command's -C
    callback=_change_dir,
    is_eager=True,
    expose_value=False,
    metavar="DIR",
    help="Run as if started in DIR (like git -C).",
)
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    callback=_set_quiet,
    expose_value=False,
    help="Print only data and errors, no progress or notes.",
)
@click.option(
    "--traceback",
    is_flag=True,
    callback=_set_traceback,
    is_eager=True,
    expose_value=False,
    help="Show the stack of an error (same as TRACEKEEPER_DEBUG=1).",
)
def cli() -> None:
    """Link every commit to the coding-agent session that produced it.

    \b
    Quick start:
      $ tracekeeperd &              # the daemon (or: tracekeeper service install)
      $ tracekeeper install         # in each repository
      $ tracekeeper status          # what is queued, done, failing and why
    """


def _notes_per_repo() -> list[dict[str, Any]]:
    """For each repository the daemon has seen: notes not yet pushed, per remote (no network)."""
    from tracekeeperd.config import load
    from tracekeeperd.errors import TracekeeperError
    from tracekeeperd.queue import Queue
    from tracekeeperd.repostate import NotesStates

    paths = resolve()
    if not paths.db.exists():
        return []
    try:
        queue = Queue(paths.db, readonly=True)
        try:
            known = queue.repositories()
        finally:
            queue.close()
        ref = load().notes_ref
    except sqlite3.Error:
        return []
    except TracekeeperError as exc:
        return [{"repo": None, "remotes": [], "error": str(exc)}]
    return NotesStates(ref).view(known)


def _print_status(data: dict[str, Any]) -> None:
    from rich.table import Table

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
    oldest = data.get("oldest_pending")
    if oldest:
        out.print(
            f"  oldest pending: {oldest['commit'][:12]} in {markup(oldest['repo'])} ({ago(oldest['created_at'], now)})"
        )
    jobs = data.get("jobs") or []
    if not jobs:
        return
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    for column in ("job", "state", "commit", "repo", "session", "tries", "next try", "detail"):
        table.add_column(column, overflow="fold")
    colours = {"failed": "red", "pending": "yellow", "uploading": "cyan", "done": "green"}
    for job in jobs:
        detail = job.get("last_error") or job.get("url") or ""
        removed = sum(((job.get("redactions") or {}).get("counts") or {}).values())
        if removed and not job.get("last_error"):
            detail += f" ({removed} secret{'s' if removed != 1 else ''} redacted)"
        table.add_row(
            str(job["id"]),
            f"[{colours.get(job['state'], 'white')}]{job['state']}[/]",
            job["commit"][:12],
            markup(Path(job["repo"]).name),
            markup(f"{job['agent']}/{job['session_id'][:13]}"),
            str(job["attempts"]),
            ago(job["next_attempt_at"], now) if job["state"] == "pending" else "-",
            markup(detail),
        )
    out.print()
    out.print(table)
    if data.get("jobs_not_shown"):
        out.print(f"  … and {data['jobs_not_shown']} older job(s) not shown")
    if queue["failed"]:
        out.print(
            f"  {queue['failed']} failed: fix the cause, then `tracekeeper retry [JOB]...`, "
            "or give up on them: `tracekeeper drop JOB... | --failed`"
        )


@cli.command(short_help="Show the daemon and the upload queue.")
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
    from ..api import not_responding, offline_status

    paths = resolve()
    try:
        data = _client(timeout=5).status(include_done=include_done)
        data["daemon"]["responding"] = True
    except DaemonNotResponding as exc:  # it holds the socket: running, but not answering
        data = offline_status(paths, include_done)
        pid, problem = not_responding(paths, exc)
        data["daemon"].update(running=True, responding=False, pid=pid, problem=problem)
    except DaemonUnavailable:
        data = offline_status(paths, include_done)
        data["daemon"]["responding"] = False
    except DaemonError as exc:  # still one JSON object (or the table) for what can be read
        data = offline_status(paths, include_done)
        data["daemon"].update(running=True, responding=True)
        data["error"] = f"the daemon answered {exc.status}: {exc}"
    data.setdefault("error", None)
    if "repos" not in data:  # a daemon's answer has them, kept current; without one, read them here
        data["repos"] = _notes_per_repo()
    if as_json:
        emit_json(data)
    else:
        _print_status(data)
    if data["error"]:
        raise ClientError(data["error"])


@cli.command(short_help="Upload everything pending now and wait.")
@click.option(
    "--timeout",
    default=60.0,
    show_default=True,
    type=click.FloatRange(0, 86400),
    help="Seconds to wait before giving up.",
)
def flush(timeout: float) -> None:
    """Try every pending job now (ignoring backoff) and wait until those jobs are done.

    Judges only the jobs pending when it starts: exits 4 if some are still pending after
    --timeout, 5 if some of them failed. Jobs that had failed before are mentioned, not
    counted (`tracekeeper retry` or `tracekeeper drop` deals with them).

    \b
    Examples:
      $ tracekeeper flush
      $ tracekeeper flush --timeout 300 && git push
    """
    # The daemon answers when the jobs settle or at --timeout; allow for a slow answer on top.
    answer = _client(timeout=timeout + 15).flush(timeout)
    if answer["pending"]:
        raise ClientError(
            f"{answer['pending']} job(s) still pending after {timeout:g}s: {answer.get('reason') or 'still uploading'}",
            exit_code=ExitStatus.TIMEOUT,
        )
    if answer["failed"]:
        first = answer["failed"][0]
        raise ClientError(
            f"{len(answer['failed'])} of the {answer['waited']} job(s) this flush waited on failed: "
            f"{first.get('last_error') or 'no reason recorded'} (see `tracekeeper status`)",
            exit_code=ExitStatus.JOBS_FAILED,
        )
    if answer["waited"]:
        click.echo(f"flushed: {answer['done']} done, nothing pending")
    else:
        click.echo("flushed: nothing was pending")
    if answer.get("failed_before"):
        click.echo(
            f"note: {answer['failed_before']} job(s) failed before this flush; `tracekeeper status` says why, "
            "then `tracekeeper retry` or `tracekeeper drop --failed`",
            err=True,
        )


def _not_failed(answer: dict[str, Any]) -> None:
    missing = answer.get("not_failed") or []
    if missing:
        names = ", ".join(str(i) for i in missing)
        raise ClientError(
            f"job {names} {'is' if len(missing) == 1 else 'are'} not a failed job (see `tracekeeper status`)"
        )


@cli.command(short_help="Re-queue failed jobs.")
@click.argument("jobs", nargs=-1, type=click.IntRange(min=1), metavar="[JOB]...")
def retry(jobs: tuple[int, ...]) -> None:
    """Put failed jobs back in the queue, after you fixed what `status` said was wrong: the
    JOBs named (ids from `tracekeeper status`), or every failed job and every commit file set
    aside in the spool.

    \b
    Examples:
      $ tracekeeper status          # read why they failed, fix it (token, bucket privacy...)
      $ tracekeeper retry && tracekeeper flush
      $ tracekeeper retry 12 13
    """
    answer = _client().retry(list(jobs) if jobs else None)
    click.echo(f"re-queued {answer['retried']} job(s)")
    if answer.get("respooled"):
        click.echo(f"put {answer['respooled']} set-aside commit file(s) back in the spool")
    if answer["still_failed"]:
        click.echo(
            f"{answer['still_failed']} job(s) cannot be retried (they never captured a transcript): "
            "`tracekeeper drop --failed` clears them"
        )
    _not_failed(answer)


@cli.command(short_help="Forget failed jobs.")
@click.argument("jobs", nargs=-1, type=click.IntRange(min=1), metavar="[JOB]...")
@click.option("--failed", "every", is_flag=True, help="Every failed job, and every commit file set aside in the spool.")
def drop(jobs: tuple[int, ...], every: bool) -> None:
    """Give up on failed jobs: the JOBs named (ids from `tracekeeper status`), or with --failed
    all of them. Their commits keep no link to a session; nothing else is touched.

    \b
    Examples:
      $ tracekeeper drop 12
      $ tracekeeper drop --failed && tracekeeper flush && git push
    """
    if jobs and every:
        raise click.UsageError("name jobs to drop or give --failed, not both")
    if not jobs and not every:
        raise click.UsageError("name the failed jobs to drop (ids from `tracekeeper status`), or give --failed")
    ids = list(jobs) if jobs else None
    answer = _client().drop(ids)
    click.echo(f"dropped {answer['dropped']} failed job(s)")
    if answer.get("discarded"):
        click.echo(f"deleted {answer['discarded']} set-aside commit file(s) from the spool")
    _not_failed(answer)


@cli.command(short_help="Show the agent conversation behind a commit.")
@click.argument("commit", default="HEAD")
@click.option(
    "-C", "repo", type=click.Path(exists=True, file_okay=False, path_type=Path), default=".", help="Repository."
)
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

    from .. import show as show_mod

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
        show_mod.render(sha, items, full=full)


@cli.command(
    "hook",
    short_help="Record an agent session (called by agent hooks).",
    context_settings={"ignore_unknown_options": True},
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def hook_command(args: tuple[str, ...]) -> None:
    """Read an agent's hook payload on stdin and record its session in the repository.

    Agents call this (see `tracekeeper agents install`); it prints nothing (Cursor: the JSON
    it expects) and always exits 0.
    """
    from .. import hookcmd

    raise SystemExit(hookcmd.main(list(args)))


def main(argv: list[str] | None = None) -> int:
    """The one place an exception becomes a message and an exit code (errors_table.TABLE).

    Commands and library code raise; nothing below prints `Error:` on its own. With
    TRACEKEEPER_DEBUG=1 or --traceback the stack is shown as well. errors_table is imported
    only when something went wrong, to keep the start-up path short.
    """
    import sys

    return run(cli, sys.argv[1:] if argv is None else argv, "tracekeeper")
