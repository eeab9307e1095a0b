"""Claude Code transcripts (``~/.claude/projects/<cwd slug>/<sessionId>.jsonl``).

Lines are records with a ``type`` (user, assistant, system, summary,
file-history-snapshot, progress, queue-operation, last-prompt, …). Two things
make a naive reader wrong:

* The first lines often carry no ``cwd`` (snapshots, queue operations,
  summaries), so cwd is the first record that has one.
* One assistant message is written over several lines that share
  ``message.id``, each holding the next content block (text, thinking,
  tool_use). Each block becomes one turn; a block repeated verbatim under the
  same ``message.id`` is written again, not said again, and is skipped.

Other tools append their own lines to these files (the opentraces fixture has
``opentraces_hook`` records). Only lines carrying ``sessionId`` count toward the
session's time span, and unknown record types produce no turns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

from .base import SessionMeta, TranscriptFormat, Turn, TurnKind
from .edits import Converter, notebook_edit, replace_tool, write_tool
from .paths import is_uuid_like, session_id_from_path, transcript_stem
from .records import (
    Record,
    as_record,
    get_record,
    get_str,
    line_stamp,
    numbered_records,
    parse_record,
    parse_timestamp,
    sniffer,
    to_text,
    tool_call,
    tool_result,
)
from .usage import Charge, CountKeys, ModelUsage, UsageState, model_name, usage_records

NAME = "claude"

_ID_KEYS = ("sessionId", "uuid", "leafUuid", "messageId")
# Claude Code records an interruption as a user-role text the user never typed.
_INTERRUPTED = "[Request interrupted by user"


def _looks_like(record: Record) -> bool:
    kind = get_str(record, "type")
    if kind is None or "." in kind or "projectHash" in record or "payload" in record:
        return False
    return any(key in record for key in _ID_KEYS)


#: Claude records have a ``type`` plus ``sessionId``/``uuid``/``leafUuid``/``messageId``.
matches = sniffer(NAME, _looks_like)


def line_timestamp(line: bytes) -> datetime | None:
    """The record's ``timestamp``; file-history snapshots keep theirs inside ``snapshot``."""
    return line_stamp(line, "snapshot")


def session_meta(path: Path, lines: Iterable[bytes]) -> SessionMeta:
    """Session id is the file stem (what hooks report as ``session_id``) when it is a UUID.

    Otherwise (a renamed copy) the first ``sessionId`` in the records. Start and
    last activity span the timestamps of lines that carry ``sessionId``, i.e.
    lines Claude Code wrote for a session, not lines other tools appended.
    """
    record_session_id: str | None = None
    cwd: str | None = None
    stamps: list[datetime] = []
    for line in lines:
        record = parse_record(line)
        session = get_str(record, "sessionId")
        if record is None or session is None:
            continue
        record_session_id = record_session_id or session
        cwd = cwd or get_str(record, "cwd")
        stamp = parse_timestamp(record.get("timestamp"))
        if stamp is not None:
            stamps.append(stamp)
    stem = transcript_stem(path)
    session_id = stem if is_uuid_like(stem) else record_session_id or session_id_from_path(path)
    return SessionMeta(
        agent=NAME,
        session_id=session_id,
        cwd=cwd,
        started_at=min(stamps) if stamps else None,
        last_activity_at=max(stamps) if stamps else None,
    )


def _result_text(content: object) -> str:
    """A tool_result's content is a string or a list of text/image blocks."""
    if isinstance(content, list):
        parts = []
        for item in content:
            block = as_record(item)
            text = get_str(block, "text")
            parts.append(text if text is not None else f"[{get_str(block, 'type') or 'block'}]")
        return "\n".join(parts)
    return to_text(content)


def _user_turns(record: Record, when: datetime | None, number: int, tool_names: dict[str, str]) -> Iterator[Turn]:
    message = get_record(record, "message")
    content = (message or {}).get("content")
    # isMeta marks text Claude Code injected (command caveats, skill bodies), not typed by the user.
    injected = record.get("isMeta") is True or record.get("isCompactSummary") is True
    prompt_kind: TurnKind = "system" if injected else "user"
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    for item in content if isinstance(content, list) else []:
        block = as_record(item)
        block_type = get_str(block, "type")
        if block_type == "text":
            text = get_str(block, "text") or ""
            if text.startswith(_INTERRUPTED):
                yield Turn("system", text, name="interrupted", timestamp=when, line=number)
            elif text.strip():
                yield Turn(prompt_kind, text, timestamp=when, line=number)
        elif block_type == "image":
            yield Turn(prompt_kind, "[image]", timestamp=when, line=number)
        elif block_type == "tool_result" and block is not None:
            call_id = get_str(block, "tool_use_id")
            yield tool_result(
                tool_names, _result_text(block.get("content")), call_id=call_id, timestamp=when, line=number
            )


def _assistant_turns(
    record: Record,
    when: datetime | None,
    number: int,
    tool_names: dict[str, str],
    seen_blocks: set[tuple[str, str]],
) -> Iterator[Turn]:
    message = get_record(record, "message")
    content = (message or {}).get("content")
    message_id = get_str(message, "id")
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    for item in content if isinstance(content, list) else []:
        block = as_record(item)
        if block is None:
            continue
        if message_id is not None:
            key = (message_id, json.dumps(block, sort_keys=True))
            if key in seen_blocks:
                continue
            seen_blocks.add(key)
        block_type = get_str(block, "type") or ""
        if block_type == "text":
            text = get_str(block, "text") or ""
            if text.strip():
                yield Turn("assistant", text, timestamp=when, line=number)
        elif block_type in {"tool_use", "server_tool_use"}:
            yield tool_call(
                tool_names,
                to_text(block.get("input")),
                name=get_str(block, "name"),
                call_id=get_str(block, "id"),
                timestamp=when,
                line=number,
            )
        elif block_type.endswith("_tool_result"):  # server tools: web_search_tool_result, …
            call_id = get_str(block, "tool_use_id")
            yield tool_result(
                tool_names, _result_text(block.get("content")), call_id=call_id, timestamp=when, line=number
            )
        # thinking / redacted_thinking: skipped, newer builds store only a signature.


def turns(lines: Iterable[tuple[int, bytes]]) -> Iterator[Turn]:
    """Prompts, assistant text, tool_use calls with input, tool_result outputs, system notes."""
    tool_names: dict[str, str] = {}
    seen_blocks: set[tuple[str, str]] = set()
    for number, record in numbered_records(lines):
        if isinstance(record, Turn):
            yield record
            continue
        kind = get_str(record, "type")
        when = parse_timestamp(record.get("timestamp"))
        if kind == "user":
            yield from _user_turns(record, when, number, tool_names)
        elif kind == "assistant":
            yield from _assistant_turns(record, when, number, tool_names, seen_blocks)
        elif kind == "system":
            subtype = get_str(record, "subtype")
            text = get_str(record, "content") or ""
            if subtype == "compact_boundary":
                text = f"conversation compacted\n{text}".strip()
            if text or subtype:
                yield Turn("system", text or subtype or "", name=subtype, timestamp=when, line=number)
        elif kind == "summary":
            summary = get_str(record, "summary")
            if summary:
                yield Turn("system", summary, name="summary", timestamp=when, line=number)


EDIT_TOOLS: dict[str, Converter] = {
    "Edit": replace_tool(("file_path",), "old_string", "new_string", "edits"),
    "MultiEdit": replace_tool(("file_path",), "old_string", "new_string", "edits"),
    "Write": write_tool(("file_path",), ("content",)),
    "NotebookEdit": notebook_edit,
}


#: The session's Edit / MultiEdit / Write / NotebookEdit calls, with the prompts that led to them.


# --- Token usage (agents/usage.py) --------------------------------------------------------------
#
# Claude Code is closed source; its records carry the Anthropic Messages API ``usage`` object on
# ``message.usage`` of ``type: "assistant"`` lines (see the fixtures): ``input_tokens`` (uncached
# input only), ``cache_creation_input_tokens``, ``cache_read_input_tokens``, ``output_tokens``
# (thinking included, not reported apart). One API response is written as one line per content
# block, each repeating the response's ``message.id`` and its usage as known at that moment, so a
# response is charged once, at its first line, with the largest counts any of its lines shows (a
# later line can hold the final output count). Lines without ``message.id`` fall back to
# ``requestId``; with neither, each line counts. ``<synthetic>`` messages (errors Claude Code writes
# itself) carry zero usage and so add nothing.
#
# A response stays open for larger counts until ``OPEN_RESPONSES`` other responses have begun since
# it (or the read ends): Claude Code writes a response's lines together, and keeping every response
# open held one entry per response of the session. Closing depends only on the responses begun
# between two lines, not on where a read started, so a read resumed from a state closes the same ones.


_COUNTS = CountKeys(
    input="input_tokens",
    output="output_tokens",
    cached="cache_read_input_tokens",
    cache_write="cache_creation_input_tokens",
    cache_beside_input=True,
)


#: Responses begun since one that close it (see above).
OPEN_RESPONSES = 64


def usage_charges(lines: Iterable[tuple[int, bytes]], state: UsageState) -> Iterator[Charge]:
    """Each API response's tokens, charged at its first line with the largest counts its lines show
    while it is open. ``state.seen`` holds the responses begun earlier: their later lines add nothing."""
    # Open responses, oldest first: (first line, model, largest counts, responses seen when it began).
    responses: dict[str, tuple[int, str, ModelUsage, int]] = {}
    for number, record in usage_records(lines, b'"usage"'):
        if get_str(record, "type") != "assistant":
            continue
        message = get_record(record, "message")
        usage = _COUNTS.read(get_record(message, "usage"))
        if usage is None:
            continue
        model = model_name(get_str(message, "model"))
        key = get_str(message, "id") or get_str(record, "requestId")
        if key is None:
            yield number, model, usage
        elif key in responses:
            first, first_model, known, begun = responses[key]
            responses[key] = (first, first_model, known.largest(usage), begun)
            yield number, model, None
        elif not state.seen.add(key):
            yield number, model, None  # charged already (closed, or by an earlier read)
        else:
            responses[key] = (number, model, usage, len(state.seen))
            while len(state.seen) - next(iter(responses.values()))[3] >= OPEN_RESPONSES:
                first, first_model, known, _ = responses.pop(next(iter(responses)))
                yield first, first_model, known
    for first, first_model, known, _ in responses.values():
        yield first, first_model, known


FORMAT = TranscriptFormat(
    NAME, matches, session_meta, turns, line_timestamp, edit_tools=EDIT_TOOLS, line_local=True, usage=usage_charges
)
