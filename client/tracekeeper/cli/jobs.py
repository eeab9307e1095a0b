"""`tracekeeper flush`, `retry`, `drop`: ask the daemon to act on its queue now."""

from __future__ import annotations

import contextlib
from typing import Any

import click

from tracekeeperd.paths import resolve

from ..api import Client
from ..errors import ClientError
from ..output import ExitStatus, Progress, info, progress_shown


def _client(timeout: float = 10.0) -> Client:
    return Client(resolve().socket, timeout=timeout)


@click.command("flush", short_help="Upload everything pending now and wait.")
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
    answer = _flush_with_progress(timeout)
    failed = answer["failed"]
    info(f"{answer['done']} uploaded, {answer['pending']} pending" + (f", {len(failed)} failed" if failed else ""))
    if answer["pending"]:
        raise ClientError(
            f"{answer['pending']} job(s) still pending after {timeout:g}s: {answer.get('reason') or 'still uploading'}",
            exit_code=ExitStatus.TIMEOUT,
        )
    if failed:
        first = failed[0]
        raise ClientError(
            f"{len(failed)} of the {answer['waited']} job(s) this flush waited on failed: "
            f"{first.get('last_error') or 'no reason recorded'} (see `tracekeeper status`)",
            exit_code=ExitStatus.JOBS_FAILED,
        )
    if answer.get("failed_before"):
        click.echo(
            f"note: {answer['failed_before']} job(s) failed before this flush; `tracekeeper status` says why, "
            "then `tracekeeper retry` or `tracekeeper drop --failed`",
            err=True,
        )


#: How often a flush on a terminal asks the daemon how far it got.
POLL = 0.5


def _unsettled(client: Client) -> int:
    queue = client.status()["queue"]
    return int(queue["pending"]) + int(queue["uploading"])


def _flush_with_progress(timeout: float) -> dict[str, Any]:
    """The daemon's flush answer; on a terminal, a progress bar meanwhile, from its status.

    The flush request blocks until the jobs settle, so it runs on a thread while this one polls
    `/v1/status` (the socket API has no progress stream). Piped or with -q: just the request.
    """
    flusher = _client(timeout=timeout + 15)
    if not progress_shown():
        return flusher.flush(timeout)
    from concurrent.futures import ThreadPoolExecutor
    from concurrent.futures import TimeoutError as Pending

    poller = _client(timeout=5)
    total = _unsettled(poller)
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(flusher.flush, timeout)
        with Progress(f"uploading {total} job(s)" if total else "flushing", total=total or None) as bar:
            while True:
                try:
                    return future.result(timeout=POLL)
                except Pending:
                    with contextlib.suppress(ClientError):  # a missed update is no reason to stop
                        bar.update(max(0, total - _unsettled(poller)))


def _not_failed(answer: dict[str, Any]) -> None:
    missing = answer.get("not_failed") or []
    if missing:
        names = ", ".join(str(i) for i in missing)
        raise ClientError(
            f"job {names} {'is' if len(missing) == 1 else 'are'} not a failed job (see `tracekeeper status`)"
        )


@click.command("retry", short_help="Re-queue failed jobs.")
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


@click.command("drop", short_help="Forget failed jobs.")
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
