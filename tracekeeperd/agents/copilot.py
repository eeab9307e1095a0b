"""GitHub Copilot CLI sessions (``~/.copilot/session-state/<sessionId>/events.jsonl``).

Each line is an event ``{type, data, id, timestamp, parentId}`` with camelCase
fields inside ``data``. ``session.start`` carries ``sessionId``, ``startTime`` and
``context{cwd, gitRoot, branch, repository}``.

A tool call can appear twice: as a ``toolRequests`` entry of ``assistant.message``
(what the model asked) and as ``tool.execution_start`` (what ran). The request
is used; an execution start is reported only for a ``toolCallId`` no request
announced. ``user.message`` may have an empty ``content`` with the text only in
``transformedContent`` wrapped in Copilot's own ``<current_datetime>`` /
``<reminder>`` blocks (entireio/cli#1070); those blocks are stripped.

Written from entireio/cli's ``agent/copilotcli`` notes and public readers of
this format, without a real fixture: ``toolRequests`` entries are read as
``{toolCallId, name, arguments}`` and results as ``result.content`` or
``error.message``, which is unverified.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

from .base import SessionMeta, TranscriptFormat, Turn
from .edits import Converter, replace_tool, write_tool
from .paths import session_id_from_path
from .records import (
    Record,
    as_record,
    get_list,
    get_record,
    get_str,
    line_stamp,
    numbered_records,
    parse_timestamp,
    records_in,
    sniffer,
    to_text,
    tool_call,
    tool_result,
)

NAME = "copilot"

_WRAPPER_NOISE = re.compile(r"<current_datetime>.*?</current_datetime>|<reminder>.*?</reminder>", re.DOTALL)


def _looks_like(record: Record) -> bool:
    kind = get_str(record, "type")
    return kind is not None and "." in kind and get_record(record, "data") is not None


#: Dotted event types (``session.start``, ``user.message``) with a ``data`` object.
matches = sniffer(NAME, _looks_like)


def line_timestamp(line: bytes) -> datetime | None:
    """The event's ISO ``timestamp``."""
    return line_stamp(line)


def session_meta(path: Path, lines: Iterable[bytes]) -> SessionMeta:
    """Id, cwd and start from the first ``session.start``; else the ``<sessionId>/`` directory."""
    start: Record | None = None
    stamps: list[datetime] = []
    for record in records_in(lines):
        if start is None and get_str(record, "type") == "session.start":
            start = get_record(record, "data") or {}
        stamp = parse_timestamp(record.get("timestamp"))
        if stamp is not None:
            stamps.append(stamp)
    started = parse_timestamp((start or {}).get("startTime"))
    return SessionMeta(
        agent=NAME,
        session_id=get_str(start, "sessionId") or session_id_from_path(path),
        cwd=get_str(get_record(start, "context"), "cwd"),
        started_at=started or (min(stamps) if stamps else None),
        last_activity_at=max(stamps) if stamps else None,
    )


def _result_text(data: Record) -> str:
    result = data.get("result")
    record = as_record(result)
    if record is not None:
        return to_text(record.get("content", record.get("detailedContent", record)))
    if result is not None:
        return to_text(result)
    error = data.get("error")
    return get_str(as_record(error), "message") or to_text(error)


def turns(lines: Iterable[tuple[int, bytes]]) -> Iterator[Turn]:
    """User prompts, assistant text, tool requests with arguments, tool completions, session errors."""
    tool_names: dict[str, str] = {}
    for number, record in numbered_records(lines):
        if isinstance(record, Turn):
            yield record
            continue
        kind = get_str(record, "type")
        data = get_record(record, "data") or {}
        when = parse_timestamp(record.get("timestamp"))
        if kind == "user.message":
            text = get_str(data, "content") or ""
            if not text.strip():
                text = _WRAPPER_NOISE.sub("", get_str(data, "transformedContent") or "").strip()
            if text.strip():
                yield Turn("user", text, timestamp=when, line=number)
        elif kind == "assistant.message":
            text = get_str(data, "content") or ""
            if text.strip():
                yield Turn("assistant", text, timestamp=when, line=number)
            for item in get_list(data, "toolRequests"):
                request = as_record(item)
                yield tool_call(
                    tool_names,
                    to_text((request or {}).get("arguments")),
                    name=get_str(request, "name") or get_str(request, "toolName"),
                    call_id=get_str(request, "toolCallId"),
                    timestamp=when,
                    line=number,
                )
        elif kind == "tool.execution_start":
            call_id = get_str(data, "toolCallId")
            if call_id is None or call_id not in tool_names:
                yield tool_call(
                    tool_names,
                    to_text(data.get("arguments")),
                    name=get_str(data, "toolName"),
                    call_id=call_id,
                    timestamp=when,
                    line=number,
                )
        elif kind == "tool.execution_complete":
            call_id = get_str(data, "toolCallId")
            text = _result_text(data)
            fallback = get_str(data, "toolName")
            yield tool_result(tool_names, text, call_id=call_id, timestamp=when, line=number, fallback=fallback)
        elif kind in {"session.error", "abort"}:
            text = get_str(data, "message") or get_str(data, "reason") or kind
            yield Turn("system", text, name=kind, timestamp=when, line=number)


EDIT_TOOLS: dict[str, Converter] = {
    "edit": replace_tool(("path",), "old_str", "new_str"),
    "create": write_tool(("path",), ("file_text",)),
}


#: The session's edit / create calls, with the prompts that led to them.
#:
#: The tool and argument names are the real CLI's (see agents/edits.py); how events.jsonl
#: records the calls is as unverified as the rest of this format (see the docstring above).


# No usage reader: github/copilot-sdk @ cc0438d6 nodejs/src/generated/session-events.ts says
# ``assistant.usage`` (per-call input, output and cache tokens) is ``ephemeral: true``, "not persisted
# to the session event log on disk". What events.jsonl keeps is ``assistant.message.outputTokens``
# (output only) and, at ``session.shutdown``, ``modelMetrics`` totals for the whole process run,
# which cannot be cut per commit; so every slice's usage is unknown.
FORMAT = TranscriptFormat(NAME, matches, session_meta, turns, line_timestamp, edit_tools=EDIT_TOOLS, line_local=True)
