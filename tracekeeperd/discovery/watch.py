"""The watchdog side of the session index: which events, which observer, and what the kernel says.

Three things watchdog 7.1.0 does not tell its user, and how we learn them anyway:

* **A subdirectory it could not watch.** ``InotifyWatchGroup._add_callback`` swallows the
  ``OSError`` for every directory but the root, so when ``fs.inotify.max_user_watches`` runs
  out half-way through a tree (or when a new session directory appears later), events from
  there are silently lost. Only a failure on the root raises (``OSError(ENOSPC, "inotify
  watch limit reached")``). The kernel lists every watch of an inotify instance in
  ``/proc/self/fdinfo/<fd>`` (``inotify wd:… ino:<hex>…``), so ``watched_inodes`` compares
  the directories we walked with the inodes actually watched. The instance's fd is found by
  diffing ``/proc/self/fd`` around the observer's construction (``inotify_fds``).
* **A queue overflow.** ``IN_Q_OVERFLOW`` is only logged ("Inotify queue overflowed; …"),
  once by the instance and once per recursive watch group with its root path.
  ``OverflowListener`` is a logging handler on those two loggers that turns the records into
  reconcile requests.
* **Our own reads.** watchdog's default mask includes ``IN_OPEN``/``IN_CLOSE_NOWRITE``, so
  reading a transcript would wake the index again. ``FILE_EVENTS`` narrows the mask to
  writes, creations, deletions and moves.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import sys
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver

#: What a root watch reports: content changes and the comings and goings of files and directories.
FILE_EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileDeletedEvent,
    DirCreatedEvent,
    DirMovedEvent,
    DirDeletedEvent,
]
#: What the watch on a missing root's nearest existing ancestor reports: directories appearing.
DIR_EVENTS: list[type[FileSystemEvent]] = [DirCreatedEvent, DirMovedEvent, DirDeletedEvent]

#: The two loggers watchdog 7.1.0 reports IN_Q_OVERFLOW through (and nothing else does).
OVERFLOW_LOGGERS = ("watchdog.observers.inotify_c", "watchdog.observers.inotify")
_OVERFLOW_TEXT = "Inotify queue overflowed"

_SYSCTL = Path("/proc/sys/fs/inotify")


class Handler(FileSystemEventHandler):
    """Forwards every event to one callback: the index does its own dispatching."""

    def __init__(self, callback: Callable[[FileSystemEvent], None]) -> None:
        super().__init__()
        self._callback = callback

    def dispatch(self, event: FileSystemEvent) -> None:
        self._callback(event)


class OverflowListener(logging.Handler):
    """Turns watchdog's overflow log records into calls: ``callback(root_path or None)``.

    The instance-wide record has no path (None: every inotify root lost events); the
    per-group record names the recursive watch's root, which identifies ours.
    """

    def __init__(self, callback: Callable[[str | None], None]) -> None:
        super().__init__(level=logging.WARNING)
        self._callback = callback

    def emit(self, record: logging.LogRecord) -> None:
        if not isinstance(record.msg, str) or not record.msg.startswith(_OVERFLOW_TEXT):
            return
        path: str | None = None
        if isinstance(record.args, tuple) and record.args and isinstance(record.args[0], bytes | str):
            path = os.fsdecode(record.args[0])
        self._callback(path)

    def attach(self) -> None:
        for name in OVERFLOW_LOGGERS:
            logging.getLogger(name).addHandler(self)

    def detach(self) -> None:
        for name in OVERFLOW_LOGGERS:
            logging.getLogger(name).removeHandler(self)


def observer_kind(observer: BaseObserver) -> str:
    """ "inotify", "polling", or the native observer's name ("fsevents", "kqueue", …)."""
    for cls in type(observer).__mro__:  # by name: importing the inotify module fails off Linux
        if cls.__name__ == "InotifyObserver":
            return "inotify"
        if cls.__name__ == "PollingObserver":
            return "polling"
    return type(observer).__name__.removesuffix("Observer").lower() or "native"


def inotify_fds() -> set[int]:
    """The inotify instances this process holds (Linux; empty elsewhere)."""
    found: set[int] = set()
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/self/fd/{name}") == "anon_inode:inotify":
                    found.add(int(name))
    return found


def watched_inodes(fd: int) -> set[int] | None:
    """Inodes of the directories the inotify instance ``fd`` watches, or None if unknowable."""
    try:
        text = Path(f"/proc/self/fdinfo/{fd}").read_text()
    except OSError:
        return None
    inodes: set[int] = set()
    for line in text.splitlines():
        if line.startswith("inotify wd:"):
            for field in line.split():
                if field.startswith("ino:"):
                    inodes.add(int(field[4:], 16))
    return inodes


def has_pending(fd: int) -> bool:
    """True when the kernel holds unread events for the inotify instance ``fd``."""
    if not hasattr(select, "poll"):
        return False
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    try:
        return bool(poller.poll(0))
    except OSError:
        return False


def _sysctl(name: str) -> str:
    try:
        return (_SYSCTL / name).read_text().strip()
    except OSError:
        return "?"


def limit_advice(code: int | None, poll_interval: float) -> str:
    """What to tell the user when inotify cannot watch a root, with the current limit's value."""
    if sys.platform != "linux":
        return f"native file watching failed; polling every {poll_interval:g} s"
    if code == errno.EMFILE:
        return (
            f"inotify instance limit reached (fs.inotify.max_user_instances = {_sysctl('max_user_instances')},"
            f" or the open-files limit); polling every {poll_interval:g} s. Raise it with"
            " `sudo sysctl fs.inotify.max_user_instances=512`, persist it in /etc/sysctl.d/90-tracekeeper.conf,"
            " then restart tracekeeperd"
        )
    return (
        f"inotify watch limit reached (fs.inotify.max_user_watches = {_sysctl('max_user_watches')});"
        f" polling every {poll_interval:g} s. Raise it with `sudo sysctl fs.inotify.max_user_watches=524288`,"
        " persist it in /etc/sysctl.d/90-tracekeeper.conf, then restart tracekeeperd"
    )
