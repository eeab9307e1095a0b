"""The status view (`GET /v1/status`, `tracekeeper status --json`; shape in docs/cli.md).

One builder for both answers: the daemon's, and the CLI's when no daemon runs (the queue file
read-only). Standard library and the queue only, so an offline `status` never loads the
daemon's runtime (aiohttp, watchdog, the stores).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from . import spool
from .protocol import JobState
from .queue import Queue

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


def spool_counts(spool_dir: Path) -> dict[str, int]:
    """Commits the hook spooled that no daemon took yet, and the files set aside as unreadable."""
    bad = spool_dir / "bad"
    return {
        "waiting": len(spool.pending(spool_dir)),
        "unreadable": len([p for p in bad.iterdir() if p.name.endswith(spool.SUFFIX)]) if bad.exists() else 0,
    }


def build(queue: Queue | None, spool_dir: Path, *, include_done: bool, daemon: Mapping[str, Any]) -> dict[str, Any]:
    """The whole view: `daemon` (its facts plus the spool), the queue's counts and its jobs.

    Blocking (SQLite, directory listings): the daemon calls it on its database thread. Without
    a queue (none created yet) every count is zero.
    """
    states = None if include_done else UNFINISHED
    if queue is None:
        counts = {state.value: 0 for state in JobState}
        oldest, jobs = None, []
    else:
        counts = queue.counts()
        oldest = queue.oldest_pending()
        jobs = [job.view() for job in queue.jobs(states=states)]
    listed = sum(counts.values()) if states is None else sum(counts[s.value] for s in states)
    return {
        "daemon": {**daemon, "spool": spool_counts(spool_dir)},
        "queue": counts,
        "oldest_pending": oldest.view() if oldest else None,
        "jobs": jobs,
        "jobs_not_shown": max(0, listed - len(jobs)),
    }


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
