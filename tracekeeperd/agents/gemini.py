"""Gemini CLI chats (``~/.gemini/tmp/<project>/chats/session-<UTC minute>-<id8>.jsonl``).

Since v0.39 the file is an append-only log that must be *replayed*, not read
line by line:

* line 1 is metadata ``{sessionId, projectHash, startTime, lastUpdated, kind, …}``;
* message records ``{id, timestamp, type: user|gemini|info|error|warning, content,
  toolCalls?, …}`` are appended again under the same ``id`` whenever they change
  (tool results arriving, token counts): the last copy wins, in the position of
  the first;
* ``{"$set": {…}}`` updates metadata (``lastUpdated`` on every message; newer
  builds can replace the whole message list with ``$set.messages``);
* ``{"$rewindTo": id}`` drops that message and everything after it (all
  messages if the id is unknown), exactly like gemini-cli's own loader.

Before v0.39 a session was one JSON object rewritten whole (``.json``).
``legacy_json_lines`` turns it into the lines v0.39 would have written, which
is also how gemini-cli migrates such a file, so one parser serves both.

Gemini stores **no cwd**: ``SessionMeta.project_hash`` carries ``projectHash``,
to be matched with ``gemini_project_hash(candidate_root)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
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
    parse_record,
    parse_timestamp,
    sniffer,
    to_text,
    unreadable_turn,
)
from .usage import Charge, CountKeys, UsageState, charge_once, usage_records

NAME = "gemini"

_MESSAGE_TYPES = frozenset({"user", "gemini", "info", "error", "warning"})
_FINISHED_TOOL_STATES = frozenset({"success", "error", "cancelled"})


def _is_metadata(record: Record) -> bool:
    return get_str(record, "sessionId") is not None and get_str(record, "projectHash") is not None


def _looks_like(record: Record) -> bool:
    if _is_metadata(record) or "$rewindTo" in record or get_record(record, "$set") is not None:
        return True
    return (
        get_str(record, "type") in _MESSAGE_TYPES
        and get_str(record, "id") is not None
        and "content" in record
        and "uuid" not in record
    )


#: Metadata (sessionId + projectHash), ``$set``/``$rewindTo`` or Gemini message records.
matches = sniffer(NAME, _looks_like)


def legacy_json_lines(data: bytes) -> list[bytes]:
    """Expose a pre-v0.39 whole-file session as pseudo-lines.

    Pseudo-line 1 is the metadata (every key but ``messages``) and pseudo-line
    ``k + 1`` is ``messages[k - 1]``, so a line range still names whole messages
    and the same replay reads both layouts. The file is rewritten in place by
    the CLI, so a half-written file is possible: it yields no lines rather than
    an error, and the next read sees the finished file.
    """
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return []
    document = as_record(value)
    if document is None:
        return []
    metadata = {key: item for key, item in document.items() if key != "messages"}
    pseudo_lines = [metadata, *get_list(document, "messages")]
    return [json.dumps(item, ensure_ascii=False).encode("utf-8") for item in pseudo_lines]


# An entry of the replayed conversation: (line, message record or None for an unreadable line, byte size).
_Entry = tuple[int, Record | None, int]


@dataclass
class _Replay:
    metadata: Record = field(default_factory=dict)
    entries: dict[str, _Entry] = field(default_factory=dict)


def _replay(lines: Iterable[tuple[int, bytes]]) -> _Replay:
    """Apply the log the way gemini-cli's ``loadConversationRecord`` does."""
    state = _Replay()
    for number, line in lines:
        record = parse_record(line)
        if record is None:
            if line.strip():
                state.entries[f"\0unreadable:{number}"] = (number, None, len(line))
            continue
        rewind_to = get_str(record, "$rewindTo")
        updates = get_record(record, "$set")
        if rewind_to is not None:
            keys = list(state.entries)
            dropped = keys[keys.index(rewind_to) :] if rewind_to in state.entries else keys
            for key in dropped:
                del state.entries[key]
        elif get_str(record, "id") is not None:
            # Re-assigning a key keeps its original position: last copy wins, in place.
            state.entries[str(record["id"])] = (number, record, len(line))
        elif updates is not None:
            messages = updates.get("messages")
            state.metadata.update({key: value for key, value in updates.items() if key != "messages"})
            if isinstance(messages, list):
                state.entries = {}
                for item in messages:
                    message = as_record(item)
                    message_id = get_str(message, "id")
                    if message is not None and message_id is not None:
                        state.entries[message_id] = (number, message, len(line))
        elif _is_metadata(record):
            state.metadata.update(record)
    return state


def line_timestamp(line: bytes) -> datetime | None:
    """A message's ``timestamp``; metadata and ``$set`` lines say ``lastUpdated``/``startTime``."""
    record = parse_record(line)
    if record is None:
        return None
    source = get_record(record, "$set") or record
    for key in ("timestamp", "lastUpdated", "startTime"):
        stamp = parse_timestamp(source.get(key))
        if stamp is not None:
            return stamp
    return None


def session_meta(path: Path, lines: Iterable[bytes]) -> SessionMeta:
    """Id, projectHash and start from the (replayed) metadata; cwd is unknowable and stays None.

    The file name holds only the id's first 8 characters, so it is a last resort.
    """
    state = _replay(enumerate(lines, start=1))
    metadata = state.metadata
    stamps = [
        stamp
        for _number, message, _size in state.entries.values()
        if message is not None and (stamp := parse_timestamp(message.get("timestamp"))) is not None
    ]
    last_updated = parse_timestamp(metadata.get("lastUpdated"))
    if last_updated is not None:
        stamps.append(last_updated)
    started = parse_timestamp(metadata.get("startTime"))
    if started is None and stamps:
        started = min(stamps)
    return SessionMeta(
        agent=NAME,
        session_id=get_str(metadata, "sessionId") or session_id_from_path(path),
        cwd=None,
        started_at=started,
        last_activity_at=max(stamps) if stamps else None,
        project_hash=get_str(metadata, "projectHash"),
    )


def _parts_text(value: object) -> str:
    """Text of a ``PartListUnion``: a string, one Part, or a list of either."""
    if isinstance(value, str):
        return value
    parts = value if isinstance(value, list) else [value]
    texts: list[str] = []
    for item in parts:
        if isinstance(item, str):
            texts.append(item)
            continue
        part = as_record(item)
        text = get_str(part, "text")
        if text is not None and (part or {}).get("thought") is not True:
            texts.append(text)
        elif part is not None and ("inlineData" in part or "fileData" in part):
            texts.append("[file]")
    return "\n".join(texts)


def _tool_result_text(call: Record) -> str:
    texts: list[str] = []
    result = call.get("result")
    for item in result if isinstance(result, list) else [result]:
        part = as_record(item)
        response = get_record(get_record(part, "functionResponse"), "response")
        if response is not None:
            output = response.get("output", response.get("error", response))
            texts.append(to_text(output))
        elif isinstance(item, str) or get_str(part, "text") is not None:
            texts.append(_parts_text(item))
    if texts:
        return "\n".join(texts)
    display = call.get("resultDisplay")
    if display is not None:
        return to_text(display)
    return get_str(call, "status") or ""


def _message_turns(message: Record, number: int) -> Iterator[Turn]:
    kind = get_str(message, "type")
    when = parse_timestamp(message.get("timestamp"))
    if kind == "user":
        # displayContent is what the user typed; content may have @file expansions inlined.
        text = _parts_text(message.get("displayContent")) or _parts_text(message.get("content"))
        if text.strip():
            yield Turn("user", text, timestamp=when, line=number)
    elif kind == "gemini":
        text = _parts_text(message.get("content"))
        if text.strip():
            yield Turn("assistant", text, timestamp=when, line=number)
        for item in get_list(message, "toolCalls"):
            call = as_record(item)
            if call is None:
                continue
            name = get_str(call, "name")
            call_id = get_str(call, "id")
            call_when = parse_timestamp(call.get("timestamp")) or when
            yield Turn(
                "tool_call",
                to_text(call.get("args")),
                name=name,
                timestamp=call_when,
                line=number,
                call_id=call_id,
            )
            if call.get("result") is not None or get_str(call, "status") in _FINISHED_TOOL_STATES:
                yield Turn(
                    "tool_result",
                    _tool_result_text(call),
                    name=name,
                    timestamp=call_when,
                    line=number,
                    call_id=call_id,
                )
    elif kind in {"info", "error", "warning"}:
        text = _parts_text(message.get("content"))
        if text.strip():
            yield Turn("system", text, name=kind, timestamp=when, line=number)


def turns(lines: Iterable[tuple[int, bytes]]) -> Iterator[Turn]:
    """The replayed conversation in message order.

    Because a message's last copy wins, its turns carry the line of that last
    copy, so line numbers need not increase monotonically. Thoughts are skipped.
    """
    for number, message, size in _replay(lines).entries.values():
        if message is None:
            yield unreadable_turn(number, size)
        else:
            yield from _message_turns(message, number)


EDIT_TOOLS: dict[str, Converter] = {
    "replace": replace_tool(("file_path",), "old_string", "new_string"),
    "write_file": write_tool(("file_path",), ("content",)),
}


#: The session's replace / write_file calls, with the prompts that led to them.


# --- Token usage (agents/usage.py) --------------------------------------------------------------
#
# google-gemini/gemini-cli packages/core/src/services/chatRecordingTypes.ts: ``TokensSummary
# {input: promptTokenCount, output: candidatesTokenCount, cached: cachedContentTokenCount, thoughts?:
# thoughtsTokenCount, tool?: toolUsePromptTokenCount, total: totalTokenCount}`` and ``model`` on
# ``type: "gemini"`` messages. chatRecordingService.ts ``recordMessageTokens`` sets a message's tokens
# once (only if it has none) and ``pushMessage`` appends the whole message again whenever it changes,
# so a message is charged at the first line that shows its tokens. Gemini's total is input + output
# + thoughts + tool (the fixtures agree): cached is inside input, thoughts are outside output, and
# tool-use prompt tokens are extra input. ``$rewindTo`` drops messages from the conversation but not
# from the bill, so it is ignored here; ``$set.messages`` entries are read like appended messages.


_COUNTS = CountKeys(
    input="input",
    output="output",
    cached="cached",
    reasoning="thoughts",
    reasoning_beside_output=True,
    extra_input="tool",
)


def usage_charges(lines: Iterable[tuple[int, bytes]], state: UsageState) -> Iterator[Charge]:
    """Each message's tokens, charged at the first line that shows them."""
    for number, record in usage_records(lines, b'"tokens"'):
        updates = get_record(record, "$set")
        messages = get_list(updates, "messages") if updates is not None else [record]
        for item in messages:
            message = as_record(item)
            if get_str(message, "type") != "gemini":
                continue
            usage = _COUNTS.read(get_record(message, "tokens"))
            if usage is not None:
                yield charge_once(state.seen, number, get_str(message, "id"), get_str(message, "model"), usage)


FORMAT = TranscriptFormat(
    NAME, matches, session_meta, turns, line_timestamp, edit_tools=EDIT_TOOLS, usage=usage_charges
)
