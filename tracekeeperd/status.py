"""The status view (`GET /v1/status`, `tracekeeper status --json`; shape in docs/cli.md).

One builder for both answers: the daemon's, and the CLI's when no daemon runs (the queue file
read-only). Standard library and the queue only, so an offline `status` never loads the
daemon's runtime (aiohttp, watchdog, the stores).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from . import spool
from .protocol import JobState
from .queue import Queue, damaged

#: What `status` lists without --all: every job not yet done.
UNFINISHED = (JobState.PENDING, JobState.UPLOADING, JobState.FAILED)


class StoreFacts(Protocol):
    """The parts of `stores.StoreInfo` the view shows (a protocol, so the stores stay unloaded)."""

    @property
    def kind(self) -> str: ...
    @property
    def location(self) -> str: ...
    @property
    def private(self) -> bool | None: ...
    @property
    def reachable(self) -> bool | None: ...
    @property
    def detail(self) -> str | None: ...
    @property
    def checked_at(self) -> float | None: ...


def spool_counts(spool_dir: Path) -> dict[str, Any]:
    """Entries waiting, and those set aside (the dead-letter folder) with the newest one's reason."""
    dead = spool.dead_letters(spool_dir)
    return {
        "waiting": len(spool.pending(spool_dir)),
        "dead_letter": len(dead),
        "dead_letter_dir": str(spool_dir / spool.DEAD_LETTER),
        "dead_letter_reason": spool.dead_letter_reason(dead[0]) if dead else None,
    }


def build(queue: Queue | None, spool_dir: Path, *, include_done: bool, daemon: Mapping[str, Any]) -> dict[str, Any]:
    """The whole view: `daemon` (its facts plus the spool), the queue's counts and its jobs.

    Blocking (SQLite, directory listings): the daemon calls it on its database thread. Without
    a queue (none created yet) every count is zero. A queue that cannot be read still gives the
    whole shape, with what went wrong in `error` (a damaged queue must not cost the answer).
    """
    states = None if include_done else UNFINISHED
    data: dict[str, Any] = {
        "daemon": {**daemon, "spool": spool_counts(spool_dir)},
        "queue": {state.value: 0 for state in JobState},
        "oldest_pending": None,
        "jobs": [],
        "jobs_not_shown": 0,
        "error": None,
    }
    if queue is None:
        return data
    try:
        data["queue"] = counts = queue.counts()
        oldest = queue.oldest_pending()
        data["oldest_pending"] = oldest.view() if oldest else None
        data["jobs"] = [job.view() for job in queue.jobs(states=states)]
        listed = sum(counts.values()) if states is None else sum(counts[s.value] for s in states)
        data["jobs_not_shown"] = max(0, listed - len(data["jobs"]))
    except sqlite3.OperationalError as exc:
        # A daemon creating or migrating the schema right now (each migration is one
        # transaction, so a reader sees the schema before it): nothing to show yet.
        if not str(exc).startswith(("no such table", "no such column")):
            data["error"] = f"cannot read the queue {queue.path}: {exc}"
    except sqlite3.DatabaseError as exc:
        data["error"] = damaged(queue.path, exc)
    return data


def stopped(socket: Path, state_dir: Path) -> dict[str, Any]:
    """The daemon's facts when nobody answers on its socket."""
    return {"running": False, "socket": str(socket), "state_dir": str(state_dir)}


def running(
    *,
    pid: int,
    version: str,
    socket: Path,
    state_dir: Path,
    started_at: float,
    notes_ref: str,
    store: StoreFacts,
    offline_until: float | None,
    offline_reason: str | None,
    discovery: dict[str, Any] | None,
) -> dict[str, Any]:
    """The running daemon's facts; `offline_*` are None unless the store's gate is closed now."""
    return {
        "running": True,
        "pid": pid,
        "version": version,
        "socket": str(socket),
        "state_dir": str(state_dir),
        "started_at": started_at,
        "notes_ref": notes_ref,
        "store": {
            "kind": store.kind,
            "location": store.location,
            "private": store.private,
            "reachable": store.reachable,
            "detail": store.detail,
            "checked_at": store.checked_at,
        },
        "offline_until": offline_until,
        "offline_reason": offline_reason,
        "discovery": discovery,
    }
