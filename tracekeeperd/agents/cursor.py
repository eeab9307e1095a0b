"""Cursor agent transcripts: ``~/.cursor/projects/<slug>/agent-transcripts/[<id>/]<id>.jsonl``.

Lines are ``{"role": "user"|"assistant", "message": {"content": [blocks]}}`` with
text and Claude-shaped ``tool_use`` blocks (``name``, ``input``; no ``id``).
There are **no ids, timestamps or cwd** in the lines, so this parser knows less
than the others and says so:

* session id is the file stem (the hook's ``conversation_id``);
* cwd is None: the hook's ``workspace_roots`` is the source of truth, and the
  directory slug is lossy (compare with ``cursor_project_slug(root)``);
* the only clock is an optional ``<timestamp>…</timestamp>`` prefix Cursor puts
  before some user messages; it is used when it parses as ISO 8601, and
  ``last_activity_at`` is None (use the file's mtime);
* tool results are not known to be recorded; ``tool_result`` blocks are read if
  they appear, in Claude's shape.

Written from entireio/cli's ``agent/cursor/AGENT.md`` without a real fixture.
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
    get_record,
    get_str,
    numbered_records,
    parse_record,
    parse_timestamp,
    sniffer,
    to_text,
    tool_call,
    tool_result,
)

NAME = "cursor"

_TIMESTAMP_PREFIX = re.compile(r"\A\s*<timestamp>(.*?)</timestamp>\s*", re.DOTALL)
_USER_QUERY = re.compile(r"<user_query>\s*(.*?)\s*</user_query>", re.DOTALL)


def _looks_like(record: Record) -> bool:
    return (
        get_str(record, "role") in {"user", "assistant"}
        and get_record(record, "message") is not None
        and "type" not in record
    )


#: Bare ``{role, message}`` records with no ``type``, ids or timestamps.
matches = sniffer(NAME, _looks_like)


def _split_prompt(text: str) -> tuple[str, datetime | None]:
    """Strip the anchored ``<timestamp>`` prefix and unwrap ``<user_query>``.

    Only a leading timestamp is Cursor's; one inside pasted text is content.
    """
    when: datetime | None = None
    prefix = _TIMESTAMP_PREFIX.match(text)
    if prefix:
        when = parse_timestamp(prefix.group(1))
        text = text[prefix.end() :]
    query = _USER_QUERY.search(text)
    return (query.group(1) if query else text.strip()), when


def _user_stamp(record: Record | None) -> datetime | None:
    if get_str(record, "role") != "user":
        return None
    content = (get_record(record, "message") or {}).get("content")
    for item in content if isinstance(content, list) else []:
        text = get_str(as_record(item), "text")
        if text is not None:
            return _split_prompt(text)[1]
    return None


def line_timestamp(line: bytes) -> datetime | None:
    """Only user lines with a parsable ``<timestamp>`` prefix have a time."""
    return _user_stamp(parse_record(line))


def session_meta(path: Path, lines: Iterable[bytes]) -> SessionMeta:
    """Id from the path; start from the first timestamp tag if any; no cwd, no last activity."""
    started: datetime | None = None
    for line in lines:
        started = _user_stamp(parse_record(line))
        if started is not None:
            break
    return SessionMeta(
        agent=NAME,
        session_id=session_id_from_path(path),
        cwd=None,
        started_at=started,
        last_activity_at=None,
    )


def turns(lines: Iterable[tuple[int, bytes]]) -> Iterator[Turn]:
    """User queries (unwrapped), assistant text, tool_use calls with input."""
    tool_names: dict[str, str] = {}
    for number, record in numbered_records(lines):
        if isinstance(record, Turn):
            yield record
            continue
        role = get_str(record, "role")
        content = (get_record(record, "message") or {}).get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        for item in content if isinstance(content, list) else []:
            block = as_record(item)
            block_type = get_str(block, "type")
            if block is None:
                continue
            if block_type == "text":
                text = get_str(block, "text") or ""
                when = None
                if role == "user":
                    text, when = _split_prompt(text)
                if text.strip() and role in {"user", "assistant"}:
                    yield Turn("user" if role == "user" else "assistant", text, timestamp=when, line=number)
            elif block_type == "tool_use":
                yield tool_call(
                    tool_names,
                    to_text(block.get("input")),
                    name=get_str(block, "name"),
                    call_id=get_str(block, "id"),
                    timestamp=None,
                    line=number,
                )
            elif block_type == "tool_result":
                call_id = get_str(block, "tool_use_id")
                text = to_text(block.get("content"))
                yield tool_result(tool_names, text, call_id=call_id, timestamp=None, line=number)


EDIT_TOOLS: dict[str, Converter] = {
    "StrReplace": replace_tool(("path",), "old_string", "new_string"),
    "Write": write_tool(("path",), ("contents", "content")),
}


#: The session's StrReplace / Write calls, with the prompts that led to them.


# No usage reader: Cursor's transcript lines are bare ``{role, message}`` (docs/agents.md §4) with
# no token counts, so every slice's usage is unknown.
FORMAT = TranscriptFormat(NAME, matches, session_meta, turns, line_timestamp, edit_tools=EDIT_TOOLS, line_local=True)
