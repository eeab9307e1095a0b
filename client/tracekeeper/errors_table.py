"""ONE table from exception type to (message, hint, exit code), used by `cli.main` only.

Modelled on huggingface_hub's `cli/_errors.py` + `hf.py:main` and httpie's `ExitStatus` +
`raw_main`: commands raise, the entry point decides what the user sees. The first row whose type
matches (in order, so subclasses come first) wins; anything unmatched is an unexpected error
shown as one line unless TRACEKEEPER_DEBUG=1 or --traceback asks for the stack.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

from .output import ExitStatus


@dataclass(frozen=True)
class Row:
    """How one exception type is shown: `message` renders the line, `hint` is the next step."""

    type_path: str  # "module:Class", resolved only when an exception is being mapped
    message: Callable[[BaseException], str]
    hint: Callable[[BaseException], str | None]
    exit_code: Callable[[BaseException], int]


def _first_line(exc: BaseException) -> str:
    """An engine's or library's text may span lines; `Error:` promises one."""
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def _each_line(exc: BaseException) -> str:
    """A configuration can have several problems: one `Error:` line each (config.load lists them)."""
    lines = [" ".join(line.split()) for line in str(exc).splitlines() if line.strip()]
    return "\n".join(lines) or type(exc).__name__


def _os_message(exc: BaseException) -> str:
    assert isinstance(exc, OSError)
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or _first_line(exc)}"


def _hub_message(exc: BaseException) -> str:
    """hub_errors' words for the failure (its one owner), then the Hub's own message
    (huggingface_hub's `server_message`) when it sent one, never the request dump."""
    from .hub_errors import describe

    server = (getattr(exc, "server_message", None) or "").strip()
    return describe(exc, access="use")[0] + (f": {_first_line(Exception(server))}" if server else "")


def _hub_hint(exc: BaseException) -> str:
    """The next step for that status (log in, wait, check HF_ENDPOINT...), from hub_errors."""
    from .hub_errors import describe

    return describe(exc, access="use")[1] or "tracekeeper doctor checks the store; --traceback shows details"


def _attr_hint(exc: BaseException) -> str | None:
    return getattr(exc, "hint", None)


def _attr_code(exc: BaseException) -> int:
    return int(getattr(exc, "exit_code", ExitStatus.ERROR))


def _const(code: int) -> Callable[[BaseException], int]:
    return lambda _exc: code


def _no_hint(_exc: BaseException) -> str | None:
    return None


def _not_responding(exc: BaseException) -> str:
    """A daemon that holds the socket but does not answer: stopped (`kill -CONT`) or hung (restart)."""
    from tracekeeperd.paths import resolve

    from .api import DaemonNotResponding, not_responding

    assert isinstance(exc, DaemonNotResponding)
    return not_responding(resolve(), exc)[1]


TABLE: tuple[Row, ...] = (
    Row("tracekeeper.api:DaemonNotResponding", _not_responding, _no_hint, _const(ExitStatus.DAEMON_UNAVAILABLE)),
    Row(
        "tracekeeper.api:DaemonUnavailable",
        _first_line,
        lambda _e: "start it with: tracekeeperd   (or: tracekeeper service install)",
        _const(ExitStatus.DAEMON_UNAVAILABLE),
    ),
    Row(
        "tracekeeper.api:DaemonError",
        lambda e: f"the daemon answered {getattr(e, 'status', '?')}: {_first_line(e)}",
        lambda _e: "see the daemon's log, or: tracekeeper doctor",
        _const(ExitStatus.ERROR),
    ),
    Row(
        "tracekeeper.show:StoreUnreadable",
        _first_line,
        lambda e: (
            f"log in with an account that can read {getattr(e, 'location', 'the bucket')}"
            " (`hf auth login`, or set HF_TOKEN), then run this again"
        ),
        _const(ExitStatus.ERROR),
    ),
    Row(
        "tracekeeper.search:SearchQueryError",
        _first_line,
        lambda _e: (
            "quote words with punctuation as a phrase, e.g. tracekeeper search '\"foo-bar\"'"
            ' (FTS5 syntax: words, "phrases", OR, NOT, prefix*)'
        ),
        _const(ExitStatus.USAGE),
    ),
    Row(
        "tracekeeper.search:NotIndexed",
        _first_line,
        lambda _e: "build it: tracekeeper search --reindex   (on a clone, tracekeeper pull first)",
        _const(ExitStatus.ERROR),
    ),
    Row(
        "tracekeeper.search:ReindexIncomplete",
        _first_line,
        lambda _e: "tracekeeper show <commit> says more about a session; the rest is searchable",
        _const(ExitStatus.ERROR),
    ),
    Row("tracekeeper.errors:ClientError", _first_line, _attr_hint, _attr_code),
    Row("tracekeeperd.errors:ConfigError", _each_line, _attr_hint, _const(ExitStatus.ERROR)),
    Row("tracekeeperd.errors:TracekeeperError", _first_line, _attr_hint, _const(ExitStatus.ERROR)),
    Row("tracekeeperd.redact:RedactionError", _first_line, _no_hint, _const(ExitStatus.ERROR)),
    Row("sqlite3:DatabaseError", lambda e: f"the queue database: {_first_line(e)}", _no_hint, _const(ExitStatus.ERROR)),
    # Transport failures: the library's text names its internals ("Request middleware error",
    # a temp file); the line says what failed, the stack (--traceback) keeps the details.
    # hub_errors.describe owns the wording (the same as `show` and `forget` give).
    Row("huggingface_hub.errors:HfHubHTTPError", _hub_message, _hub_hint, _const(ExitStatus.ERROR)),
    Row("httpx2:TransportError", _hub_message, _hub_hint, _const(ExitStatus.ERROR)),
    Row("httpx:TransportError", _hub_message, _hub_hint, _const(ExitStatus.ERROR)),
    Row("ConnectionError", _hub_message, _hub_hint, _const(ExitStatus.ERROR)),
    Row("TimeoutError", _hub_message, _hub_hint, _const(ExitStatus.ERROR)),
    Row("OSError", _os_message, _no_hint, _const(ExitStatus.ERROR)),
)


def _resolve(type_path: str) -> type[BaseException] | None:
    """Only look at modules already imported: an exception of a type never imported cannot be live."""
    module_name, _, name = type_path.rpartition(":")
    module = sys.modules.get(module_name or "builtins")
    found = getattr(module, name, None) if module is not None else None
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def lookup(exc: BaseException) -> tuple[str, str | None, int] | None:
    """The (message, hint, exit code) for a known exception, or None for an unexpected one."""
    for row in TABLE:
        kind = _resolve(row.type_path if ":" in row.type_path else f"builtins:{row.type_path}")
        if kind is not None and isinstance(exc, kind):
            return row.message(exc), row.hint(exc), row.exit_code(exc)
    return None


def report(exc: BaseException) -> int:
    """Print a known or unexpected error as `Error: ...` (+ `hint: ...`), control characters
    spelled out (safetext.visible); return its exit code."""
    found = lookup(exc)
    if found is None:
        message = f"unexpected {type(exc).__name__}: {_first_line(exc)}"
        hint: str | None = "set TRACEKEEPER_DEBUG=1 (or pass --traceback) for the traceback"
        code = int(ExitStatus.ERROR)
    else:
        message, hint, code = found
    # Messages quote notes (a teammate's) and transcript paths and ids: hostile text, on a
    # terminal. Spelled out here, once, rather than by every `raise` that quotes something.
    from .safetext import visible

    for line in message.splitlines() or [""]:
        sys.stderr.write(f"Error: {visible(line)}\n")
    if hint:
        sys.stderr.write(f"hint: {visible(hint)}\n")
    return code
