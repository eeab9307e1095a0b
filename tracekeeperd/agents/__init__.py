"""Agent transcript formats: one module per agent, registered here.

Every format declares the same four pure functions (``base.TranscriptFormat``),
and the built-ins register through ``FORMATS`` like any other would. Typical use::

    lines = read_lines(path)
    fmt = detect(path, lines[:DETECT_LINES])
    if fmt is not None:
        meta = fmt.session_meta(path, lines)
        for turn in fmt.turns(enumerate(lines, start=1)): ...
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from . import claude, codex, copilot, cursor, gemini, pi
from .base import Edit, SessionMeta, TranscriptFormat, Turn, TurnKind
from .paths import (
    agent_from_path,
    cursor_project_slug,
    gemini_project_hash,
    session_id_from_path,
)
from .reading import UnreadableTranscript, read_lines, split_lines

#: Sniffing order. Content signatures do not overlap; Cursor's (bare role/message) is the
#: weakest, so it goes last.
FORMATS: tuple[TranscriptFormat, ...] = (
    codex.FORMAT,
    claude.FORMAT,
    gemini.FORMAT,
    pi.FORMAT,
    copilot.FORMAT,
    cursor.FORMAT,
)

#: How many leading lines ``detect`` needs; Claude files can open with a few cwd-less records.
DETECT_LINES = 10


def get_format(name: str) -> TranscriptFormat | None:
    """The registered format called ``name`` ("codex", "claude", …)."""
    return next((fmt for fmt in FORMATS if fmt.name == name), None)


def detect(path: Path, first_lines: Sequence[bytes]) -> TranscriptFormat | None:
    """The format of a transcript, by its first lines, else (empty file) by its path."""
    return next((fmt for fmt in FORMATS if fmt.matches(path, first_lines)), None)


def format_for(
    agent: str, session_id: str, first_lines: Sequence[bytes], suffix: str = ".jsonl"
) -> TranscriptFormat | None:
    """A stored session's format: by its first lines, else by the agent its note or job names.

    For readers of a session under a name of tracekeeper's own (a snapshot, a redacted copy, a
    download), where the agent's file name is gone and only content and agent name are left.
    """
    return detect(Path(f"{agent}-{session_id}{suffix}"), first_lines[:DETECT_LINES]) or get_format(agent)


__all__ = [
    "DETECT_LINES",
    "FORMATS",
    "Edit",
    "SessionMeta",
    "TranscriptFormat",
    "Turn",
    "TurnKind",
    "UnreadableTranscript",
    "agent_from_path",
    "cursor_project_slug",
    "detect",
    "format_for",
    "gemini_project_hash",
    "get_format",
    "read_lines",
    "session_id_from_path",
    "split_lines",
]
