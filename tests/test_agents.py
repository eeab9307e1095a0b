"""Transcript formats against real agent transcripts (and marked synthetic ones, see fixtures/SOURCES.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import zstandard

from tracekeeperd.agents import (
    DETECT_LINES,
    FORMATS,
    SessionMeta,
    TranscriptFormat,
    Turn,
    UnreadableTranscript,
    agent_from_path,
    cursor_project_slug,
    detect,
    gemini_project_hash,
    get_format,
    read_lines,
    session_id_from_path,
    split_lines,
)

from .transcripts import (
    CLAUDE_EDIT,
    CLAUDE_SDK,
    CLAUDE_SPOTTER,
    CODEX_EXEC,
    CODEX_SHORT,
    CODEX_TOOLS,
    COPILOT,
    CURSOR,
    FIXTURES,
    GEMINI_JSONL,
    GEMINI_LEGACY,
    PI,
    SESSIONS,
    load,
)

JSONL_FIXTURES = [relpath for relpath in SESSIONS if relpath != GEMINI_LEGACY]
ALL_FIXTURES = list(SESSIONS)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def all_turns(fmt: TranscriptFormat, lines: list[bytes]) -> list[Turn]:
    return list(fmt.turns(enumerate(lines, start=1)))


def only(turns: list[Turn], kind: str, name: str | None = None) -> list[Turn]:
    return [t for t in turns if t.kind == kind and (name is None or t.name == name)]


# --- detection and metadata ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("relpath", "agent"),
    [
        (CODEX_EXEC, "codex"),
        (CODEX_SHORT, "codex"),
        (CODEX_TOOLS, "codex"),
        (CLAUDE_SDK, "claude"),
        (CLAUDE_SPOTTER, "claude"),
        (CLAUDE_EDIT, "claude"),
        (GEMINI_LEGACY, "gemini"),
        (GEMINI_JSONL, "gemini"),
        (PI, "pi"),
        (CURSOR, "cursor"),
        (COPILOT, "copilot"),
    ],
)
def test_detect_by_content(relpath: str, agent: str) -> None:
    path = FIXTURES / relpath
    lines = read_lines(path)
    fmt = detect(path, lines[:DETECT_LINES])
    assert fmt is not None and fmt.name == agent
    # Content alone decides: no fixture sits under a real ~/.<agent>/ directory.
    assert agent_from_path(path) is None
    # Exactly one format claims each transcript.
    assert [f.name for f in FORMATS if f.matches(path, lines[:DETECT_LINES])] == [agent]


@pytest.mark.parametrize(
    ("relpath", "expected"),
    [
        (
            CODEX_EXEC,
            SessionMeta(
                "codex",
                "019e9625-802f-7e91-840a-cfe88d14117a",
                "/tmp/agent-history-real-agent/codex/workspace",
                utc("2026-06-05T04:58:20.593Z"),  # session_meta.payload.timestamp, before the line's own
                utc("2026-06-05T04:58:26.713Z"),
            ),
        ),
        (
            CODEX_SHORT,
            SessionMeta(
                "codex",
                "019c8a70-dda7-7f33-98ea-f30553347322",
                "/redacted/path/da0ba47443",
                utc("2026-02-23T12:19:38.535Z"),  # the file name says 13-19-38: local time
                utc("2026-02-23T12:19:52.689Z"),
            ),
        ),
        (
            CODEX_TOOLS,
            SessionMeta(
                "codex",
                "019c8bfe-ec25-79e0-97d7-bda6a9c575ff",
                "/redacted/path/ea96e59ed9",
                utc("2026-02-23T19:34:25.573Z"),
                utc("2026-02-23T19:36:02.635Z"),
            ),
        ),
        (
            CLAUDE_SDK,
            SessionMeta(
                "claude",
                "06090cb1-3e64-433a-bc7e-a621c0f596d2",  # from records: the file name is not the id
                "/tmp/agent-history-real-agent/claude/workspace",  # line 3; lines 1-2 have no cwd
                utc("2026-06-05T04:56:32.693Z"),
                utc("2026-06-05T04:56:35.619Z"),
            ),
        ),
        (
            CLAUDE_SPOTTER,
            SessionMeta(
                "claude",
                "55604662-cf2a-4331-851a-ec234028f8ca",
                "/home/marco/projects/spotter",
                utc("2026-02-10T21:11:52.438Z"),  # line 2; line 1's snapshot is stamped later
                utc("2026-02-10T21:16:12.381Z"),
            ),
        ),
        (
            CLAUDE_EDIT,
            SessionMeta(
                "claude",
                "164b9ad1-4c1b-4602-9102-5276951a1594",
                "/workspace/claude-real-edit-box/project",
                utc("2026-06-12T15:22:55.596Z"),
                utc("2026-06-12T15:23:20.742Z"),  # not the later opentraces_hook line (15:23:20.962991)
            ),
        ),
        (
            GEMINI_LEGACY,
            SessionMeta(
                "gemini",
                "dcbe78d3-ea75-4786-929e-d6cff0fc00ed",
                None,
                utc("2026-06-05T04:59:39.932Z"),
                utc("2026-06-05T04:59:44.839Z"),
                project_hash="d30f91067027d10192e4aed3e7b03fecf08089dd3370f047f14f38b1845c8042",
            ),
        ),
        (
            GEMINI_JSONL,
            SessionMeta(
                "gemini",
                "7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f",  # the file name only has 7c1d2e3f
                None,
                utc("2026-03-02T10:15:00.000Z"),
                utc("2026-03-02T10:16:31.000Z"),
                project_hash=gemini_project_hash("/home/dev/src/demo"),
            ),
        ),
        (
            PI,
            SessionMeta(
                "pi",
                "019e963d-6bd6-7ade-8a49-256ac3391bdd",
                "/tmp/agent-history-real-agent/pi/workspace",
                utc("2026-06-05T05:24:28.246Z"),
                utc("2026-06-05T05:24:31.430Z"),
            ),
        ),
        (
            CURSOR,
            SessionMeta("cursor", "3f2b6c1e-9a47-4d2b-8c1e-5b7d9e0a1c2f", None, utc("2026-03-02T10:15:04Z"), None),
        ),
        (
            COPILOT,
            SessionMeta(
                "copilot",
                "b0ff98c0-8e01-4b73-bf92-9649b139931b",
                "/home/dev/src/demo",
                utc("2026-03-02T01:11:45.379Z"),
                utc("2026-03-02T01:12:03.520Z"),
            ),
        ),
    ],
)
def test_session_meta(relpath: str, expected: SessionMeta) -> None:
    fmt, path, lines = load(relpath)
    assert fmt.session_meta(path, lines) == expected


def test_gemini_project_hash_matches_the_recorded_hash() -> None:
    # The synthetic file's projectHash was computed the way gemini-cli does: sha256 of the root string.
    assert gemini_project_hash("/home/dev/src/demo") == (
        "8d1283567b6b755a2da5ea0903a9cbcfd180623f10411777e30f03822f3f29c4"
    )
    assert gemini_project_hash("/home/dev/src/demo2") != gemini_project_hash("/home/dev/src/demo")


# --- turns from real transcripts ----------------------------------------------------------------


def test_claude_turns_split_message_and_parallel_tools() -> None:
    fmt, _, lines = load(CLAUDE_SPOTTER)
    turns = all_turns(fmt, lines)
    assert turns[0] == Turn(
        "user", "mix phx.server doesnt seem to start", timestamp=utc("2026-02-10T21:11:56.846Z"), line=4
    )
    # Lines 5-10 are one assistant message (msg_01MKH1…) split per block; the "\n\n" text and the
    # thinking block produce nothing, the rest one turn each at its own line.
    assert [(t.kind, t.line) for t in turns if 5 <= t.line <= 10] == [
        ("assistant", 7),
        ("tool_call", 8),
        ("tool_call", 10),
    ]
    bash, glob = only(turns, "tool_call")
    assert (bash.name, bash.call_id) == ("Bash", "toolu_0116Hyi5v8ut7Ffb7d8qV1Sc")
    assert json.loads(bash.text) == {"command": "mix phx.server 2>&1 | head -80", "timeout": 30000}
    assert glob.name == "Glob" and json.loads(glob.text)["pattern"] == "mix.exs"
    # Both calls were rejected; results are paired with their calls by id and named after them.
    results = only(turns, "tool_result")
    assert [(r.line, r.name, r.call_id) for r in results] == [
        (11, "Bash", bash.call_id),
        (12, "Glob", glob.call_id),
    ]
    assert results[0].text.startswith("The user doesn't want to proceed with this tool use.")
    # The interruption marker is not something the user typed; local commands are system turns.
    assert [(t.line, t.name) for t in only(turns, "system")] == [
        (13, "interrupted"),
        (14, "local_command"),
        (15, "local_command"),
    ]
    assert "<command-name>/model</command-name>" in turns[-2].text


def test_claude_turns_edit_and_commit_session_ignore_foreign_lines() -> None:
    fmt, _, lines = load(CLAUDE_EDIT)
    turns = all_turns(fmt, lines)
    assert turns[0].kind == "user" and turns[0].line == 1
    assert "add a farewell(name: str) helper to src/app.py" in turns[0].text
    calls = only(turns, "tool_call")
    assert [(c.name, c.line) for c in calls] == [("Read", 5), ("Edit", 7), ("Bash", 13), ("Bash", 18)]
    edit = json.loads(calls[1].text)
    assert edit["file_path"] == "/workspace/claude-real-edit-box/project/src/app.py"
    assert "def farewell(name: str) -> str:" in edit["new_string"]
    assert "git commit -m" in json.loads(calls[3].text)["command"]
    results = only(turns, "tool_result")
    assert [(r.name, r.line) for r in results] == [("Read", 6), ("Edit", 10), ("Bash", 14), ("Bash", 19)]
    assert results[2].text == "syntax OK"
    assert "[add-farewell-helper eec39b3] Add farewell helper to app" in results[3].text
    assert turns[-1].kind == "assistant" and turns[-1].line == 20
    # Lines inserted by the opentraces tool are not Claude Code records and produce nothing.
    foreign = {n for n, line in enumerate(lines, 1) if b'"type":"opentraces_hook"' in line}
    assert foreign == {2, 3, 8, 9, 11, 12, 15, 16, 21}
    assert not foreign & {t.line for t in turns}


def test_claude_redacted_sdk_session() -> None:
    fmt, _, lines = load(CLAUDE_SDK)
    assert all_turns(fmt, lines) == [
        Turn("user", "[REDACTED_PROMPT]", timestamp=utc("2026-06-05T04:56:32.812Z"), line=3),
        Turn("assistant", "[REDACTED_ASSISTANT_TEXT]", timestamp=utc("2026-06-05T04:56:35.619Z"), line=4),
    ]


def test_claude_block_rewritten_under_same_message_id_is_not_repeated() -> None:
    fmt, _, lines = load(CLAUDE_SPOTTER)
    again = [*lines[:8], lines[7], *lines[8:]]  # line 8 (Bash tool_use) written twice
    assert len(only(all_turns(fmt, again), "tool_call")) == 2


def test_codex_turns_with_tools() -> None:
    fmt, _, lines = load(CODEX_TOOLS)
    turns = all_turns(fmt, lines)
    # The prompt comes from event_msg/user_message (line 10), not from the user-role response items
    # (lines 4, 5, 9) that carry injected context or duplicate it.
    assert only(turns, "user") == [
        Turn("user", "[REDACTED_MESSAGE len=98 sha=c002ff99]", timestamp=utc("2026-02-23T19:34:26.099Z"), line=10)
    ]
    # Assistant text comes from response_item only; the event_msg/agent_message echoes are skipped.
    assert [t.line for t in only(turns, "assistant")] == [16, 25, 34, 43, 52, 61]
    first_call = only(turns, "tool_call")[0]
    assert first_call == Turn(
        "tool_call",
        "[REDACTED_ARGUMENTS len=46 sha=4cb9a2fc]",
        name="mcp__cloud-associates__search_workflows",
        timestamp=utc("2026-02-23T19:34:39.357Z"),
        line=17,
        call_id="call_OIMY41RetdVChp5U51mMLGOD",
    )
    results = only(turns, "tool_result")
    assert [(r.line, r.call_id) for r in results] == [
        (19, "call_OIMY41RetdVChp5U51mMLGOD"),
        (28, "call_SengCcPYInk46d62DPE6eqqb"),
        (37, "call_B6bYQ40tItkpgpg7DLdo8mEG"),
        (46, "call_wt673E9ScmRn47BB5LRf0kwk"),
        (55, "call_kTYGACDKLb03RGgGqdx4XgBl"),
    ]
    assert results[0].name == "mcp__cloud-associates__search_workflows"
    assert results[0].text == "[REDACTED_OUTPUT len=4215 sha=9a9d94de]"
    assert len(only(turns, "tool_call")) == len(results) == 5


def test_codex_exec_session_and_dangling_call() -> None:
    fmt, _, lines = load(CODEX_EXEC)
    assert [(t.kind, t.text, t.line) for t in all_turns(fmt, lines)] == [
        ("user", "[REDACTED_PROMPT]", 7),
        ("assistant", "[REDACTED_ASSISTANT_TEXT]", 9),
    ]
    # This rollout was cut right after a function_call: the call is there, its output is not.
    fmt, _, lines = load(CODEX_SHORT)
    turns = all_turns(fmt, lines)
    assert (turns[-1].kind, turns[-1].name, turns[-1].line) == ("tool_call", "exec_command", 18)
    assert not only(turns, "tool_result")


def test_codex_first_session_meta_wins_in_forks() -> None:
    fmt, path, lines = load(CODEX_EXEC)
    own = json.loads(lines[0])
    own["payload"].update(id="019e9700-0000-7000-8000-000000000001", cwd="/work/fork", timestamp="2026-06-06T00:00:00Z")
    forked = [json.dumps(own).encode(), *lines]  # a fork writes its own meta, then copies the parent's
    meta = fmt.session_meta(path, forked)
    assert (meta.session_id, meta.cwd, meta.started_at) == (
        "019e9700-0000-7000-8000-000000000001",
        "/work/fork",
        utc("2026-06-06T00:00:00Z"),
    )


def test_codex_legacy_unwrapped_rollout() -> None:
    codex = get_format("codex")
    assert codex is not None
    lines = [
        b'{"id":"5973b6c0-94b8-487b-a530-2aeb6098ae0e","timestamp":"2025-05-07T17:24:21.123Z","instructions":null}',
        b'{"record_type":"state"}',
        b'{"type":"message","role":"user","content":[{"type":"input_text","text":"<environment_context>x"}]}',
        b'{"type":"message","role":"user","content":[{"type":"input_text","text":"explain this repo"}]}',
        b'{"type":"function_call","name":"shell","arguments":"{\\"command\\":[\\"ls\\"]}","call_id":"c1"}',
        b'{"type":"function_call_output","call_id":"c1","output":{"content":"README.md","success":true}}',
    ]
    path = Path("/home/u/.codex/sessions/rollout-2025-05-07T19-24-21-5973b6c0-94b8-487b-a530-2aeb6098ae0e.jsonl")
    assert detect(path, lines) is codex
    meta = codex.session_meta(path, lines)
    assert (meta.session_id, meta.cwd, meta.started_at) == (
        "5973b6c0-94b8-487b-a530-2aeb6098ae0e",
        None,
        utc("2025-05-07T17:24:21.123Z"),
    )
    assert [(t.kind, t.name, t.text, t.line) for t in codex.turns(enumerate(lines, 1))] == [
        ("user", None, "explain this repo", 4),
        ("tool_call", "shell", '{"command":["ls"]}', 5),
        ("tool_result", "shell", "README.md", 6),
    ]


@pytest.mark.parametrize("relpath", [GEMINI_LEGACY, "gemini/agent-history_real-session-01.no-final-newline.json"])
def test_gemini_legacy_json_as_pseudo_lines(relpath: str) -> None:
    """As gemini-cli writes it (no final newline) and as the vetted copy has it (with one)."""
    fmt, _, lines = load(relpath)
    # Pseudo-line 1 is the metadata, then one line per message.
    assert len(lines) == 3
    assert "messages" not in json.loads(lines[0]) and json.loads(lines[0])["kind"] == "main"
    assert json.loads(lines[2])["id"] == "1ad31721-7c1d-448c-808f-a6facc0b2e72"
    assert all_turns(fmt, lines) == [
        Turn("user", "[REDACTED_PROMPT]", timestamp=utc("2026-06-05T04:59:42.197Z"), line=2),
        Turn("assistant", "[REDACTED_ASSISTANT_TEXT]", timestamp=utc("2026-06-05T04:59:44.839Z"), line=3),
    ]


def test_gemini_jsonl_replay_last_copy_set_and_rewind() -> None:  # synthetic fixture
    fmt, _, lines = load(GEMINI_JSONL)
    turns = all_turns(fmt, lines)
    assert [(t.kind, t.name, t.line) for t in turns] == [
        ("user", None, 2),
        # Message 0a9b…0002 appears on lines 4 and 6; the last copy (with the result) wins.
        ("tool_call", "run_shell_command", 6),
        ("tool_result", "run_shell_command", 6),
        ("assistant", None, 8),
        # Lines 10-11 were dropped by {"$rewindTo": …} on line 12.
        ("user", None, 13),
        ("system", "info", 14),
    ]
    assert turns[0].text == "list the python files and count their lines"
    assert json.loads(turns[1].text) == {"command": "wc -l *.py", "description": "Count lines in Python files"}
    assert turns[1].call_id == turns[2].call_id == "run_shell_command-1772446507100-a1b2c3"
    assert turns[2].text == "  12 cli.py\n  40 parse.py\n  52 total"
    assert turns[1].timestamp == utc("2026-03-02T10:15:07.100Z")
    assert "delete parse.py" not in {t.text for t in turns}


def test_gemini_rewind_to_unknown_id_clears_everything() -> None:
    fmt, _, lines = load(GEMINI_JSONL)
    cleared = [*lines[:5], b'{"$rewindTo":"no-such-id"}', lines[12]]
    assert [(t.kind, t.line) for t in all_turns(fmt, cleared)] == [("user", 7)]


def test_pi_turns_and_tool_calls() -> None:
    fmt, _, lines = load(PI)
    assert all_turns(fmt, lines) == [
        Turn("user", "[REDACTED_PROMPT]", timestamp=utc("2026-06-05T05:24:28.254Z"), line=5),
        Turn("assistant", "[REDACTED_ASSISTANT_TEXT]", timestamp=utc("2026-06-05T05:24:31.430Z"), line=6),
    ]
    # The real fixture has no tools; these lines follow pi's AI-library message types.
    tool_lines = [
        b'{"type":"message","id":"a1","parentId":"65697c71","timestamp":"2026-06-05T05:24:32.000Z",'
        b'"message":{"role":"assistant","content":[{"type":"toolCall","id":"call_1","name":"bash",'
        b'"arguments":{"command":"ls"}}],"stopReason":"toolUse","timestamp":1780637072000}}',
        b'{"type":"message","id":"a2","parentId":"a1","timestamp":"2026-06-05T05:24:33.000Z",'
        b'"message":{"role":"toolResult","toolCallId":"call_1","toolName":"bash",'
        b'"content":[{"type":"text","text":"README.md"}],"isError":false,"timestamp":1780637073000}}',
    ]
    extra = list(fmt.turns(enumerate([*lines, *tool_lines], 1)))[2:]
    assert [(t.kind, t.name, t.text, t.call_id, t.line) for t in extra] == [
        ("tool_call", "bash", '{"command":"ls"}', "call_1", 7),
        ("tool_result", "bash", "README.md", "call_1", 8),
    ]


def test_cursor_turns_unwrap_user_query() -> None:  # synthetic fixture
    fmt, _, lines = load(CURSOR)
    turns = all_turns(fmt, lines)
    assert turns[0] == Turn(
        "user",
        "add a --verbose flag to cli.py and print the parsed config when it is set",
        timestamp=utc("2026-03-02T10:15:04Z"),
        line=1,
    )
    assert [(t.kind, t.name, t.line) for t in turns[1:]] == [
        ("assistant", None, 2),
        ("tool_call", "Read", 2),
        ("tool_call", "StrReplace", 3),
        ("tool_call", "Shell", 4),
        ("assistant", None, 5),
        ("user", None, 6),
        ("tool_call", "Shell", 7),
    ]
    assert json.loads(turns[2].text) == {"path": "/home/dev/src/demo/cli.py"}
    # A timestamp tag that is not ISO 8601 is stripped but not guessed at.
    assert (turns[6].text, turns[6].timestamp) == ("now commit it", None)
    assert all(t.call_id is None for t in turns)  # Cursor's tool_use blocks carry no id


def test_copilot_turns() -> None:  # synthetic fixture
    fmt, _, lines = load(COPILOT)
    turns = all_turns(fmt, lines)
    # Empty content: the prompt is recovered from transformedContent without Copilot's wrapper blocks.
    assert turns[0] == Turn(
        "user", "fix the failing test in test_parse.py", timestamp=utc("2026-03-02T01:11:50.012Z"), line=3
    )
    assert [(t.kind, t.name, t.call_id, t.line) for t in turns[1:]] == [
        ("assistant", None, None, 5),
        ("tool_call", "bash", "toolu_vrtx_01AbC", 5),
        ("tool_result", "bash", "toolu_vrtx_01AbC", 7),
        ("tool_call", "edit", "toolu_vrtx_02DeF", 8),
        ("tool_result", "edit", "toolu_vrtx_02DeF", 10),
        # A tool that no toolRequest announced is still reported, from its execution start.
        ("tool_call", "report_intent", "toolu_vrtx_03GhI", 11),
        ("tool_result", "report_intent", "toolu_vrtx_03GhI", 12),
        ("assistant", None, None, 13),
    ]
    assert json.loads(turns[2].text) == {"command": "pytest -q test_parse.py", "description": "Run the failing test"}
    assert turns[3].text.startswith("F\nFAILED test_parse.py::test_dates")
    assert turns[7].text == "report_intent is not available in this session"


@pytest.mark.parametrize(
    ("relpath", "number", "expected"),
    [
        (CODEX_SHORT, 1, "2026-02-23T12:19:42.561Z"),
        (CLAUDE_SPOTTER, 1, "2026-02-10T21:11:56.906Z"),  # inside the snapshot
        (CLAUDE_EDIT, 2, "2026-06-12T15:23:01.589536+00:00"),
        (GEMINI_LEGACY, 1, "2026-06-05T04:59:44.839Z"),  # metadata: lastUpdated
        (GEMINI_JSONL, 4, "2026-03-02T10:15:07.000Z"),
        (GEMINI_JSONL, 5, "2026-03-02T10:15:07.101Z"),  # $set.lastUpdated
        (PI, 6, "2026-06-05T05:24:31.430Z"),
        (CURSOR, 1, "2026-03-02T10:15:04Z"),
        (COPILOT, 7, "2026-03-02T01:11:55.312Z"),
    ],
)
def test_line_timestamp(relpath: str, number: int, expected: str) -> None:
    fmt, _, lines = load(relpath)
    assert fmt.line_timestamp(lines[number - 1]) == utc(expected)


def test_line_timestamp_unknown_is_none() -> None:
    fmt, _, lines = load(CURSOR)
    assert fmt.line_timestamp(lines[1]) is None  # assistant lines carry no time at all
    fmt, _, lines = load(GEMINI_JSONL)
    assert fmt.line_timestamp(lines[11]) is None  # $rewindTo


# --- containers, growth and damage --------------------------------------------------------------


@pytest.mark.parametrize("relpath", JSONL_FIXTURES)
def test_zst_round_trip_yields_identical_turns(relpath: str, tmp_path: Path) -> None:
    fmt, path, lines = load(relpath)
    raw = path.read_bytes()
    packed = tmp_path / (path.name + ".zst")
    # Two frames, as a compressor flushing mid-file would write; both must be read.
    half = raw.index(b"\n", len(raw) // 2) + 1
    compressor = zstandard.ZstdCompressor()
    packed.write_bytes(compressor.compress(raw[:half]) + compressor.compress(raw[half:]))
    packed_lines = read_lines(packed)
    assert packed_lines == lines
    assert detect(packed, packed_lines[:DETECT_LINES]) is fmt
    assert all_turns(fmt, packed_lines) == all_turns(fmt, lines)
    if fmt.name != "copilot":  # Copilot's id lives in the parent directory name, not the file name
        assert fmt.session_meta(packed, packed_lines) == fmt.session_meta(path, lines)


def test_corrupt_zst_raises_typed_error(tmp_path: Path) -> None:
    bad = tmp_path / "rollout-2026-01-01T00-00-00-019c0000-0000-7000-8000-000000000000.jsonl.zst"
    bad.write_bytes(b"\x28\xb5\x2f\xfd not really zstd")
    with pytest.raises(UnreadableTranscript) as caught:
        read_lines(bad)
    assert caught.value.path == bad


@pytest.mark.parametrize("relpath", JSONL_FIXTURES)
def test_growing_transcript_is_read_consistently(relpath: str, tmp_path: Path) -> None:
    fmt, path, lines = load(relpath)
    final_meta = fmt.session_meta(path, lines)
    final_turns = all_turns(fmt, lines)
    live = tmp_path / path.parent.name / path.name  # keep the parent: Copilot's id is there
    live.parent.mkdir()
    live.write_bytes(b"")
    for count, line in enumerate(lines, start=1):
        # The agent writes half a record, we read, then it finishes the record.
        cut = len(line) // 2
        for chunk in (line[:cut], line[cut:] + b"\n"):
            with live.open("ab") as handle:
                handle.write(chunk)
            seen = read_lines(live)
            complete = count if chunk.endswith(b"\n") else count - 1
            assert seen == lines[:complete]
            meta = fmt.session_meta(live, seen)
            if complete:  # before any complete line only the path is known
                assert meta.session_id == final_meta.session_id
            assert meta.cwd in (None, final_meta.cwd)
            assert meta.project_hash in (None, final_meta.project_hash)
            if meta.started_at is not None and final_meta.started_at is not None:
                assert meta.started_at >= final_meta.started_at
            if meta.last_activity_at is not None and final_meta.last_activity_at is not None:
                assert meta.last_activity_at <= final_meta.last_activity_at
            if fmt.name != "gemini":  # Gemini replays: later lines may rewrite earlier messages
                assert all_turns(fmt, seen) == [t for t in final_turns if t.line <= complete]
    assert fmt.session_meta(live, read_lines(live)) == final_meta


GARBAGE = [
    b"not json at all",
    b"\xff\xfe\x00\x9c binary",
    b"[1, 2, 3]",
    b'"just a string"',
    b"[" * 100_000,
    b'{"type":"user","message":{"role":"user","content":"trunc',
    b"{}",
    b"   ",
]


@pytest.mark.parametrize("relpath", [*JSONL_FIXTURES, GEMINI_LEGACY])
def test_garbage_and_truncated_lines_never_raise(relpath: str) -> None:
    fmt, path, lines = load(relpath)
    clean = all_turns(fmt, lines)
    dirty = [lines[0], *GARBAGE, *lines[1:], lines[-1][: len(lines[-1]) // 2]]
    turns = all_turns(fmt, dirty)
    unreadable = [t for t in turns if t.name == "unreadable"]
    # Every non-blank line that is not a JSON object is reported once, as a system turn on its own line.
    assert all(t.kind == "system" for t in unreadable)
    shift = len(GARBAGE)
    expected_lines = {2, 3, 4, 5, 6, 7, len(dirty)}  # not "{}" (a valid, empty record) or blank line
    assert {t.line for t in unreadable} == expected_lines
    readable = [t for t in turns if t.name != "unreadable"]
    assert [(t.kind, t.text, t.name) for t in readable] == [(t.kind, t.text, t.name) for t in clean]
    assert [t.line for t in readable] == [t.line if t.line == 1 else t.line + shift for t in clean]
    assert fmt.session_meta(path, dirty) == fmt.session_meta(path, lines)
    for line in GARBAGE:
        assert fmt.line_timestamp(line) is None
        for other in FORMATS:
            other.line_timestamp(line)
            list(other.turns([(1, line)]))
            other.session_meta(path, [line])


def test_split_lines_holds_back_a_partial_line() -> None:
    assert split_lines(b"") == ([], 0)
    assert split_lines(b'{"a":1}') == ([], 0)
    assert split_lines(b'{"a":1}\r\n\n{"b":2}\n{"c"') == ([b'{"a":1}', b"", b'{"b":2}'], 18)


def test_partial_and_half_written_files(tmp_path: Path) -> None:
    partial = tmp_path / "x.jsonl"
    partial.write_bytes(b'{"type":"session","version":3,"id":"i","timestamp":"2026-06-05T05:24:28Z","cwd":"/r"}\n{"ty')
    assert read_lines(partial) == [partial.read_bytes().split(b"\n")[0]]
    # Gemini's legacy .json is rewritten in place; a half-written one reads as no lines yet.
    legacy = tmp_path / "session-2026-06-05T04-59-dcbe78d3.json"
    legacy.write_bytes((FIXTURES / GEMINI_LEGACY).read_bytes()[:500])
    assert read_lines(legacy) == []
    with pytest.raises(FileNotFoundError):
        read_lines(tmp_path / "missing.jsonl")


# --- paths ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "session_id"),
    [
        (
            "/h/.codex/sessions/2026/02/23/rollout-2026-02-23T13-19-38-019c8a70-dda7-7f33-98ea-f30553347322.jsonl",
            "019c8a70-dda7-7f33-98ea-f30553347322",
        ),
        (
            "/h/.codex/sessions/2026/02/23/rollout-2026-02-23T13-19-38-019c8a70-dda7-7f33-98ea-f30553347322.jsonl.zst",
            "019c8a70-dda7-7f33-98ea-f30553347322",
        ),
        (
            f"/h/.claude/projects/-x/{'55604662-cf2a-4331-851a-ec234028f8ca'}.jsonl",
            "55604662-cf2a-4331-851a-ec234028f8ca",
        ),
        (
            "/h/.pi/agent/sessions/--tmp-w--/2026-06-05T05-24-28-246Z_019e963d-6bd6-7ade-8a49-256ac3391bdd.jsonl",
            "019e963d-6bd6-7ade-8a49-256ac3391bdd",
        ),
        (
            "/h/.copilot/session-state/b0ff98c0-8e01-4b73-bf92-9649b139931b/events.jsonl",
            "b0ff98c0-8e01-4b73-bf92-9649b139931b",
        ),
        ("/h/.gemini/tmp/demo/chats/session-2026-03-02T10-15-7c1d2e3f.jsonl", "session-2026-03-02T10-15-7c1d2e3f"),
        ("/h/.claude/projects/-x/abc/subagents/agent-a1b2c3.jsonl", "agent-a1b2c3"),
        ("/tmp/notes.txt", "notes"),
    ],
)
def test_session_id_from_path(path: str, session_id: str) -> None:
    assert session_id_from_path(path) == session_id


@pytest.mark.parametrize(
    ("path", "agent"),
    [
        ("/home/u/.codex/sessions/2026/01/01/rollout-x.jsonl", "codex"),
        ("/home/u/.codex/archived_sessions/rollout-x.jsonl.zst", "codex"),
        ("/home/u/.claude/projects/-home-u-repo/x.jsonl", "claude"),
        ("/home/u/.gemini/tmp/repo/chats/session-x.jsonl", "gemini"),
        ("/home/u/.cursor/projects/home-u-repo/agent-transcripts/x.jsonl", "cursor"),
        ("/home/u/.copilot/session-state/x/events.jsonl", "copilot"),
        ("/home/u/.pi/agent/sessions/--home-u-repo--/x.jsonl", "pi"),
        ("/home/u/.claude/settings.json", None),
        ("/home/u/repo/transcript.jsonl", None),
    ],
)
def test_agent_from_path(path: str, agent: str | None) -> None:
    assert agent_from_path(path) == agent


@pytest.mark.parametrize(
    ("relative", "agent"),
    [
        (".codex/sessions/2026/06/05/rollout-2026-06-05T10-00-00-019e0000-0000-7000-8000-000000000000.jsonl", "codex"),
        (".claude/projects/-r/55604662-cf2a-4331-851a-ec234028f8ca.jsonl", "claude"),
        (".cursor/projects/r/agent-transcripts/3f2b6c1e-9a47-4d2b-8c1e-5b7d9e0a1c2f.jsonl", "cursor"),
    ],
)
def test_detect_falls_back_to_path_without_content(tmp_path: Path, relative: str, agent: str) -> None:
    path = tmp_path / relative
    # Empty (Cursor flushes late), a half-written first record, or garbage: nothing to sniff.
    for first_lines in ([], [b'{"timestamp":"2026-06-05T'], [b"garbage"]):
        fmt = detect(path, first_lines)
        assert fmt is not None and fmt.name == agent
        meta = fmt.session_meta(path, first_lines)
        assert meta.session_id == session_id_from_path(path)
        assert (meta.cwd, meta.started_at, meta.last_activity_at) == (None, None, None)


def test_content_beats_path(tmp_path: Path) -> None:
    # ~/.codex/history.jsonl is JSON but not a rollout, so the path does not make it one.
    history = tmp_path / ".codex" / "history.jsonl"
    assert detect(history, [b'{"session_id":"s","ts":1780637068,"text":"hello"}']) is None
    # A Claude transcript stays Claude wherever it is.
    lines = read_lines(FIXTURES / CLAUDE_SDK)
    assert detect(tmp_path / ".codex" / "x.jsonl", lines) is get_format("claude")


def test_cursor_project_slug() -> None:
    assert cursor_project_slug("/home/dev/src/demo") == "home-dev-src-demo"
    assert cursor_project_slug("/Users/me/my.repo_v2") == "Users-me-my-repo-v2"
