"""Unit tests for `tracekeeperd.active`: reading whatever an agent hook left in hf-traces-active.json."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tracekeeperd import active
from tracekeeperd.active import (
    ActiveSession,
    parse,
    safe_component,
)
from tracekeeperd.agents import paths
from tracekeeperd.agents.paths import recipe_agent, recipe_session_id
from tracekeeperd.errors import ActiveFileError

UUID = "019c8a70-dda7-7f33-98ea-f30553347322"
BASE = Path("/work/tree")


def _parse(doc: Any, base: Path = BASE) -> list[ActiveSession]:
    return parse(json.dumps(doc).encode(), base=base)


# --- the accepted shapes ---------------------------------------------------------------


def test_recipe_single_payload() -> None:
    """The seed recipe's hook does `cat > hf-traces-active.json`: one raw hook payload."""
    sessions = _parse(
        {
            "session_id": UUID,
            "transcript_path": "/home/u/.codex/sessions/2026/rollout.jsonl",
            "cwd": "/home/u/project",
            "hook_event_name": "SessionStart",
        }
    )
    assert sessions == [
        ActiveSession(agent="codex", session_raw=UUID, transcript=Path("/home/u/.codex/sessions/2026/rollout.jsonl"))
    ]
    assert sessions[0].session_id == UUID


def test_sessions_object_and_list_forms_are_equivalent() -> None:
    payloads = [
        {"session_id": "a", "agent": "claude", "transcript_path": "/t/a.jsonl"},
        {"session_id": "b", "agent": "codex", "trace_file": "/t/b.jsonl"},
    ]
    from_object = _parse({"sessions": payloads})
    from_list = _parse(payloads)
    assert from_object == from_list
    assert [(s.agent, s.session_id, s.transcript) for s in from_list] == [
        ("claude", "a", Path("/t/a.jsonl")),
        ("codex", "b", Path("/t/b.jsonl")),
    ]


@pytest.mark.parametrize("key", ["trace_file", "transcript_path", "transcriptPath"])
def test_every_path_key_is_accepted(key: str) -> None:
    [session] = _parse({"session_id": "s1", key: "/abs/t.jsonl"})
    assert session.transcript == Path("/abs/t.jsonl")


def test_empty_sessions_list_is_no_session_not_an_error() -> None:
    assert _parse({"sessions": []}) == []
    assert _parse([]) == []


# --- relative paths --------------------------------------------------------------------


def test_relative_path_resolves_against_absolute_cwd() -> None:
    [session] = _parse({"session_id": "s", "transcript_path": "logs/t.jsonl", "cwd": "/elsewhere/proj"})
    assert session.transcript == Path("/elsewhere/proj/logs/t.jsonl")


@pytest.mark.parametrize("cwd", [None, "relative/dir", 42])
def test_relative_path_falls_back_to_base_without_a_usable_cwd(cwd: object) -> None:
    payload: dict[str, object] = {"session_id": "s", "transcript_path": "logs/t.jsonl"}
    if cwd is not None:
        payload["cwd"] = cwd
    [session] = _parse(payload, base=Path("/repo/worktree"))
    assert session.transcript == Path("/repo/worktree/logs/t.jsonl")


def test_absolute_path_ignores_cwd() -> None:
    [session] = _parse({"session_id": "s", "transcript_path": "/abs/t.jsonl", "cwd": "/other"})
    assert session.transcript == Path("/abs/t.jsonl")


# --- session id and agent fallbacks ----------------------------------------------------


def test_session_id_falls_back_to_uuid_in_file_name_lowercased() -> None:
    name = f"rollout-2026-02-23T13-19-38-{UUID.upper()}.jsonl"
    [session] = _parse({"transcript_path": f"/x/{name}"})
    assert session.session_id == UUID
    assert recipe_session_id(Path(name)) == UUID


@pytest.mark.parametrize(
    ("name", "stem"),
    [("chat.jsonl", "chat"), ("chat.jsonl.zst", "chat"), ("conv.json", "conv"), ("plain", "plain")],
)
def test_session_id_falls_back_to_stem(name: str, stem: str) -> None:
    assert recipe_session_id(Path(name)) == stem
    [session] = _parse({"transcript_path": f"/x/{name}"})
    assert session.session_id == stem


def test_recipe_fallbacks_are_not_the_path_rules() -> None:
    """One name, one rule: the recipe's fallbacks live with the other agent facts under their
    own names, and differ from the path rules where the recipe's links depend on it."""
    assert not hasattr(active, "agent_from_path") and not hasattr(active, "session_id_from_path")
    claude = Path(f"/home/u/.claude/projects/-x/{UUID}.jsonl")
    assert (recipe_agent(claude), paths.agent_from_path(claude)) == ("agent", "claude")
    two = Path(f"/x/{UUID}-then-{UUID.replace('0', 'a')}.jsonl")
    assert recipe_session_id(two) == UUID != paths.session_id_from_path(two)
    copilot = Path(f"/home/u/.copilot/session-state/{UUID}/events.jsonl")
    assert (recipe_session_id(copilot), paths.session_id_from_path(copilot)) == ("events", UUID)


def test_session_id_from_camel_case_key() -> None:
    [session] = _parse({"sessionId": "camel-1", "transcriptPath": "/x/t.jsonl"})
    assert session.session_id == "camel-1"


def test_agent_fallbacks() -> None:
    assert recipe_agent(Path("/home/u/.codex/sessions/t.jsonl")) == "codex"
    assert recipe_agent(Path("/home/u/.claude/projects/t.jsonl")) == "agent"
    # `.codex` must be a whole directory component, not a substring of one.
    assert recipe_agent(Path("/home/u/not.codex/t.jsonl")) == "agent"
    [explicit] = _parse({"agent": "claude", "transcript_path": "/home/u/.codex/t.jsonl"})
    assert explicit.agent == "claude"
    [empty] = _parse({"agent": "", "transcript_path": "/home/u/.codex/t.jsonl"})
    assert empty.agent == "codex"


# --- hostile values --------------------------------------------------------------------


@pytest.mark.parametrize("hostile", ["../../etc", "../..", "a/../../b", "..\\..\\x", "/etc/passwd", ".hidden", "x\0y"])
def test_hostile_ids_cannot_climb_out_of_a_remote_path(hostile: str) -> None:
    [session] = _parse({"session_id": hostile, "agent": hostile, "transcript_path": "/t/fallback.jsonl"})
    for value in (session.agent, session.session_id):
        assert value, "an empty component would make `<agent>-<id>` ambiguous"
        assert "/" not in value
        assert "\\" not in value
        assert "\0" not in value
        assert not value.startswith(".")
        assert value not in (".", "..")


def test_a_session_id_that_sanitises_to_nothing_keeps_its_own_identity() -> None:
    """`../..` and `///` are two ids: they must not both become the file name's stem."""
    [first] = _parse({"session_id": "../..", "agent": "///", "transcript_path": "/t/fallback.jsonl"})
    [second] = _parse({"session_id": "///", "transcript_path": "/t/fallback.jsonl"})
    assert first.session_id != second.session_id
    assert first.session_raw == "../.." and second.session_raw == "///"
    assert first.agent == "agent"


def test_without_an_id_the_file_name_is_the_session_id() -> None:
    [session] = _parse({"transcript_path": "/t/fallback.jsonl"})
    assert (session.session_id, session.session_raw) == ("fallback", "fallback")


def _key(raw: str) -> str:
    """The session id a payload's raw `session_id` becomes (queue key, note, remote path)."""
    [session] = _parse({"session_id": raw, "agent": "codex", "transcript_path": "/t/fallback.jsonl"})
    return session.session_id


#: Ids that were already safe: letters, digits, `._-`, not starting or ending with `.` or `-`, at
#: most 128 long, and without `--` (which only mapped ids contain, so the two sets never meet).
SAFE_ID = r"[A-Za-z0-9_](?:[A-Za-z0-9._]|-(?!-))*(?<![.-])"
#: Characters that make near-collisions likely: cleaning turns each unsafe run into one `-`.
NEAR = st.text(alphabet="ab-._/ :~é\n", max_size=12)


@given(st.from_regex(SAFE_ID, fullmatch=True).filter(lambda s: len(s) <= 128))
@example(UUID)
@example("019c8a70-dda7-7f33-98ea-f30553347322")
@example("claude-code_2.1")
@example("x" * 128)
def test_a_safe_id_maps_to_itself(raw: str) -> None:
    """Ordinary ids keep `<repo>/sessions/<agent>-<id>.jsonl`, so existing notes and queue rows stay valid."""
    assert _key(raw) == raw


@given(
    st.lists(st.one_of(NEAR, st.from_regex(SAFE_ID, fullmatch=True), st.text()), min_size=2, max_size=8, unique=True)
)
@example(["team/" + UUID, "team-" + UUID])
@example(["a" * 140, "a" * 139 + "b"])
@example(["a" * 128, "a" * 129])
@example(["../..", "///", "fallback"])
@example(["a--b", "a-/b", "a//b"])
def test_distinct_ids_never_share_a_session_id(raws: list[str]) -> None:
    raws = [raw for raw in raws if raw]  # an empty id is no id: the file name stands in
    keys = [_key(raw) for raw in raws]
    assert len(set(keys)) == len(keys), dict(zip(raws, keys, strict=True))
    for key in keys:
        assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}", key) and not key.endswith((".", "-")), key


@given(st.text(min_size=129))
def test_a_long_id_is_cut_but_still_its_own(raw: str) -> None:
    key = _key(raw)
    assert len(key) <= 128 and key != _key(raw[:128]) and key != _key(raw + "x")


def test_safe_component_is_bounded_and_keeps_ordinary_names() -> None:
    assert safe_component("claude-code_2.1") == "claude-code_2.1"
    assert safe_component("a b/c") == "a-b-c"
    assert len(safe_component("x" * 1000)) == 128


# --- no session, and errors ------------------------------------------------------------


@pytest.mark.parametrize("value", [None, ""])
def test_null_or_empty_transcript_path_is_no_session(value: object) -> None:
    """Codex sends `transcript_path: null` for ephemeral sessions: nothing to keep, nothing wrong."""
    assert _parse({"session_id": "s", "transcript_path": value}) == []


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"", "not valid JSON"),
        (b'"a string"', "must hold a JSON object"),
        (b"42", "must hold a JSON object"),
        (b"[1, 2]", "every session must be a JSON object"),
        (b'{"sessions": ["x"]}', "every session must be a JSON object"),
        (b'{"session_id": "s", "cwd": "/x"}', "names no transcript"),
        (b'{"transcript_path": 7}', "must be a string"),
        (b'{"transcript_path": ["/a"]}', "must be a string"),
    ],
)
def test_malformed_files_raise_a_readable_error(raw: bytes, fragment: str) -> None:
    with pytest.raises(ActiveFileError) as info:
        parse(raw, base=BASE)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message, "the reason is shown as one line in `tracekeeper status`"
    assert "hf-traces-active.json" in message or "string" in message


def test_duplicates_are_collapsed_keeping_the_first() -> None:
    sessions = _parse(
        {
            "sessions": [
                {"session_id": "s", "agent": "codex", "transcript_path": "/t/first.jsonl"},
                {"session_id": "s", "agent": "codex", "transcript_path": "/t/second.jsonl"},
                {"session_id": "s", "agent": "claude", "transcript_path": "/t/third.jsonl"},
            ]
        }
    )
    assert [(s.agent, s.transcript.name) for s in sessions] == [("codex", "first.jsonl"), ("claude", "third.jsonl")]


def test_home_relative_path_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    [session] = _parse({"session_id": "s", "transcript_path": "~/t.jsonl", "cwd": "/ignored"})
    assert session.transcript == tmp_path / "t.jsonl"


def test_agent_and_session_never_share_a_remote_file_across_the_dash() -> None:
    """`<agent>-<session>.jsonl`: agent `a-b` with session `c` and agent `a` with session `b-c`
    must not name the same file; plain agent names are kept as they are."""
    from tracekeeperd.active import agent_key, session_key
    from tracekeeperd.ingest import remote_path

    assert [agent_key(a) for a in ("codex", "claude", "gemini", "cursor", "copilot", "pi")] == [
        "codex",
        "claude",
        "gemini",
        "cursor",
        "copilot",
        "pi",
    ]
    one = remote_path("r", agent_key("a-b"), session_key("c"))
    two = remote_path("r", agent_key("a"), session_key("b-c"))
    assert one != two
    assert "-" not in agent_key("claude-code") and "/" not in agent_key("../../x")


@given(st.text(min_size=1, max_size=60), st.text(min_size=1, max_size=60))
def test_agent_key_is_one_to_one_and_dash_free(a: str, b: str) -> None:
    from tracekeeperd.active import agent_key

    assert "-" not in agent_key(a) and "/" not in agent_key(a)
    if a != b:
        assert agent_key(a) != agent_key(b)


# --- parsing limits: any input is an error with a reason, never a crash -------------------


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        # What a hostile or broken writer can leave: json.loads raises RecursionError on these.
        (b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
        (b'{"sessions": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", "nested too deeply"),
        (b'{"transcript_path": "/t.jsonl", "x": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001, "nested too deeply"),
        (b'{"transcript_path": "/t.jsonl", "pad": "' + b"a" * (2 << 20) + b'"}', "larger than 1 MiB"),
        (b"null", "must hold a JSON object"),
        (b"true", "must hold a JSON object"),
        (b'{"transcript_path": "/t\\u0000x.jsonl"}', "NUL"),
        (b'{"transcript_path": "/' + b"a" * 5000 + b'.jsonl"}', "longer than"),
        (b'{"transcript_path": "/t.jsonl", "cwd": "/a\\u0000b"}', "NUL"),
    ],
)
def test_hostile_files_raise_a_readable_error(raw: bytes, fragment: str) -> None:
    with pytest.raises(ActiveFileError) as info:
        parse(raw, base=BASE)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_more_sessions_than_any_hook_keeps_is_refused() -> None:
    """tracekeeper's own hook keeps at most 64 (hookcmd._MAX_SESSIONS): more is not a hook's file."""
    sessions = [{"session_id": f"s{i}", "transcript_path": f"/t/{i}.jsonl"} for i in range(65)]
    with pytest.raises(ActiveFileError, match="more than 64 sessions"):
        _parse({"sessions": sessions})
    assert len(_parse({"sessions": sessions[:64]})) == 64


@pytest.mark.parametrize("value", [[["deep"]], {"a": {"b": 1}}, 1.5, True])
def test_ids_that_are_not_strings_fall_back_to_the_file_name(value: object) -> None:
    """str() of a deeply nested value recurses too: ids are taken only from strings and integers."""
    [session] = _parse({"session_id": value, "agent": value, "transcript_path": "/t/fallback.jsonl"})
    assert (session.session_id, session.agent) == ("fallback", "agent")
    [numbered] = _parse({"session_id": 42, "transcript_path": "/t/x.jsonl"})
    assert numbered.session_id == "42"


def test_read_caps_what_it_reads_and_refuses_what_is_not_a_file(tmp_path: Path) -> None:
    from tracekeeperd.active import MAX_BYTES, read

    assert read(tmp_path / "missing.json") is None
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (MAX_BYTES * 3))
    assert len(read(big) or b"") == MAX_BYTES + 1, "enough to know it is too large, no more"
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(ActiveFileError, match="not a regular file"):
        read(fifo)  # opening a FIFO for reading would block until a writer came
    with pytest.raises(ActiveFileError, match="not a regular file"):
        read(tmp_path)


def test_ids_that_differ_only_past_the_kept_length_stay_apart() -> None:
    """Found by Hypothesis in CI: raw ids were cut at 1,024 characters before their hash, so two
    ids that differ only after that shared one session key (one queue row, one remote file)."""
    long = "0" * 1100
    assert _key(long) != _key(long + "x") != _key(long + "y")
    assert len(_key(long + "x")) <= 128
