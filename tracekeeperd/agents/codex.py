"""OpenAI Codex CLI rollouts (``~/.codex/sessions/YYYY/MM/DD/rollout-<local time>-<uuid>.jsonl``).

Each line is ``{"timestamp": "…Z", "type": T, "payload": {…}}``. The same
conversation is recorded twice: as ``response_item`` records (what the model
saw) and as ``event_msg`` records (what the UI showed). We read user prompts
from ``event_msg/user_message`` because the user-role ``response_item`` messages
also carry injected context (``<environment_context>``, AGENTS.md) and would
duplicate the prompt; everything else comes from ``response_item``, whose
``agent_message`` events merely echo the assistant messages.

Mid-2025 builds wrote the payloads bare (no wrapper) after a header line
``{"id", "timestamp", "instructions"}``; those lines are read as response items.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

from .base import SessionMeta, TranscriptFormat, Turn
from .edits import Converter, apply_patch, shell_apply_patch
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
from .usage import Charge, CountKeys, UsageState, count, model_name, usage_records

NAME = "codex"

_WRAPPED_TYPES = frozenset(
    {
        "session_meta",
        "response_item",
        "event_msg",
        "turn_context",
        "compacted",
        "world_state",
        "inter_agent_communication",
    }
)
# User-role texts Codex injects itself; only relevant to the bare legacy layout.
_INJECTED_PREFIXES = ("<environment_context>", "<user_instructions>", "# AGENTS.md instructions")


def _looks_like(record: Record) -> bool:
    kind = get_str(record, "type")
    if kind in _WRAPPED_TYPES and get_record(record, "payload") is not None:
        return True
    # Legacy header: an id and a timestamp but no type.
    return kind is None and get_str(record, "id") is not None and "instructions" in record


#: A rollout has ``type``/``payload`` records (or the legacy header).
matches = sniffer(NAME, _looks_like)


def _unwrap(record: Record) -> tuple[str, Record, bool] | None:
    """Return (record type, payload, is_legacy) for either layout."""
    kind = get_str(record, "type")
    payload = get_record(record, "payload")
    if kind is not None and payload is not None:
        return kind, payload, False
    if kind is not None:
        return "response_item", record, True
    if get_str(record, "id") is not None and "timestamp" in record:
        return "session_meta", record, True
    return None


def line_timestamp(line: bytes) -> datetime | None:
    """The wrapper's ``timestamp`` (UTC, when the line was persisted)."""
    return line_stamp(line)


def session_meta(path: Path, lines: Iterable[bytes]) -> SessionMeta:
    """Id, cwd and start from the *first* ``session_meta``: forked rollouts copy the parent's after it.

    The start is ``payload.timestamp``, which precedes the line's own timestamp
    (the file is created lazily on the first persist). A rollout cut before its
    ``session_meta`` falls back to the file name and the first ``turn_context`` cwd.
    """
    session_id: str | None = None
    cwd: str | None = None
    context_cwd: str | None = None
    started: datetime | None = None
    stamps: list[datetime] = []
    seen_meta = False
    for record in records_in(lines):
        stamp = parse_timestamp(record.get("timestamp"))
        if stamp is not None:
            stamps.append(stamp)
        unwrapped = _unwrap(record)
        if unwrapped is None:
            continue
        kind, payload, _legacy = unwrapped
        if kind == "session_meta" and not seen_meta:
            seen_meta = True
            session_id = get_str(payload, "id")
            cwd = get_str(payload, "cwd")
            started = parse_timestamp(payload.get("timestamp"))
        elif kind == "turn_context" and context_cwd is None:
            context_cwd = get_str(payload, "cwd")
    if started is None and stamps:
        started = min(stamps)
    return SessionMeta(
        agent=NAME,
        session_id=session_id or session_id_from_path(path),
        cwd=cwd or context_cwd,
        started_at=started,
        last_activity_at=max(stamps) if stamps else None,
    )


def _message_text(payload: Record) -> str:
    parts: list[str] = []
    for item in get_list(payload, "content"):
        block = as_record(item)
        text = get_str(block, "text")
        if text is not None:
            parts.append(text)
        elif get_str(block, "type") in {"input_image", "output_image"}:
            parts.append("[image]")
    return "\n".join(parts)


def _output_text(value: object) -> str:
    """Tool output is a string, a list of content items, or ``{content, success}``."""
    if isinstance(value, list):
        return _message_text({"content": value})
    record = as_record(value)
    if record is not None and "content" in record:
        return to_text(record.get("content"))
    return to_text(value)


def _tool_call_text(payload: Record) -> str:
    for key in ("arguments", "input", "action"):
        if key in payload:
            return to_text(payload.get(key))
    rest = {k: v for k, v in payload.items() if k not in {"type", "call_id", "id", "status"}}
    return to_text(rest)


def _response_item_turns(
    payload: Record, when: datetime | None, number: int, legacy: bool, tool_names: dict[str, str]
) -> Iterator[Turn]:
    item_type = get_str(payload, "type") or ""
    call_id = get_str(payload, "call_id")
    if item_type == "message":
        role = get_str(payload, "role")
        text = _message_text(payload)
        if role == "assistant" and text.strip():
            yield Turn("assistant", text, timestamp=when, line=number)
        elif role == "user" and legacy and text.strip() and not text.lstrip().startswith(_INJECTED_PREFIXES):
            yield Turn("user", text, timestamp=when, line=number)
    elif item_type.endswith("_call_output"):
        yield tool_result(tool_names, _output_text(payload.get("output")), call_id=call_id, timestamp=when, line=number)
    elif item_type.endswith("_call"):
        # function_call / custom_tool_call carry a name; local_shell_call, web_search_call… do not.
        name = get_str(payload, "name") or item_type.removesuffix("_call")
        yield tool_call(tool_names, _tool_call_text(payload), name=name, call_id=call_id, timestamp=when, line=number)


def _event_turns(payload: Record, when: datetime | None, number: int) -> Iterator[Turn]:
    event_type = get_str(payload, "type")
    if event_type == "user_message":
        text = get_str(payload, "message") or ""
        images = len(get_list(payload, "images")) + len(get_list(payload, "local_images"))
        if images:
            text = f"{text}\n[{images} image(s)]".strip()
        if text:
            yield Turn("user", text, timestamp=when, line=number)
    elif event_type == "turn_aborted":
        reason = get_str(payload, "reason") or "unknown reason"
        yield Turn("system", f"turn aborted: {reason}", name=event_type, timestamp=when, line=number)
    elif event_type in {"error", "stream_error"}:
        yield Turn("system", get_str(payload, "message") or event_type, name=event_type, timestamp=when, line=number)


def turns(lines: Iterable[tuple[int, bytes]]) -> Iterator[Turn]:
    """User prompts, assistant messages, tool calls with their arguments and tool outputs.

    Reasoning is skipped (encrypted; its summaries are not the conversation).
    """
    tool_names: dict[str, str] = {}
    for number, record in numbered_records(lines):
        if isinstance(record, Turn):
            yield record
            continue
        unwrapped = _unwrap(record)
        if unwrapped is None:
            continue
        kind, payload, legacy = unwrapped
        when = parse_timestamp(record.get("timestamp"))
        if kind == "response_item":
            yield from _response_item_turns(payload, when, number, legacy, tool_names)
        elif kind == "event_msg":
            yield from _event_turns(payload, when, number)
        elif kind == "compacted":
            summary = get_str(payload, "message") or ""
            yield Turn(
                "system",
                f"conversation compacted\n{summary}".strip(),
                name="compacted",
                timestamp=when,
                line=number,
            )


EDIT_TOOLS: dict[str, Converter] = {
    "apply_patch": apply_patch,
    # apply_patch heredocs sent through a shell tool, which Codex intercepts and applies itself.
    "shell": shell_apply_patch,
    "shell_command": shell_apply_patch,
    "container.exec": shell_apply_patch,
    "local_shell": shell_apply_patch,
    "exec_command": shell_apply_patch,
}


#: The session's apply_patch calls (as a tool or a shell heredoc), with the prompts that led to them.


# --- Token usage (agents/usage.py) --------------------------------------------------------------
#
# openai/codex codex-rs/protocol/src/protocol.rs: ``TokenCountEvent {info: Option<TokenUsageInfo>,
# rate_limits}``, ``TokenUsageInfo {total_token_usage, last_token_usage, model_context_window}``,
# ``TokenUsage {input_tokens, cached_input_tokens, output_tokens, reasoning_output_tokens,
# total_tokens}``; ``non_cached_input() = input_tokens - cached_input_tokens`` (cached is inside
# input) and ``append_last_usage`` adds ``last`` to ``total``. codex-rs/rollout/src/policy.rs persists
# every ``TokenCount``, and codex-rs/core/src/codex.rs sends one not only after a response
# (``Session::update_token_usage_info``) but also on every rate-limit update (``update_rate_limits``:
# the same info again), after history changes (``recompute_token_usage``: only ``last.total_tokens``
# set, an estimate) and when the context window overflows (``set_total_tokens_full`` →
# ``fill_to_context_window``: totals overwritten, ``last`` holds only ``total_tokens``). So
# ``last_token_usage`` is charged only when ``total_token_usage`` differs from the previous info's;
# summing it per event would count a response once per rate-limit refresh (the fixtures do this).
# A total that restarts (a resume that did not restore it) also differs, so it is still charged
# once. The model is the latest ``turn_context.model`` (``TurnContextItem``); the event names none.
#
# Not handled: forked rollouts copy their parent's earlier items (docs/agents.md); if those include
# token counts, the fork's first slice is charged for them again.

_TOTAL_FIELDS = ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_output_tokens", "total_tokens")
_COUNTS = CountKeys(
    input="input_tokens", output="output_tokens", cached="cached_input_tokens", reasoning="reasoning_output_tokens"
)


def usage_charges(lines: Iterable[tuple[int, bytes]], state: UsageState) -> Iterator[Charge]:
    """Each response's tokens, charged at the token_count that first shows it. ``state`` carries
    the model in effect and the previous running total."""
    for number, record in usage_records(lines, b'"turn_context"', b'"token_count"'):
        payload = get_record(record, "payload")
        kind = get_str(record, "type")
        if kind == "turn_context":
            if get_str(payload, "model") is not None:
                state.model = model_name(get_str(payload, "model"))
            continue
        if kind != "event_msg" or get_str(payload, "type") != "token_count":
            continue
        info = get_record(payload, "info")
        total = get_record(info, "total_token_usage")
        usage = _COUNTS.read(get_record(info, "last_token_usage"))
        if total is None or usage is None:
            continue  # info null (rate limits only) or damaged: not a usage record
        total_key = tuple(count(total.get(name)) for name in _TOTAL_FIELDS)
        fresh = total_key != state.total
        state.total = total_key
        yield number, state.model, usage if fresh else None


FORMAT = TranscriptFormat(
    NAME, matches, session_meta, turns, line_timestamp, edit_tools=EDIT_TOOLS, line_local=True, usage=usage_charges
)
