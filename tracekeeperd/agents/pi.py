"""pi coding agent sessions (``~/.pi/agent/sessions/--<cwd with / as ->--/<ts>_<uuid>.jsonl``).

Line 1 is the header ``{"type": "session", "version": 3, "id", "timestamp", "cwd"}``;
every later entry has ``id``/``parentId`` and forms a tree (branching inside one
file). Turns are yielded in file order, which for a branched session interleaves
branches: this module does not pick a leaf.

Messages (``type: "message"``) hold an AI-library message: ``user``,
``assistant`` (text / thinking / toolCall blocks), ``toolResult`` and
``bashExecution`` (a command the user ran with ``!``).
"""

from __future__ import annotations

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
    line_stamp,
    numbered_records,
    parse_timestamp,
    records_in,
    sniffer,
    to_text,
)
from .usage import Charge, CountKeys, UsageState, charge_once, usage_records

NAME = "pi"

_ENTRY_TYPES = frozenset(
    {
        "message",
        "model_change",
        "thinking_level_change",
        "compaction",
        "branch_summary",
        "custom",
        "custom_message",
        "label",
        "session_info",
    }
)


def _looks_like(record: Record) -> bool:
    kind = get_str(record, "type")
    if kind == "session":
        return get_str(record, "id") is not None and "cwd" in record
    return kind in _ENTRY_TYPES and "parentId" in record and "id" in record


#: A ``session`` header with cwd, or id/parentId entries of pi's types.
matches = sniffer(NAME, _looks_like)


def line_timestamp(line: bytes) -> datetime | None:
    """The entry's ISO ``timestamp`` (``message.timestamp`` is epoch ms of the same moment)."""
    return line_stamp(line, "message")


def session_meta(path: Path, lines: Iterable[bytes]) -> SessionMeta:
    """Id, cwd and start from the first ``session`` header; last activity is the latest entry."""
    header: Record | None = None
    stamps: list[datetime] = []
    for record in records_in(lines):
        if header is None and get_str(record, "type") == "session":
            header = record
        stamp = parse_timestamp(record.get("timestamp"))
        if stamp is not None:
            stamps.append(stamp)
    started = parse_timestamp((header or {}).get("timestamp"))
    return SessionMeta(
        agent=NAME,
        session_id=get_str(header, "id") or session_id_from_path(path),
        cwd=get_str(header, "cwd"),
        started_at=started or (min(stamps) if stamps else None),
        last_activity_at=max(stamps) if stamps else None,
    )


def _blocks_text(content: object) -> str:
    if isinstance(content, str):
        return content
    texts: list[str] = []
    for item in content if isinstance(content, list) else []:
        block = as_record(item)
        text = get_str(block, "text")
        if text is not None:
            texts.append(text)
        elif get_str(block, "type") == "image":
            texts.append("[image]")
    return "\n".join(texts)


def _message_turns(message: Record, when: datetime | None, number: int) -> Iterator[Turn]:
    role = get_str(message, "role")
    content = message.get("content")
    if role == "user":
        text = _blocks_text(content)
        if text.strip():
            yield Turn("user", text, timestamp=when, line=number)
    elif role == "assistant":
        for item in content if isinstance(content, list) else []:
            block = as_record(item)
            block_type = get_str(block, "type")
            if block_type == "text":
                text = get_str(block, "text") or ""
                if text.strip():
                    yield Turn("assistant", text, timestamp=when, line=number)
            elif block_type == "toolCall" and block is not None:
                yield Turn(
                    "tool_call",
                    to_text(block.get("arguments")),
                    name=get_str(block, "name"),
                    timestamp=when,
                    line=number,
                    call_id=get_str(block, "id"),
                )
        error = get_str(message, "errorMessage")
        if error:
            yield Turn("system", error, name="error", timestamp=when, line=number)
    elif role == "toolResult":
        yield Turn(
            "tool_result",
            _blocks_text(content),
            name=get_str(message, "toolName"),
            timestamp=when,
            line=number,
            call_id=get_str(message, "toolCallId"),
        )
    elif role == "bashExecution":
        yield Turn("tool_call", get_str(message, "command") or "", name="bashExecution", timestamp=when, line=number)
        yield Turn("tool_result", get_str(message, "output") or "", name="bashExecution", timestamp=when, line=number)
    elif role in {"branchSummary", "compactionSummary", "custom"}:
        text = get_str(message, "summary") or _blocks_text(content)
        if text.strip():
            yield Turn("system", text, name=role, timestamp=when, line=number)


def turns(lines: Iterable[tuple[int, bytes]]) -> Iterator[Turn]:
    """Messages in file order, plus compaction and branch summaries as system turns."""
    for number, record in numbered_records(lines):
        if isinstance(record, Turn):
            yield record
            continue
        kind = get_str(record, "type")
        when = parse_timestamp(record.get("timestamp"))
        message = get_record(record, "message")
        if kind == "message" and message is not None:
            yield from _message_turns(message, when, number)
        elif kind in {"compaction", "branch_summary"}:
            summary = get_str(record, "summary")
            if summary:
                yield Turn("system", summary, name=kind, timestamp=when, line=number)


EDIT_TOOLS: dict[str, Converter] = {
    "edit": replace_tool(("path",), "oldText", "newText", "edits"),
    "write": write_tool(("path",), ("content",)),
}


#: The session's edit / write calls, with the prompts that led to them.


# --- Token usage (agents/usage.py) --------------------------------------------------------------
#
# badlogic/pi-mono packages/ai/src/types.ts: ``AssistantMessage {model, usage: Usage}`` with ``Usage
# {input, output, cacheRead, cacheWrite, totalTokens, cost}``. The providers store ``input`` without
# the cache: openai-codex-responses.ts sets ``input = input_tokens - cached_tokens``, the Anthropic
# provider ``input = input_tokens`` beside ``cacheRead``/``cacheWrite``, and ``totalTokens`` = the four
# summed. Each entry (``type: "message"``) is written once; an id seen again is not charged again.


_COUNTS = CountKeys(
    input="input", output="output", cached="cacheRead", cache_write="cacheWrite", cache_beside_input=True
)


def usage_charges(lines: Iterable[tuple[int, bytes]], state: UsageState) -> Iterator[Charge]:
    """Each assistant entry's tokens, charged once per entry id."""
    for number, record in usage_records(lines, b'"usage"'):
        message = get_record(record, "message")
        if get_str(record, "type") != "message" or get_str(message, "role") != "assistant":
            continue
        usage = _COUNTS.read(get_record(message, "usage"))
        if usage is not None:
            yield charge_once(state.seen, number, get_str(record, "id"), get_str(message, "model"), usage)


FORMAT = TranscriptFormat(
    NAME, matches, session_meta, turns, line_timestamp, edit_tools=EDIT_TOOLS, line_local=True, usage=usage_charges
)
