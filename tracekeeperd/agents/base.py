"""The shapes every transcript format produces, and the signature each format declares.

A format is a record of four pure functions rather than a class hierarchy: the
daemon only ever needs "is this mine?", "whose session is this?", "what was said?"
and "when was this line written?", and keeping them as plain functions over bytes
keeps the parsers trivially testable and free of I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from .edits import Converter
    from .usage import UsageReader

TurnKind = Literal["user", "assistant", "tool_call", "tool_result", "system"]
#: create: whole content written (a new file or an overwrite); replace: old text swapped for new;
#: patch: a diff hunk (new_text holds only its added lines); delete: the file removed.
EditKind = Literal["create", "replace", "patch", "delete"]


@dataclass(frozen=True)
class SessionMeta:
    """Who, where and when of one transcript, read from its records.

    ``cwd`` comes from the records themselves, never from a directory name: the
    agents' directory slugs are lossy ("/a-b" and "/a/b" map to the same slug).
    ``project_hash`` is set only for Gemini, which stores no cwd; match it with
    ``gemini_project_hash(candidate_root)``.
    """

    agent: str
    session_id: str
    cwd: str | None
    started_at: datetime | None
    last_activity_at: datetime | None
    project_hash: str | None = None


@dataclass(frozen=True)
class Turn:
    """One readable step of the conversation.

    ``line`` is the 1-based line the turn was read from, so a caller can cut the
    raw transcript at the same place. ``name`` is the tool name for tool calls
    and results, and the record's subtype for system turns. ``call_id`` pairs a
    tool result with its call (parallel calls finish out of order). Texts are
    complete; shortening them is the caller's business.
    """

    kind: TurnKind
    text: str
    name: str | None = None
    timestamp: datetime | None = None
    line: int = 0
    call_id: str | None = None


@dataclass(frozen=True)
class Edit:
    """One file change a tool call asked for, in the same shape for every agent.

    ``path`` is as the tool wrote it (absolute, or relative to the session's cwd);
    ``from_path`` is set when the change also moved the file (Codex ``*** Move to:``).
    ``line`` is the transcript line of the call. ``prompt`` is the user turn that led
    to it and ``explanation`` the assistant text next to it, so a reader of a line of
    code gets the request and the reasoning without reading the whole session.
    """

    path: str
    kind: EditKind
    old_text: str
    new_text: str
    line: int
    call_id: str | None
    tool: str
    prompt: str = ""
    explanation: str = ""
    from_path: str | None = None


def no_edits(lines: Iterable[tuple[int, bytes]]) -> Iterator[Edit]:
    """The ``edits`` of a format whose agent has no file-writing tools (or none we know)."""
    return iter(())


@dataclass(frozen=True)
class TranscriptFormat:
    """The functions a transcript format provides (its "hookspec"): four it must, two it may.

    ``matches(path, first_lines)``: sniff by content first; only when no line
    parses as a JSON object (empty or still-being-written file) decide by path.
    ``session_meta(path, lines)``: identity, cwd and time span of the session.
    ``turns(numbered_lines)``: the conversation; never raises on bad lines.
    ``line_timestamp(line)``: when one raw line was written, or None if the
    format does not say (used to cut a transcript at a commit time).
    """

    name: str
    matches: Callable[[Path, Sequence[bytes]], bool]
    session_meta: Callable[[Path, Iterable[bytes]], SessionMeta]
    turns: Callable[[Iterable[tuple[int, bytes]]], Iterator[Turn]]
    line_timestamp: Callable[[bytes], datetime | None]
    #: Every file-writing tool call in the lines (agents/edits.py); never raises on bad lines.
    edits: Callable[[Iterable[tuple[int, bytes]]], Iterator[Edit]] = no_edits
    #: Every token-usage record in the lines (agents/usage.py); None where the agent records none.
    usage: UsageReader | None = None
    #: The tool table ``edits`` is ``from_turns(turns(lines), edit_tools)`` over: a reader that
    #: already holds the turns (``tracekeeper why``) takes the edits from them, parsing once.
    edit_tools: Mapping[str, Converter] = field(default_factory=dict)
    #: Whether ``turns`` of lines n..m are the turns the whole file yields for those lines, so a
    #: reader may parse a slice (with a look-back) instead of the session from line 1. State a
    #: parser carries across lines may only name tool results, or drop a tool call (or block)
    #: repeated under an id seen earlier: the reader rechecks edit call ids against the bytes
    #: before its window (why.py). Gemini's log is replayed (rewinds, ``$set``): not line-local.
    line_local: bool = False

    def __post_init__(self) -> None:
        if self.edit_tools and self.edits is no_edits:
            # Derived, not written per format: the turns read through the edit tools, so `show`,
            # `why` and the edit list never disagree about what a session wrote.
            object.__setattr__(self, "edits", self._edits_from_turns)

    def _edits_from_turns(self, lines: Iterable[tuple[int, bytes]]) -> Iterator[Edit]:
        return from_turns(self.turns(lines), self.edit_tools)


# Converters read hostile, drifting JSON; anything a malformed value can raise is caught here.
BAD_VALUE = (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError)


def from_turns(turns: Iterable[Turn], tools: Mapping[str, Converter]) -> Iterator[Edit]:
    """The edits among ``turns``, each with its prompt and the assistant text around it.

    The prompt is the last user turn before the call. The explanation is the assistant
    text closest before the call within that prompt's turn (what the agent said it was
    about to do); without one, the first assistant text after it before the next prompt
    (what it said it had done).
    """
    steps = list(turns)
    prompt_at = -1
    for index, turn in enumerate(steps):
        if turn.kind == "user":
            prompt_at = index
            continue
        converter = tools.get(turn.name or "") if turn.kind == "tool_call" else None
        if converter is None:
            continue
        try:
            changes = converter(turn.text)
        except BAD_VALUE:
            continue
        if not changes:
            continue
        prompt = steps[prompt_at].text if prompt_at >= 0 else ""
        explanation = _explanation(steps, index, prompt_at)
        for change in changes:
            yield Edit(
                path=change.path,
                kind=change.kind,
                old_text=change.old_text,
                new_text=change.new_text,
                line=turn.line,
                call_id=turn.call_id,
                tool=turn.name or "",
                prompt=prompt,
                explanation=explanation,
                from_path=change.from_path,
            )


def _explanation(steps: Sequence[Turn], index: int, prompt_at: int) -> str:
    for turn in reversed(steps[prompt_at + 1 : index]):
        if turn.kind == "assistant":
            return turn.text
    for turn in steps[index + 1 :]:
        if turn.kind == "user":
            break
        if turn.kind == "assistant":
            return turn.text
    return ""
