"""The transcript fixtures under tests/fixtures/, named once for every test that reads them.

Where each file comes from (and which are SYNTHETIC) is in tests/fixtures/SOURCES.md.
"""

from __future__ import annotations

from pathlib import Path

from tracekeeperd.agents import DETECT_LINES, TranscriptFormat, detect, read_lines

FIXTURES = Path(__file__).parent / "fixtures"

# SYNTHETIC (hand-written): CODEX_PATCH, GEMINI_JSONL, GEMINI_EDIT, CURSOR, COPILOT. The rest are real.

CODEX_EXEC = "codex/agent-history_real-session-01.jsonl"
CODEX_SHORT = "codex/sessions/2026/02/23/rollout-2026-02-23T13-19-38-019c8a70-dda7-7f33-98ea-f30553347322.jsonl"
CODEX_TOOLS = "codex/sessions/2026/02/23/rollout-2026-02-23T20-34-25-019c8bfe-ec25-79e0-97d7-bda6a9c575ff.jsonl"
CODEX_PATCH = "codex/sessions/2026/03/04/rollout-2026-03-04T10-29-58-019cb9a1-5e2f-7c30-9d41-2a6b8c0e1f35.jsonl"
CLAUDE_SDK = "claude/agent-history_real-session-01.jsonl"
CLAUDE_SPOTTER = "claude/projects/-home-marco-projects-spotter/55604662-cf2a-4331-851a-ec234028f8ca.jsonl"
CLAUDE_EDIT = "claude/opentraces_claude-linear-edit-real-session.jsonl"
GEMINI_LEGACY = "gemini/agent-history_real-session-01.json"
GEMINI_JSONL = "gemini/tmp/demo/chats/session-2026-03-02T10-15-7c1d2e3f.jsonl"
GEMINI_EDIT = "gemini/tmp/demo/chats/session-2026-03-05T14-02-4e5f6a7b.jsonl"
PI = "pi/agent-history_real-session-01.jsonl"
PI_EDIT = "pi/pi-linear-edit-real-session.jsonl"
CURSOR = "cursor/projects/home-dev-src-demo/agent-transcripts/3f2b6c1e-9a47-4d2b-8c1e-5b7d9e0a1c2f.jsonl"
COPILOT = "copilot/session-state/b0ff98c0-8e01-4b73-bf92-9649b139931b/events.jsonl"

#: One whole session of every format and shape, for the tests that run over all of them.
SESSIONS = (
    CODEX_EXEC,
    CODEX_SHORT,
    CODEX_TOOLS,
    CLAUDE_SDK,
    CLAUDE_SPOTTER,
    CLAUDE_EDIT,
    GEMINI_LEGACY,
    GEMINI_JSONL,
    PI,
    CURSOR,
    COPILOT,
)


def load(relpath: str) -> tuple[TranscriptFormat, Path, list[bytes]]:
    """A fixture's format (detected, as the daemon does), path and lines."""
    path = FIXTURES / relpath
    lines = read_lines(path)
    fmt = detect(path, lines[:DETECT_LINES])
    assert fmt is not None, relpath
    return fmt, path, lines
