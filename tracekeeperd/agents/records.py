"""Tolerant access to the JSON records on transcript lines.

Transcripts are written by other programs, often while we read them, and their
schemas drift between versions. Every helper here answers None (or an empty
value) for a missing key, a wrong type or an unparsable line instead of raising,
so a parser can stay a flat sequence of "if this field is there, use it".
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from .base import Turn
from .paths import agent_from_path

Record = dict[str, object]

# Epoch numbers above this are milliseconds (Copilot hook payloads, pi's message.timestamp):
# 1e11 seconds is the year 5138, 1e11 milliseconds is 1973.
_MILLISECONDS_THRESHOLD = 1e11


def parse_record(line: bytes) -> Record | None:
    """Decode one line into a JSON object, or None when it is not one.

    None covers garbage, a record cut short by a crash, non-UTF-8 bytes and valid
    JSON that is not an object: callers skip or report such lines, never stop.
    """
    stripped = line.strip()
    if not stripped:
        return None
    try:
        value = json.loads(stripped)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None
    return value if isinstance(value, dict) else None


def as_record(value: object) -> Record | None:
    """Narrow a JSON value to an object."""
    return value if isinstance(value, dict) else None


def get_record(record: Record | None, key: str) -> Record | None:
    """The object under ``key``, if there is one."""
    return None if record is None else as_record(record.get(key))


def get_str(record: Record | None, key: str) -> str | None:
    """The string under ``key``, if there is one."""
    if record is None:
        return None
    value = record.get(key)
    return value if isinstance(value, str) else None


def get_list(record: Record | None, key: str) -> list[object]:
    """The array under ``key``, or an empty list."""
    if record is None:
        return []
    value = record.get(key)
    return value if isinstance(value, list) else []


def parse_timestamp(value: object) -> datetime | None:
    """Read an ISO 8601 string or an epoch number (seconds or milliseconds) as aware UTC.

    Agents write "…Z" with milliseconds (Codex, Claude), "+00:00" with microseconds
    (tools appending to Claude files) or epoch milliseconds (pi, Copilot hooks). A
    naive value is taken as UTC, which is what every agent here writes.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if value > _MILLISECONDS_THRESHOLD else float(value)
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def line_stamp(line: bytes, *nested: str) -> datetime | None:
    """A record's top-level ``timestamp``, else the ``timestamp`` of the first nested record that
    has one (Claude keeps file-history stamps in ``snapshot``, pi's messages in ``message``)."""
    record = parse_record(line)
    stamp = parse_timestamp((record or {}).get("timestamp"))
    for key in nested:
        if stamp is not None:
            break
        stamp = parse_timestamp((get_record(record, key) or {}).get("timestamp"))
    return stamp


def tool_call(
    names: dict[str, str],
    text: str,
    *,
    name: str | None,
    call_id: str | None,
    timestamp: datetime | None,
    line: int,
) -> Turn:
    """A tool-call turn that remembers its name by id: results arrive later, often out of order,
    and carry only the id."""
    if call_id and name:
        names[call_id] = name
    return Turn("tool_call", text, name=name, timestamp=timestamp, line=line, call_id=call_id)


def tool_result(
    names: dict[str, str],
    text: str,
    *,
    call_id: str | None,
    timestamp: datetime | None,
    line: int,
    fallback: str | None = None,
) -> Turn:
    """A tool-result turn named after its call (`tool_call` remembered the name by id), or
    after `fallback` when the call was never seen (a transcript cut before it)."""
    name = names.get(call_id) if call_id else None
    return Turn("tool_result", text, name=name or fallback, timestamp=timestamp, line=line, call_id=call_id)


def to_text(value: object) -> str:
    """Render a value for a reader: strings as they are, anything else as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def unreadable_turn(number: int, size: int) -> Turn:
    """A visible marker for a complete line that is not a JSON object.

    Reported rather than silently dropped so a reader of the uploaded transcript
    knows something is missing there. The bytes are not echoed: they may be a
    fragment of a secret that redaction cannot recognise out of context.
    """
    return Turn("system", f"unreadable line skipped ({size} bytes)", name="unreadable", line=number)


def records_in(lines: Iterable[bytes]) -> Iterator[Record]:
    """The lines that are JSON objects: what a session's metadata is read from (a damaged or
    half-written line says nothing about it, so it is skipped)."""
    for line in lines:
        record = parse_record(line)
        if record is not None:
            yield record


def numbered_records(lines: Iterable[tuple[int, bytes]]) -> Iterator[tuple[int, Record | Turn]]:
    """Each numbered line as its record, or as an unreadable-line turn when it is damaged (blank
    lines are skipped): a conversation shows where it lost a line instead of hiding it."""
    for number, line in lines:
        record = parse_record(line)
        if record is not None:
            yield number, record
        elif line.strip():
            yield number, unreadable_turn(number, len(line))


def sniff(agent: str, path: Path, first_lines: Sequence[bytes], looks_like: Callable[[Record], bool]) -> bool:
    """Content first, path second: the shared body of every format's ``matches``.

    If any first line is a JSON object, the content decides (a Claude transcript
    copied under ~/.codex is still Claude, and ~/.codex/history.jsonl is not a
    rollout). Only an empty or still-being-written file falls back to the path.
    """
    records = [record for record in map(parse_record, first_lines) if record is not None]
    if records:
        return any(looks_like(record) for record in records)
    return agent_from_path(path) == agent


def sniffer(agent: str, looks_like: Callable[[Record], bool]) -> Callable[[Path, Sequence[bytes]], bool]:
    """A format's ``matches``: ``sniff`` bound to its agent and its record test, so every format
    decides content first, path second by the same code."""

    def matches(path: Path, first_lines: Sequence[bytes]) -> bool:
        return sniff(agent, path, first_lines, looks_like)

    return matches
