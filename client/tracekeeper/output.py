"""One output sink: data to stdout (rich on a terminal, JSON with --json); errors are raised and
printed by `errors_table` (via `runner.run`), never here."""

from __future__ import annotations

import json
import sys
import time
from enum import IntEnum
from typing import Any


class ExitStatus(IntEnum):
    """Documented exit codes (docs/cli.md): scripts can tell "daemon down" from "job failed".
    The one list: errors_table maps exceptions onto it, commands raise with it."""

    OK = 0
    ERROR = 1
    USAGE = 2
    DAEMON_UNAVAILABLE = 3
    TIMEOUT = 4
    JOBS_FAILED = 5
    INTERRUPTED = 130


_QUIET = [False]


def set_quiet(quiet: bool) -> None:
    """`tracekeeper -q`: notes and progress go silent; data (stdout) and errors (stderr) stay."""
    _QUIET[0] = quiet


def info(message: str) -> None:
    """A note for a person at the terminal (what was done, what to do next), not data.

    Notes quote paths, config files and remotes: outside text. Spelled out here, once
    (safetext.visible, one line), as `errors_table.report` does for errors, so no caller can
    let a control sequence in such a name act on the terminal."""
    if not _QUIET[0]:
        sys.stdout.write(_inert(message) + "\n")


def warn(message: str) -> None:
    """Something that did not stop the command but may need the user (stderr, even with -q)."""
    sys.stderr.write(f"warning: {_inert(message)}\n")


def _inert(message: str) -> str:
    from .safetext import visible

    return visible(message)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


def ago(ts: float | None, now: float | None = None) -> str:
    if ts is None:
        return "-"
    delta = (now or time.time()) - ts
    future = delta < 0
    delta = abs(delta)
    if delta < 1:
        text = "now"
        return text
    if delta < 90:
        text = f"{delta:.0f}s"
    elif delta < 5400:
        text = f"{delta / 60:.0f}m"
    elif delta < 172800:
        text = f"{delta / 3600:.0f}h"
    else:
        text = f"{delta / 86400:.0f}d"
    return f"in {text}" if future else f"{text} ago"


def progress_shown() -> bool:
    """Progress is drawn for a person watching: stderr a terminal, and no -q."""
    return not _QUIET[0] and sys.stderr.isatty()


class Progress:
    """A rich progress line on stderr while something slow runs (`flush`, `push`, `pull`);
    nothing at all unless `progress_shown()`. `total=None` draws a spinner. Transient: once
    done the line goes, and what stays is the command's summary line on stdout."""

    def __init__(self, description: str, total: int | None = None) -> None:
        self.description = description
        self.total = total
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if progress_shown():
            from rich import progress as rp

            columns: list[Any] = [rp.SpinnerColumn(), rp.TextColumn("{task.description}")]
            if self.total is not None:
                columns += [rp.BarColumn(), rp.MofNCompleteColumn()]
            columns.append(rp.TimeElapsedColumn())
            self._progress = rp.Progress(*columns, console=console(stderr=True), transient=True)
            self._progress.start()
            from .safetext import markup  # the description is plain text: a remote's `[/]` is not markup

            self._task = self._progress.add_task(markup(self.description), total=self.total)
        return self

    def update(self, completed: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=completed)

    def __exit__(self, *_exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


def console(*, stderr: bool = False) -> Any:
    """rich, for styled output: colour on a terminal, plain text when piped (rich decides).

    Lines are never wrapped (soft_wrap), on a terminal either, as git and gh do: rich would
    break them at 80 columns when piped and fold a long URL on a terminal, and a URL broken in
    two can no longer be copied or grepped. What is printed quotes transcripts and notes:
    `:warning:` in them stays text (emoji=False).
    """
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, emoji=False, soft_wrap=True)
