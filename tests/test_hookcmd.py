"""`tracekeeper hook <agent>` as agents run it: a real process, payload on stdin, real git repos.

Every test runs the entry point the console script uses (`tracekeeper.entry`) in a subprocess
with a temporary HOME, and checks what the agents care about (stdout exactly, exit 0) and what
the daemon will read (the active file). Payload shapes follow ../shared/docs/agents.md.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracekeeper import hookcmd
from tracekeeperd import active, git
from tracekeeperd.agents import paths

from .harness import UUID_A, UUID_B, Env, Repo, make_env, make_repo

CURSOR_ID = "c0ffee00-1111-4222-8333-444455556666"
COPILOT_ID = "7d0a3b1e-5f7a-4c8e-9b0a-0123456789ab"
GEMINI_ID = "3f2b1c4d-9e8f-4a7b-b6c5-d4e3f2a1b0c9"


@pytest.fixture
def env() -> Iterator[Env]:
    yield from make_env()


@pytest.fixture
def repo(env: Env) -> Repo:
    return make_repo(env)


def run_hook(
    env: Env,
    *args: str,
    payload: Any = None,
    raw: bytes | None = None,
    cwd: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    data = raw if raw is not None else json.dumps(payload).encode()
    return subprocess.run(
        [sys.executable, "-m", "tracekeeper.entry", "hook", *args],
        input=data,
        capture_output=True,
        env={**env.vars, **(extra_env or {})},
        cwd=cwd or env.root,
        timeout=30,
        check=False,
    )


def active_path(repo: Repo) -> Path:
    return repo.git_dir / "hf-traces-active.json"


def sessions(repo: Repo) -> list[dict[str, Any]]:
    doc = json.loads(active_path(repo).read_text())
    assert doc["version"] == 1
    found: list[dict[str, Any]] = doc["sessions"]
    return found


def hook_log(env: Env) -> str:
    path = env.state / "hook.log"
    return path.read_text() if path.exists() else ""


# --- realistic payloads ------------------------------------------------------------------------


def codex_payload(env: Env, cwd: Path, event: str = "UserPromptSubmit", sid: str = UUID_A) -> dict[str, Any]:
    rollout = env.home / ".codex" / "sessions" / "2026" / "11" / "25" / f"rollout-2026-11-25T09-00-00-{sid}.jsonl"
    body: dict[str, Any] = {
        "session_id": sid,
        "transcript_path": str(rollout),
        "cwd": str(cwd),
        "hook_event_name": event,
        "model": "gpt-5.5-codex",
        "permission_mode": "default",
    }
    if event == "SessionStart":
        body["source"] = "startup"
    if event == "UserPromptSubmit":
        body.update(turn_id="019c8a71-0000-7000-8000-000000000001", prompt="add a --json flag to status")
    if event == "Stop":
        body.update(
            turn_id="019c8a71-0000-7000-8000-000000000001",
            stop_hook_active=False,
            last_assistant_message="Done: status now takes --json.",
        )
    return body


def claude_payload(env: Env, cwd: Path, event: str = "UserPromptSubmit", sid: str = UUID_B) -> dict[str, Any]:
    slug = "".join(c if c.isalnum() else "-" for c in str(cwd))
    body: dict[str, Any] = {
        "session_id": sid,
        "transcript_path": str(env.home / ".claude" / "projects" / slug / f"{sid}.jsonl"),
        "cwd": str(cwd),
        "permission_mode": "acceptEdits",
        "hook_event_name": event,
    }
    if event == "SessionStart":
        body.update(source="startup", model="claude-opus-4-5")
    if event == "UserPromptSubmit":
        body["prompt"] = "why does the queue test flake?"
    if event == "Stop":
        body.update(stop_hook_active=False, last_assistant_message="The lease expired.")
    if event == "SessionEnd":
        body["reason"] = "prompt_input_exit"
    return body


def gemini_payload(env: Env, cwd: Path, event: str = "BeforeAgent") -> dict[str, Any]:
    chat = env.home / ".gemini" / "tmp" / "app" / "chats" / f"session-2026-11-25T09-00-{GEMINI_ID[:8]}.jsonl"
    body: dict[str, Any] = {
        "session_id": GEMINI_ID,
        "transcript_path": str(chat),
        "cwd": str(cwd),
        "hook_event_name": event,
        "timestamp": "2026-11-25T09:00:00.000Z",
    }
    if event in ("BeforeAgent", "AfterAgent"):
        body["prompt"] = "summarise the diff"
    if event == "AfterAgent":
        body.update(prompt_response="Two files changed.", stop_hook_active=False)
    return body


def cursor_payload(root: Path, event: str = "beforeSubmitPrompt") -> dict[str, Any]:
    body: dict[str, Any] = {
        "conversation_id": CURSOR_ID,
        "generation_id": "9a8b7c6d-0000-4000-8000-000000000002",
        "model": "claude-4.5-sonnet",
        "hook_event_name": event,
        "cursor_version": "2.1.42",
        "workspace_roots": [str(root)],
        "user_email": "dev@example.com",
        "transcript_path": None,
    }
    if event == "sessionStart":
        body.update(session_id=CURSOR_ID, is_background_agent=False, composer_mode="agent")
    if event == "beforeSubmitPrompt":
        body.update(prompt="rename the helper", attachments=[{"type": "file", "file_path": str(root / "a.py")}])
    if event == "stop":
        body.update(status="completed", loop_count=0)
    return body


def copilot_payload(cwd: Path, **extra: Any) -> dict[str, Any]:
    return {"timestamp": 1764061200000, "cwd": str(cwd), "sessionId": COPILOT_ID, **extra}


# --- each agent --------------------------------------------------------------------------------


def test_codex_prompt_is_recorded_with_nothing_on_stdout(env: Env, repo: Repo) -> None:
    payload = codex_payload(env, repo.path)
    proc = run_hook(env, "codex", payload=payload)
    assert (proc.returncode, proc.stdout) == (0, b"")
    [entry] = sessions(repo)
    assert entry["agent"] == "codex"
    assert entry["session_id"] == UUID_A
    assert entry["transcript_path"] == payload["transcript_path"]
    assert entry["cwd"] == str(repo.path)
    assert entry["hook_event_name"] == "UserPromptSubmit"
    assert entry["model"] == "gpt-5.5-codex"
    assert entry["turn_id"] == payload["turn_id"]
    assert isinstance(entry["seen_at"], float)
    assert "prompt" not in entry
    assert "ended_at" not in entry
    assert hook_log(env) == ""


@pytest.mark.parametrize(
    ("agent", "make", "expected_agent", "expected_stdout"),
    [
        ("codex", lambda env, cwd: codex_payload(env, cwd, "Stop"), "codex", b""),
        ("claude", lambda env, cwd: claude_payload(env, cwd, "SessionStart"), "claude", b""),
        ("claude", lambda env, cwd: claude_payload(env, cwd, "Stop"), "claude", b""),
        ("gemini", lambda env, cwd: gemini_payload(env, cwd, "AfterAgent"), "gemini", b""),
        ("cursor", lambda env, cwd: cursor_payload(cwd, "sessionStart"), "cursor", b"{}\n"),
        ("cursor", lambda env, cwd: cursor_payload(cwd, "beforeSubmitPrompt"), "cursor", b'{"continue": true}\n'),
        ("cursor", lambda env, cwd: cursor_payload(cwd, "stop"), "cursor", b"{}\n"),
    ],
)
def test_each_agent(env: Env, repo: Repo, agent: str, make: Any, expected_agent: str, expected_stdout: bytes) -> None:
    payload = make(env, repo.path)
    proc = run_hook(env, agent, payload=payload)
    assert proc.returncode == 0
    assert proc.stdout == expected_stdout
    [entry] = sessions(repo)
    assert entry["agent"] == expected_agent
    for dropped in ("prompt", "last_assistant_message", "prompt_response", "user_email", "attachments"):
        assert dropped not in entry
    assert Path(entry["transcript_path"]).is_absolute()
    assert hook_log(env) == ""


def test_cursor_cli_null_transcript_is_derived_from_workspace_root(env: Env, repo: Repo) -> None:
    run_hook(env, "cursor", payload=cursor_payload(repo.path))
    [entry] = sessions(repo)
    slug = paths.cursor_project_slug(repo.path)
    expected = env.home / ".cursor" / "projects" / slug / "agent-transcripts" / f"{CURSOR_ID}.jsonl"
    assert entry["transcript_path"] == str(expected)
    assert entry["session_id"] == CURSOR_ID
    assert entry["cwd"] == str(repo.path)  # no cwd in the payload: workspace_roots[0]
    assert entry["workspace_roots"] == [str(repo.path)]


def test_cursor_ide_nested_layout_and_config_dir(env: Env, repo: Repo) -> None:
    config = env.root / "cursor-config"
    slug = paths.cursor_project_slug(repo.path)
    nested = config / "projects" / slug / "agent-transcripts" / CURSOR_ID
    nested.mkdir(parents=True)  # the IDE creates the directory before the file
    run_hook(env, "cursor", payload=cursor_payload(repo.path, "stop"), extra_env={"CURSOR_CONFIG_DIR": str(config)})
    [entry] = sessions(repo)
    assert entry["transcript_path"] == str(nested / f"{CURSOR_ID}.jsonl")


def test_cursor_running_claude_hooks_is_detected_as_cursor(env: Env, repo: Repo) -> None:
    """Cursor runs ~/.claude/settings.json hooks too: `hook claude` then gets a Cursor payload."""
    payload = cursor_payload(repo.path, "UserPromptSubmit")
    payload.update(session_id=CURSOR_ID, cwd=str(repo.path))
    proc = run_hook(env, "claude", payload=payload)
    assert proc.returncode == 0
    assert proc.stdout == b'{"continue": true}\n'
    [entry] = sessions(repo)
    assert entry["agent"] == "cursor"
    assert "/.cursor/projects/" in entry["transcript_path"]


def test_copilot_transcript_derived_and_session_end_from_argument(env: Env, repo: Repo) -> None:
    proc = run_hook(env, "copilot", "sessionStart", payload=copilot_payload(repo.path, source="new", initialPrompt="x"))
    assert (proc.returncode, proc.stdout) == (0, b"")
    [entry] = sessions(repo)
    assert entry["agent"] == "copilot"
    assert entry["session_id"] == COPILOT_ID
    assert entry["transcript_path"] == str(env.home / ".copilot" / "session-state" / COPILOT_ID / "events.jsonl")
    assert entry["hook_event_name"] == "sessionStart"
    assert "initialPrompt" not in entry
    assert "ended_at" not in entry

    proc = run_hook(env, "copilot", "sessionEnd", payload=copilot_payload(repo.path, reason="complete"))
    assert (proc.returncode, proc.stdout) == (0, b"")
    [entry] = sessions(repo)
    assert entry["ended_at"] == entry["seen_at"]


def test_copilot_transcript_path_and_copilot_home(env: Env, repo: Repo) -> None:
    home = env.root / "copilot-home"
    run_hook(
        env,
        "copilot",
        "userPromptSubmitted",
        payload=copilot_payload(repo.path, prompt="p"),
        extra_env={"COPILOT_HOME": str(home)},
    )
    assert sessions(repo)[0]["transcript_path"] == str(home / "session-state" / COPILOT_ID / "events.jsonl")
    given = env.root / "elsewhere" / "events.jsonl"
    run_hook(
        env,
        "copilot",
        "agentStop",
        payload=copilot_payload(repo.path, transcriptPath=str(given), stopReason="end_turn"),
    )
    [entry] = sessions(repo)
    assert entry["transcript_path"] == str(given)
    assert "transcriptPath" not in entry  # one canonical key, so the daemon cannot pick a stale one


def test_agent_told_apart_by_payload_not_argument(env: Env, repo: Repo) -> None:
    run_hook(env, "claude", payload=codex_payload(env, repo.path))
    run_hook(env, "codex", payload=gemini_payload(env, repo.path))
    assert sorted(e["agent"] for e in sessions(repo)) == ["codex", "gemini"]


def test_relocated_transcripts_are_recognised(env: Env, repo: Repo) -> None:
    codex_home = env.root / "codex-home"
    payload = codex_payload(env, repo.path, "SessionStart")
    payload["transcript_path"] = str(codex_home / "sessions" / "2026" / "11" / "25" / f"rollout-x-{UUID_A}.jsonl")
    run_hook(env, "claude", payload=payload, extra_env={"CODEX_HOME": str(codex_home)})
    assert sessions(repo)[0]["agent"] == "codex"


def test_claude_session_end_sets_ended_at_and_resume_clears_it(env: Env, repo: Repo) -> None:
    run_hook(env, "claude", payload=claude_payload(env, repo.path, "SessionStart"))
    run_hook(env, "claude", payload=claude_payload(env, repo.path, "SessionEnd"))
    [entry] = sessions(repo)
    assert entry["ended_at"] == entry["seen_at"]
    assert entry["reason"] == "prompt_input_exit"
    resumed = claude_payload(env, repo.path, "SessionStart")
    resumed["source"] = "resume"
    run_hook(env, "claude", payload=resumed)
    [entry] = sessions(repo)
    assert "ended_at" not in entry
    assert entry["source"] == "resume"


# --- several sessions, old files ---------------------------------------------------------------


def test_two_agents_at_once_are_both_kept(env: Env, repo: Repo) -> None:
    run_hook(env, "codex", payload=codex_payload(env, repo.path, "SessionStart"))
    run_hook(env, "claude", payload=claude_payload(env, repo.path))
    run_hook(env, "codex", payload=codex_payload(env, repo.path, "Stop"))
    found = sessions(repo)
    assert [(e["agent"], e["session_id"]) for e in found] == [("claude", UUID_B), ("codex", UUID_A)]
    parsed = active.parse(active_path(repo).read_bytes(), base=repo.path)
    assert {(s.agent, s.session_id) for s in parsed} == {("claude", UUID_B), ("codex", UUID_A)}
    assert {str(s.transcript) for s in parsed} == {e["transcript_path"] for e in found}


def test_resumed_session_replaces_its_own_entry(env: Env, repo: Repo) -> None:
    run_hook(env, "codex", payload=codex_payload(env, repo.path, "SessionStart"))
    first = sessions(repo)[0]["seen_at"]
    run_hook(env, "codex", payload=codex_payload(env, repo.path, "UserPromptSubmit"))
    [entry] = sessions(repo)
    assert entry["seen_at"] > first
    assert entry["hook_event_name"] == "UserPromptSubmit"
    assert "source" not in entry  # the whole entry is replaced, not merged


def test_concurrent_hooks_lose_no_session(env: Env, repo: Repo) -> None:
    ids = [f"019c8a70-dda7-7f33-98ea-{n:012d}" for n in range(12)]

    def fire(sid: str) -> subprocess.CompletedProcess[bytes]:
        return run_hook(env, "codex", payload=codex_payload(env, repo.path, "SessionStart", sid=sid))

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(fire, ids))
    assert all(r.returncode == 0 and r.stdout == b"" for r in results)
    assert sorted(e["session_id"] for e in sessions(repo)) == sorted(ids)
    assert not [p for p in active_path(repo).parent.iterdir() if ".tmp." in p.name]
    assert hook_log(env) == ""


def test_recipe_single_object_file_is_converted_and_kept(env: Env, repo: Repo) -> None:
    rollout = env.transcript()
    target = repo.activate(rollout)  # the recipe's `cat > hf-traces-active.json`
    recipe = json.loads(target.read_text())
    run_hook(env, "claude", payload=claude_payload(env, repo.path))
    found = sessions(repo)
    assert found[0] == recipe
    assert found[1]["agent"] == "claude"
    # The same Codex session seen by our hook replaces the recipe's entry.
    run_hook(env, "codex", payload=codex_payload(env, repo.path, "Stop"))
    assert sorted((e.get("agent"), e["session_id"]) for e in sessions(repo)) == [("claude", UUID_B), ("codex", UUID_A)]


def test_entry_without_transcript_key_is_dropped_so_the_daemon_can_read_the_file(env: Env, repo: Repo) -> None:
    active_path(repo).write_text(json.dumps({"sessions": [{"session_id": "x", "cwd": str(repo.path)}]}))
    run_hook(env, "codex", payload=codex_payload(env, repo.path))
    assert [e["session_id"] for e in sessions(repo)] == [UUID_A]
    assert len(active.parse(active_path(repo).read_bytes(), base=repo.path)) == 1
    assert "naming no transcript" in hook_log(env)


def test_without_agent_argument_the_payload_decides(env: Env, repo: Repo) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tracekeeper.entry", "hook"],
        input=json.dumps(codex_payload(env, repo.path)).encode(),
        capture_output=True,
        env=env.vars,
        timeout=30,
        check=False,
    )
    assert (proc.returncode, proc.stdout) == (0, b"")
    assert sessions(repo)[0]["agent"] == "codex"


def test_help_goes_to_stderr(env: Env) -> None:
    proc = run_hook(env, "--help", raw=b"")
    assert (proc.returncode, proc.stdout) == (0, b"")
    assert b"usage: tracekeeper hook" in proc.stderr


def test_list_file_is_converted(env: Env, repo: Repo) -> None:
    other = claude_payload(env, repo.path, "SessionStart")
    active_path(repo).write_text(json.dumps([other]))
    run_hook(env, "codex", payload=codex_payload(env, repo.path))
    assert [e["session_id"] for e in sessions(repo)] == [UUID_B, UUID_A]


@pytest.mark.parametrize("content", [b"{not json", b"", b'"a string"', b'{"sessions": 5}', b"\xff\xfe"])
def test_corrupt_file_is_replaced_and_logged(env: Env, repo: Repo, content: bytes) -> None:
    active_path(repo).write_bytes(content)
    proc = run_hook(env, "codex", payload=codex_payload(env, repo.path))
    assert (proc.returncode, proc.stdout) == (0, b"")
    [entry] = sessions(repo)
    assert entry["session_id"] == UUID_A
    if content:
        assert "dropped unusable content" in hook_log(env)


# --- where it records, and where it does not ---------------------------------------------------


def test_linked_worktree_gets_its_own_file(env: Env, repo: Repo) -> None:
    repo.git("commit", "-q", "--allow-empty", "-m", "init")
    tree = env.root / "wt"
    repo.git("worktree", "add", "-q", str(tree))
    run_hook(env, "codex", payload=codex_payload(env, tree))
    run_hook(env, "claude", payload=claude_payload(env, repo.path))
    wt_file = repo.git_dir / "worktrees" / "wt" / "hf-traces-active.json"
    wt_sessions = json.loads(wt_file.read_text())["sessions"]
    assert [e["agent"] for e in wt_sessions] == ["codex"]
    assert [e["agent"] for e in sessions(repo)] == ["claude"]


def test_subdirectory_cwd_finds_the_repository(env: Env, repo: Repo) -> None:
    sub = repo.path / "pkg" / "mod"
    sub.mkdir(parents=True)
    run_hook(env, "codex", payload=codex_payload(env, sub))
    assert sessions(repo)[0]["cwd"] == str(sub)


@pytest.mark.parametrize("agent", ["codex", "cursor"])
def test_outside_a_repository_nothing_is_written(env: Env, agent: str) -> None:
    plain = env.root / "plain"
    plain.mkdir()
    payload = codex_payload(env, plain) if agent == "codex" else cursor_payload(plain)
    proc = run_hook(env, agent, payload=payload, extra_env={"GIT_CEILING_DIRECTORIES": str(env.root)})
    assert proc.returncode == 0
    assert proc.stdout == (b"" if agent == "codex" else b'{"continue": true}\n')
    assert not list(env.root.rglob("hf-traces-active.json"))
    assert hook_log(env) == ""


def test_inherited_git_dir_does_not_redirect(env: Env, repo: Repo) -> None:
    other = make_repo(env, "other")
    proc = run_hook(
        env,
        "codex",
        payload=codex_payload(env, repo.path),
        extra_env={"GIT_DIR": str(other.git_dir), "GIT_WORK_TREE": str(other.path)},
    )
    assert proc.returncode == 0
    assert sessions(repo)[0]["session_id"] == UUID_A
    assert not active_path(other).exists()


def test_codex_ephemeral_session_records_nothing(env: Env, repo: Repo) -> None:
    payload = codex_payload(env, repo.path)
    payload["transcript_path"] = None
    proc = run_hook(env, "codex", payload=payload)
    assert (proc.returncode, proc.stdout) == (0, b"")
    assert not active_path(repo).exists()


def test_gemini_with_recording_off_records_nothing(env: Env, repo: Repo) -> None:
    payload = gemini_payload(env, repo.path)
    payload["transcript_path"] = ""
    run_hook(env, "gemini", payload=payload)
    assert not active_path(repo).exists()


def test_missing_transcript_still_recorded(env: Env, repo: Repo) -> None:
    """A Claude payload without a transcript path: the derived one lets the daemon say it is missing."""
    payload = claude_payload(env, repo.path)
    del payload["transcript_path"]
    run_hook(env, "claude", payload=payload)
    [entry] = sessions(repo)
    slug = "".join(c if c.isalnum() else "-" for c in str(repo.path))
    assert entry["transcript_path"] == str(env.home / ".claude" / "projects" / slug / f"{UUID_B}.jsonl")


@pytest.mark.parametrize(
    ("var", "payload_key"),
    [("GEMINI_CWD", "gemini"), ("CLAUDE_PROJECT_DIR", "claude")],
)
def test_cwd_from_environment_when_payload_has_none(env: Env, repo: Repo, var: str, payload_key: str) -> None:
    payload = gemini_payload(env, repo.path) if payload_key == "gemini" else claude_payload(env, repo.path)
    del payload["cwd"]
    run_hook(env, payload_key, payload=payload, extra_env={var: str(repo.path)})
    assert sessions(repo)[0]["cwd"] == str(repo.path)


def test_cwd_falls_back_to_process_cwd(env: Env, repo: Repo) -> None:
    payload = claude_payload(env, repo.path)
    del payload["cwd"]
    run_hook(env, "claude", payload=payload, cwd=repo.path)
    assert sessions(repo)[0]["cwd"] == str(repo.path)


HOSTILE: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("not json", b"hello\n"),
    ("list", b"[1, 2]"),
    ("string", b'"x"'),
    ("deep", b"[" * 100000 + b"]" * 100000),
    ("bad utf8", b'{"cwd": "\xff"}'),
    ("cwd list", json.dumps({"session_id": UUID_A, "cwd": ["/"], "transcript_path": 5}).encode()),
    ("cwd nul", json.dumps({"session_id": UUID_A, "cwd": "/tmp\u0000x"}).encode()),
    ("numbers", json.dumps({"session_id": 12, "transcript_path": {"a": 1}, "hook_event_name": 3}).encode()),
]


@pytest.mark.parametrize(("name", "raw"), HOSTILE, ids=[h[0] for h in HOSTILE])
@pytest.mark.parametrize("agent", ["codex", "cursor"])
def test_hostile_payloads_never_break_the_agent(env: Env, repo: Repo, name: str, raw: bytes, agent: str) -> None:
    proc = run_hook(env, agent, raw=raw, cwd=repo.path)
    assert proc.returncode == 0
    assert proc.stdout == (b"" if agent == "codex" else b"{}\n")
    assert b"Traceback" not in proc.stderr
    if active_path(repo).exists():
        active.parse(active_path(repo).read_bytes(), base=repo.path)  # whatever was written is readable


def test_hostile_session_id_cannot_choose_the_transcript(env: Env, repo: Repo) -> None:
    payload = copilot_payload(repo.path)
    payload["sessionId"] = "../../../../etc/passwd"
    proc = run_hook(env, "copilot", "sessionStart", payload=payload)
    assert (proc.returncode, proc.stdout) == (0, b"")
    assert not active_path(repo).exists()
    assert "refusing to build a transcript path" in hook_log(env)


def test_huge_fields_are_not_copied(env: Env, repo: Repo) -> None:
    payload = codex_payload(env, repo.path)
    payload.update(prompt="p" * 2_000_000, note="n" * 5000, custom={"nested": True}, extra_ok="short")
    proc = run_hook(env, "codex", payload=payload)
    assert (proc.returncode, proc.stdout) == (0, b"")
    [entry] = sessions(repo)
    assert "prompt" not in entry and "note" not in entry and "custom" not in entry
    assert entry["extra_ok"] == "short"
    assert active_path(repo).stat().st_size < 4096


def test_payload_cannot_forge_canonical_fields(env: Env, repo: Repo) -> None:
    payload = codex_payload(env, repo.path, "Stop")
    payload.update(agent="evil", seen_at=0, ended_at=1, trace_file="/etc/shadow")
    run_hook(env, "codex", payload=payload)
    [entry] = sessions(repo)
    assert entry["agent"] == "codex"
    assert entry["seen_at"] > 1
    assert "ended_at" not in entry
    assert "trace_file" not in entry


# --- it stays cheap ----------------------------------------------------------------------------


def _imports(env: Env, code: str, stdin: bytes = b"") -> set[str]:
    """Modules `code` imports, without site (-S): this checkout's editable install has a .pth
    finder that imports re and pathlib at every start, which would hide the hook importing them."""
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-S", "-X", "importtime", "-c", code],
        input=stdin,
        capture_output=True,
        env={**env.vars, "PYTHONPATH": f"{root / 'client'}:{root}"},
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return {line.split("|")[-1].strip() for line in proc.stderr.decode().splitlines() if "|" in line}


def test_hook_imports_nothing_heavy(env: Env, repo: Repo) -> None:
    """Only what the hook adds to an interpreter's start (which always imports os) counts."""
    run = "import sys; sys.argv = ['tracekeeper', 'hook', 'codex']; from tracekeeper.entry import main; main()"
    added = _imports(env, run, json.dumps(codex_payload(env, repo.path)).encode()) - _imports(env, "import os")
    for heavy in (
        "click",
        "rich",
        "huggingface_hub",
        "aiohttp",
        "subprocess",
        "pathlib",
        "typing",
        "tracekeeperd.agents",
        # json's Python half imports re, which imports enum, functools and collections: together
        # more than the rest of the hook (bench/bench_hook.py). The C half (_json) does the work.
        "json",
        "re",
        "enum",
        "select",
    ):
        assert heavy not in added, heavy
    ours = {"tracekeeper", "tracekeeperd", "tracekeeper.entry", "tracekeeper.hookcmd", "tracekeeper.errors"}
    ours.add("tracekeeperd.gitenv")  # git's clean environment, shared with the runner: imports only os
    assert added <= ours | {"__future__", "fcntl", "_json"}, added
    assert sessions(repo)


def _git_shim(env: Env) -> tuple[dict[str, str], Path]:
    """A PATH whose `git` records each call, then runs the real git."""
    shims = env.root / "shims"
    shims.mkdir(exist_ok=True)
    calls = env.root / "git-calls"
    real = subprocess.run(["sh", "-c", "command -v git"], capture_output=True, text=True, check=True).stdout.strip()
    shim = shims / "git"
    shim.write_text(f'#!/bin/sh\necho "$*" >> "{calls}"\nexec "{real}" "$@"\n')
    shim.chmod(0o755)
    return {"PATH": f"{shims}:{env.vars['PATH']}"}, calls


def test_repository_found_without_running_git(env: Env, repo: Repo) -> None:
    """Walking up for `.git` (a directory, or a worktree's or submodule's `gitdir:` file) replaces a git start;
    the file lands where `git rev-parse --git-path` says."""
    repo.git("commit", "-q", "--allow-empty", "-m", "init")
    tree = env.root / "wt"
    repo.git("worktree", "add", "-q", str(tree))
    sub = repo.path / "pkg" / "mod"
    sub.mkdir(parents=True)
    lib = make_repo(env, "lib")
    lib.git("commit", "-q", "--allow-empty", "-m", "init")
    repo.git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib.path), "vendor/lib")
    module = repo.path / "vendor" / "lib"
    assert (module / ".git").is_file()  # gitdir: ../../.git/modules/vendor/lib
    path_env, calls = _git_shim(env)
    for cwd in (repo.path, sub, tree, module):
        proc = run_hook(env, "codex", payload=codex_payload(env, cwd), extra_env=path_env)
        assert (proc.returncode, proc.stdout, hook_log(env)) == (0, b"", "")
        expected = subprocess.run(
            ["git", "-C", str(cwd), "rev-parse", "--path-format=absolute", "--git-path", "hf-traces-active.json"],
            capture_output=True,
            text=True,
            env=env.vars,
            check=True,
        ).stdout.strip()
        doc = json.loads(Path(expected).read_text())
        assert [e["cwd"] for e in doc["sessions"]] == [str(cwd)]
    assert not calls.exists(), calls.read_text()


def test_unusual_layouts_are_left_to_git(env: Env, repo: Repo) -> None:
    """Where the walk could disagree with git (ceiling directories, a bare repository on the
    way up, an invalid `.git`), git decides."""
    path_env, calls = _git_shim(env)
    sub = repo.path / "sub"
    (sub / ".git").mkdir(parents=True)  # not a repository: git skips it and finds repo
    proc = run_hook(env, "codex", payload=codex_payload(env, sub), extra_env=path_env)
    assert proc.returncode == 0
    assert sessions(repo)[0]["cwd"] == str(sub)
    assert calls.read_text().count("rev-parse") == 1
    proc = run_hook(
        env, "claude", payload=claude_payload(env, repo.path), extra_env={**path_env, "GIT_CEILING_DIRECTORIES": "/nx"}
    )
    assert calls.read_text().count("rev-parse") == 2
    assert {e["agent"] for e in sessions(repo)} == {"codex", "claude"}


def test_helpers_match_the_daemon() -> None:
    """hookcmd repeats a few daemon helpers to stay cheap to import; they must not drift."""
    assert hookcmd.clean_env is git.clean_env, "one environment rule for every git we run"
    for root in ("/home/u/src/my.app", "/tmp/a b/c-d_e", "/x"):
        assert hookcmd._slug(root.lstrip("/")) == paths.cursor_project_slug(root)
    for path in (
        f"/h/.codex/sessions/2026/11/25/rollout-2026-11-25T09-00-00-{UUID_A}.jsonl",
        f"/h/.copilot/session-state/{COPILOT_ID}/events.jsonl",
        "/h/.cursor/projects/x/agent-transcripts/abc.txt",
        f"/h/.claude/projects/-x/{UUID_B}.jsonl.zst",
    ):
        assert hookcmd._id_from_path(path) == paths.session_id_from_path(path)


def test_hook_knows_the_daemons_agent_directories(monkeypatch: pytest.MonkeyPatch) -> None:
    """hookcmd keeps its own copy of which directory is whose (it must not import
    tracekeeperd.agents); for the default locations it must name the agent the daemon does."""
    for variable in ("CODEX_HOME", "CLAUDE_CONFIG_DIR", "CURSOR_CONFIG_DIR", "COPILOT_HOME", "PI_CODING_AGENT_DIR"):
        monkeypatch.delenv(variable, raising=False)
    for agent, marker in paths._AGENT_DIRS:
        path = f"/home/u{marker}x/{UUID_A}.jsonl"
        assert paths.agent_from_path(path) == agent
        assert hookcmd._agent_from_transcript(path) == agent, agent
    assert hookcmd._agent_from_transcript(f"/home/u/elsewhere/{UUID_A}.jsonl") is None
    assert paths.agent_from_path(f"/home/u/elsewhere/{UUID_A}.jsonl") is None
    assert hookcmd._PATH_KEYS == active._PATH_KEYS, "the transcript keys, in the daemon's order"


def test_entry_sends_everything_else_to_the_click_cli(env: Env) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tracekeeper.entry", "--version"],
        capture_output=True,
        text=True,
        env=env.vars,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0
    assert "tracekeeper" in proc.stdout


def test_log_goes_to_xdg_state(env: Env, repo: Repo) -> None:
    proc = run_hook(env, "codex", raw=b"{broken", extra_env={"XDG_STATE_HOME": str(env.root / "st")})
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"", b"")
    line = (env.root / "st" / "tracekeeper" / "hook.log").read_text()
    assert line.count("\n") == 1 and "not JSON" in line
    assert os.environ.get("XDG_STATE_HOME") != str(env.root / "st")


# --- the stand-ins for json and re match the originals ------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=25,
)


def _outcome(parse: Any, data: bytes) -> str:
    try:
        return "value " + repr(parse(data))  # repr: nan != nan
    except (ValueError, RecursionError) as exc:
        return f"{type(exc).__name__}: {exc}"


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(_json_values)
def test_json_stand_in_matches_json(value: Any) -> None:
    pretty = json.dumps(value, indent=2, ensure_ascii=False)
    assert hookcmd._dumps(value) == pretty
    for data in (pretty.encode(), json.dumps(value).encode(), b" \n" + pretty.encode("utf-16") + b"\t"):
        assert _outcome(hookcmd._loads, data) == _outcome(json.loads, data)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    st.binary(max_size=40) | st.text(alphabet='{}[]",:0123456789.eE-+ tnrufalsNIy\\\ufeff', max_size=30).map(str.encode)
)
def test_json_stand_in_fails_like_json(data: bytes) -> None:
    assert _outcome(hookcmd._loads, data) == _outcome(json.loads, data)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.text(max_size=60) | st.text(alphabet="0123456789abcdefABCDEF-x./", max_size=120))
def test_regex_stand_ins_match_re(text: str) -> None:
    uuid = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
    assert hookcmd._safe_id(text) == bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", text))
    assert hookcmd._safe_name(text) == re.sub(r"[^A-Za-z0-9._-]+", "-", text)
    assert hookcmd._slug(text) == re.sub(r"[^A-Za-z0-9]", "-", text)
    found = re.findall(uuid, text)
    assert hookcmd._last_uuid(text) == (found[-1] if found else None)
    assert hookcmd._is_uuid(text) == bool(re.fullmatch(uuid, text))
