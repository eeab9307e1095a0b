"""`tracekeeper agents [install|uninstall]` on copies of realistic user configs.

Each agent's config already holds other tools' hooks and unrelated settings. Install must add
only our handlers (parsed JSON minus ours == the original), keep key order and indentation, be
idempotent and back up what it changes; uninstall must give back the original document.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tracekeeper.agent_setup import AGENTS, BACKUP_SUFFIX, codex_hook_hash, is_ours, remove_ours
from tracekeeper.jsonc import strip_comments

from .harness import Env, make_env, make_repo

#: The real CLI (cli.main: the error table, lazy registration), with `agents` in front.
RUN = "import sys; from tracekeeper import cli; sys.exit(cli.main(['agents', *sys.argv[1:]]))"
EXE = str(Path(sys.executable).parent / "tracekeeper")


@pytest.fixture
def env() -> Iterator[Env]:
    for env in make_env():
        bin_dir = env.root / "bin"
        bin_dir.mkdir()
        env.vars["PATH"] = f"{bin_dir}:/usr/bin:/bin"
        yield env


def agents_cli(env: Env, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RUN, *args],
        capture_output=True,
        text=True,
        env={**env.vars, **(extra_env or {})},
        cwd=env.root,
        timeout=60,
        check=False,
    )


def fake_binary(env: Env, name: str) -> None:
    path = env.root / "bin" / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)


def backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}{BACKUP_SUFFIX}*"))


# --- realistic existing configs ------------------------------------------------------------------

CLAUDE_SETTINGS: dict[str, Any] = {
    "$schema": "https://json.schemastore.org/claude-code-settings.json",
    "model": "opus",
    "permissions": {"allow": ["Bash(npm run test:*)", "Read(~/.zshrc)"], "deny": ["Read(./.env)"]},
    "env": {"CLAUDE_CODE_ENABLE_TELEMETRY": "0"},
    "hooks": {
        "PreToolUse": [
            {"matcher": "Bash", "hooks": [{"type": "command", "command": "~/.claude/hooks/guard.sh", "timeout": 5}]}
        ],
        "SessionStart": [{"matcher": "startup", "hooks": [{"type": "command", "command": "cat ~/notes/ctx.md"}]}],
        "Stop": [{"hooks": [{"type": "command", "command": "afplay /System/Library/Sounds/Glass.aiff"}]}],
    },
    "statusLine": {"type": "command", "command": "~/.claude/statusline.sh"},
    "cleanupPeriodDays": 90,
}

CODEX_HOOKS: dict[str, Any] = {
    "hooks": {
        "PreToolUse": [
            {
                "matcher": "shell",
                "hooks": [{"type": "command", "command": "python3 ~/.codex/hooks/deny_rm.py", "timeout": 30}],
            }
        ],
        "Stop": [{"hooks": [{"type": "command", "command": "notify-send codex done", "statusMessage": "notifying"}]}],
    }
}

CODEX_CONFIG = """model = "gpt-5.5-codex"
approval_policy = "on-request"

[features]
hooks = true

[projects."/home/dev/src/app"]
trust_level = "trusted"
"""

GEMINI_SETTINGS: dict[str, Any] = {
    "general": {"vimMode": True, "preferredEditor": "vim"},
    "ui": {"theme": "GitHub"},
    "hooksConfig": {"enabled": True, "disabled": ["slow-lint"]},
    "hooks": {
        "BeforeTool": [
            {
                "matcher": "run_shell_command",
                "hooks": [
                    {
                        "name": "guard",
                        "type": "command",
                        "command": "$GEMINI_PROJECT_DIR/.gemini/hooks/guard.sh",
                        "timeout": 3000,
                    }
                ],
            }
        ],
        "SessionStart": [
            {"matcher": "startup", "hooks": [{"name": "greet", "type": "command", "command": "echo hi >/dev/null"}]}
        ],
    },
    "mcpServers": {"github": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-github"]}},
}

CURSOR_HOOKS: dict[str, Any] = {
    "version": 1,
    "hooks": {
        "afterFileEdit": [{"command": "./hooks/format.sh"}],
        "beforeShellExecution": [{"command": "~/.cursor/hooks/audit.sh", "matcher": "rm|curl"}],
        "stop": [{"command": "say done", "loop_limit": 3}],
    },
}

#: (agent, config path relative to HOME, existing document, indentation to write it with)
EXISTING: list[tuple[str, str, dict[str, Any], int | str]] = [
    ("claude", ".claude/settings.json", CLAUDE_SETTINGS, 2),
    ("codex", ".codex/hooks.json", CODEX_HOOKS, 2),
    ("gemini", ".gemini/settings.json", GEMINI_SETTINGS, 4),
    ("cursor", ".cursor/hooks.json", CURSOR_HOOKS, "\t"),
]


def write_config(path: Path, doc: dict[str, Any], indent: int | str = 2) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(doc, indent=indent) + "\n").encode()
    path.write_bytes(data)
    return data


def ours_removed(agent: str, doc: dict[str, Any]) -> dict[str, Any]:
    return remove_ours(AGENTS[agent], doc, Path("x"))


def our_commands(agent: str, doc: dict[str, Any]) -> dict[str, list[str]]:
    """Event -> commands of our handlers."""
    spec = AGENTS[agent]
    found: dict[str, list[str]] = {}
    for event, entries in doc.get("hooks", {}).items():
        for entry in entries:
            handlers = entry.get("hooks", []) if spec.layout == "grouped" else [entry]
            for handler in handlers:
                if is_ours(handler, spec.command_key):
                    found.setdefault(event, []).append(handler[spec.command_key])
    return found


# --- install / uninstall round trips --------------------------------------------------------------


@pytest.mark.parametrize(("agent", "rel", "original", "indent"), EXISTING, ids=[e[0] for e in EXISTING])
def test_install_keeps_everything_else_and_uninstall_restores(
    env: Env, agent: str, rel: str, original: dict[str, Any], indent: int | str
) -> None:
    path = env.home / rel
    before = write_config(path, original, indent)

    proc = agents_cli(env, "install", "--agent", agent)
    assert proc.returncode == 0, proc.stderr
    assert f"{agent}: updated {path}" in proc.stdout
    doc = json.loads(path.read_text())
    assert ours_removed(agent, doc) == original
    assert list(doc) == list(original)  # key order kept
    assert list(doc["hooks"])[: len(original["hooks"])] == list(original["hooks"])
    commands = our_commands(agent, doc)
    assert set(commands) == set(AGENTS[agent].events)
    for event, found in commands.items():
        assert found == [f"{shlex.quote(EXE)} hook {agent}"], event
    second_line = path.read_text().splitlines()[1]
    assert second_line.startswith("\t" if indent == "\t" else " " * int(indent) + '"')
    [saved] = backups(path)
    assert saved.read_bytes() == before

    after_install = path.read_bytes()
    again = agents_cli(env, "install", "--agent", agent)
    assert again.returncode == 0
    assert "already installed" in again.stdout and "no change" in again.stdout
    assert path.read_bytes() == after_install
    assert len(backups(path)) == 1

    gone = agents_cli(env, "uninstall", "--agent", agent)
    assert gone.returncode == 0, gone.stderr
    assert json.loads(path.read_text()) == original
    assert path.read_bytes() == before  # same style, so even the bytes match
    assert len(backups(path)) == 2

    nothing = agents_cli(env, "uninstall", "--agent", agent)
    assert "no tracekeeper hooks" in nothing.stdout
    assert path.read_bytes() == before


def test_gemini_handler_uses_milliseconds_and_a_name(env: Env) -> None:
    write_config(env.home / ".gemini" / "settings.json", GEMINI_SETTINGS)
    agents_cli(env, "install", "--agent", "gemini")
    doc = json.loads((env.home / ".gemini" / "settings.json").read_text())
    [group] = doc["hooks"]["BeforeAgent"]
    assert group["hooks"] == [
        {"name": "tracekeeper", "type": "command", "command": f"{shlex.quote(EXE)} hook gemini", "timeout": 5000}
    ]
    # Our SessionStart group is added next to the user's, not merged into it.
    assert doc["hooks"]["SessionStart"][0] == GEMINI_SETTINGS["hooks"]["SessionStart"][0]


def test_cursor_file_created_with_version_and_removed_on_uninstall(env: Env) -> None:
    (env.home / ".cursor").mkdir()
    proc = agents_cli(env, "install")
    assert proc.returncode == 0, proc.stderr
    path = env.home / ".cursor" / "hooks.json"
    doc = json.loads(path.read_text())
    assert doc["version"] == 1
    assert doc["hooks"]["beforeSubmitPrompt"] == [{"command": f"{shlex.quote(EXE)} hook cursor", "timeout": 10}]
    assert backups(path) == []
    agents_cli(env, "uninstall")
    assert not path.exists()  # we created it, nothing else was in it


def test_cursor_headless_session_start_and_end_are_hooked_and_recorded(env: Env) -> None:
    """Headless `agent -p` fires only sessionStart and sessionEnd (../shared/docs/agents.md, Cursor):
    both must be installed, and the installed command must record the end. The payloads are what
    Cursor sends for these events (common fields plus session_id / reason, duration_ms,
    final_status); each command runs as Cursor runs it, through a shell, JSON on stdin."""
    (env.home / ".cursor").mkdir()
    assert agents_cli(env, "install", "--agent", "cursor").returncode == 0
    doc = json.loads((env.home / ".cursor" / "hooks.json").read_text())
    assert {"sessionStart", "sessionEnd"} <= set(our_commands("cursor", doc))
    repo = make_repo(env)
    conversation = "5e1f0c9a-7d3b-4c2e-9f10-2a6b8c4d0e11"
    common = {
        "conversation_id": conversation,
        "generation_id": "",
        "model": "auto",
        "cursor_version": "2026.11.20",
        "workspace_roots": [str(repo.path)],
        "user_email": "dev@example.com",
        "transcript_path": None,
    }
    payloads = {
        "sessionStart": {**common, "hook_event_name": "sessionStart", "session_id": conversation},
        "sessionEnd": {
            **common,
            "hook_event_name": "sessionEnd",
            "reason": "completed",
            "duration_ms": 48210,
            "final_status": "completed",
        },
    }
    for event, payload in payloads.items():
        [handler] = doc["hooks"][event]
        proc = subprocess.run(
            handler["command"],
            shell=True,
            input=json.dumps(payload),
            capture_output=True,
            text=True,
            env=env.vars,
            cwd=repo.path,
            timeout=60,
            check=False,
        )
        assert (proc.returncode, proc.stdout) == (0, "{}\n"), proc.stderr
    active = json.loads((repo.git_dir / "hf-traces-active.json").read_text())
    [entry] = active["sessions"]
    assert (entry["agent"], entry["session_id"]) == ("cursor", conversation)
    assert entry["hook_event_name"] == "sessionEnd"
    assert entry["ended_at"] == entry["seen_at"]
    assert entry["final_status"] == "completed"


def test_copilot_gets_its_own_file_with_event_arguments(env: Env) -> None:
    hooks_dir = env.home / ".copilot" / "hooks"
    hooks_dir.mkdir(parents=True)
    other = hooks_dir / "team.json"
    other_bytes = write_config(other, {"version": 1, "hooks": {"preToolUse": [{"type": "command", "bash": "x"}]}})
    proc = agents_cli(env, "install")
    assert proc.returncode == 0, proc.stderr
    ours = hooks_dir / "tracekeeper.json"
    doc = json.loads(ours.read_text())
    assert doc["version"] == 1
    assert doc["hooks"]["sessionEnd"] == [
        {"type": "command", "bash": f"{shlex.quote(EXE)} hook copilot sessionEnd", "timeoutSec": 10}
    ]
    assert set(doc["hooks"]) == {"sessionStart", "userPromptSubmitted", "agentStop", "sessionEnd"}
    assert other.read_bytes() == other_bytes
    agents_cli(env, "uninstall")
    assert not ours.exists()
    assert other.read_bytes() == other_bytes


def test_claude_settings_created_when_absent_and_removed_again(env: Env) -> None:
    fake_binary(env, "claude")
    proc = agents_cli(env, "install")
    assert proc.returncode == 0, proc.stderr
    path = env.home / ".claude" / "settings.json"
    assert f"claude: created {path}" in proc.stdout
    assert "restart" in proc.stdout
    agents_cli(env, "uninstall")
    assert not path.exists()


def test_install_all_only_touches_agents_that_are_present(env: Env) -> None:
    (env.home / ".codex").mkdir()
    fake_binary(env, "gemini")
    proc = agents_cli(env, "install")
    assert proc.returncode == 0, proc.stderr
    assert (env.home / ".codex" / "hooks.json").exists()
    assert (env.home / ".gemini" / "settings.json").exists()
    for absent in (".claude", ".cursor", ".copilot"):
        assert not (env.home / absent).exists()


def test_nothing_present_says_so(env: Env) -> None:
    proc = agents_cli(env, "install")
    assert proc.returncode == 0
    assert "no coding agent found" in proc.stdout
    assert list(env.home.iterdir()) == [env.home / ".gitconfig"]


def test_explicit_agent_installs_even_if_not_detected(env: Env) -> None:
    proc = agents_cli(env, "install", "--agent", "codex")
    assert proc.returncode == 0, proc.stderr
    assert "was not found on this machine" in proc.stdout
    assert (env.home / ".codex" / "hooks.json").exists()


# --- relocations, trust, listing -------------------------------------------------------------------


def test_codex_home_and_claude_config_dir_are_honoured(env: Env) -> None:
    codex_home = env.root / "codex-home"
    claude_dir = env.root / "claude-config"
    write_config(codex_home / "hooks.json", CODEX_HOOKS)
    write_config(claude_dir / "settings.json", CLAUDE_SETTINGS)
    extra = {"CODEX_HOME": str(codex_home), "CLAUDE_CONFIG_DIR": str(claude_dir)}
    proc = agents_cli(env, "install", extra_env=extra)
    assert proc.returncode == 0, proc.stderr
    assert our_commands("codex", json.loads((codex_home / "hooks.json").read_text()))
    assert our_commands("claude", json.loads((claude_dir / "settings.json").read_text()))
    assert not (env.home / ".codex").exists()
    assert not (env.home / ".claude").exists()
    listing = agents_cli(env, extra_env=extra)
    assert str(codex_home / "hooks.json") in listing.stdout


def codex_hash(event_snake: str, command: str, timeout: int) -> str:
    """What Codex stores as `trusted_hash` for a command hook with no matcher, written out from
    the recipe in openai/codex codex-rs/hooks/src/engine/discovery.rs (independently of
    agent_setup): sha256 of the compact, key-sorted JSON of the normalized identity."""
    identity = {
        "event_name": event_snake,
        "hooks": [{"async": False, "command": command, "timeout": timeout, "type": "command"}],
    }
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def test_gemini_cli_home_is_honoured(env: Env) -> None:
    """Gemini CLI keeps its user settings in $GEMINI_CLI_HOME/.gemini/settings.json when that is
    set (google-gemini/gemini-cli packages/core/src/utils/paths.ts homedir(), config/storage.ts)."""
    gemini_home = env.root / "gemini-home"
    settings = gemini_home / ".gemini" / "settings.json"
    write_config(settings, GEMINI_SETTINGS)
    extra = {"GEMINI_CLI_HOME": str(gemini_home)}
    proc = agents_cli(env, "install", extra_env=extra)
    assert proc.returncode == 0, proc.stderr
    assert f"gemini: updated {settings}" in proc.stdout
    assert set(our_commands("gemini", json.loads(settings.read_text()))) == set(AGENTS["gemini"].events)
    assert not (env.home / ".gemini").exists()
    [state] = [a for a in json.loads(agents_cli(env, "--json", extra_env=extra).stdout) if a["agent"] == "gemini"]
    assert state["config"] == str(settings) and state["present"] is True and state["complete"] is True
    assert agents_cli(env, "uninstall", extra_env=extra).returncode == 0
    assert json.loads(settings.read_text()) == GEMINI_SETTINGS


#: A settings.json as people write it for Gemini CLI, which strips comments before parsing.
GEMINI_JSONC = """{
    // Editor and UI
    "general": {"vimMode": true, "preferredEditor": "vim"}, // vim everywhere
    "ui": {"theme": "GitHub"},
    /* Hooks: "guard" blocks rm -rf.
       Keep it first. */
    "hooks": {
        "BeforeTool": [
            {
                "matcher": "run_shell_command", // only the shell
                "hooks": [{"name": "guard", "type": "command", "command": "echo '// not a comment' /* nor this */"}]
            }
        ]
    },
    "mcpServers": {"github": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-github"]}} // the last
}
"""


def test_gemini_settings_with_comments_are_accepted_and_keep_their_comments(env: Env) -> None:
    path = env.home / ".gemini" / "settings.json"
    path.parent.mkdir(parents=True)
    path.write_text(GEMINI_JSONC)
    original = {
        "general": {"vimMode": True, "preferredEditor": "vim"},
        "ui": {"theme": "GitHub"},
        "hooks": {
            "BeforeTool": [
                {
                    "matcher": "run_shell_command",
                    "hooks": [
                        {"name": "guard", "type": "command", "command": "echo '// not a comment' /* nor this */"}
                    ],
                }
            ]
        },
        "mcpServers": {"github": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-github"]}},
    }
    proc = agents_cli(env, "install", "--agent", "gemini")
    assert proc.returncode == 0, proc.stderr
    assert f"gemini: updated {path}" in proc.stdout and "comments kept" in proc.stdout
    text = path.read_text()
    for comment in (
        "// Editor and UI",
        "// vim everywhere",
        '/* Hooks: "guard" blocks rm -rf.\n       Keep it first. */',
        "// only the shell",
        "// the last",
    ):
        assert comment in text
    doc = json.loads(strip_comments(text))
    assert ours_removed("gemini", doc) == original
    assert set(our_commands("gemini", doc)) == set(AGENTS["gemini"].events)
    [saved] = backups(path)
    assert saved.read_text() == GEMINI_JSONC
    assert "already installed" in agents_cli(env, "install", "--agent", "gemini").stdout

    gone = agents_cli(env, "uninstall", "--agent", "gemini")
    assert gone.returncode == 0, gone.stderr
    assert path.read_text() == GEMINI_JSONC  # every comment back where it was

    # Gemini's JSON.parse takes comments but nothing else: a trailing comma is still refused.
    path.write_text('{\n  "ui": {"theme": "GitHub"}, // c\n}\n')
    refused = agents_cli(env, "install", "--agent", "gemini")
    assert refused.returncode == 1 and "not valid JSON" in refused.stderr


def test_comments_are_stripped_as_strip_json_comments_does() -> None:
    """Outside strings only (an escaped quote does not end one), replaced by blanks of the same
    length so offsets hold, newlines kept; an unterminated block comment leaves invalid JSON."""
    text = '{"a": "x\\"//y /*z*/", /* c\n d */ "b": [1, // one\n 2]} // end'
    plain = strip_comments(text)
    assert len(plain) == len(text) and plain.count("\n") == text.count("\n")
    assert json.loads(plain) == {"a": 'x"//y /*z*/', "b": [1, 2]}
    with pytest.raises(json.JSONDecodeError):
        json.loads(strip_comments('{"a": 1 /* never closed }'))


#: strip-json-comments v3.1.1's own test.js cases (the version gemini-cli pins in
#: packages/cli/package.json), with its default `whitespace: true`.
STRIP_JSON_COMMENTS_CASES = [
    ('//comment\n{"a":"b"}', '         \n{"a":"b"}'),
    ('/*//comment*/{"a":"b"}', '             {"a":"b"}'),
    ('{"a":"b"//comment\n}', '{"a":"b"         \n}'),
    ('{"a":"b"/*comment*/}', '{"a":"b"           }'),
    ('{"a"/*\n\n\ncomment\r\n*/:"b"}', '{"a"  \n\n\n       \r\n  :"b"}'),
    ('/*!\n * comment\n */\n{"a":"b"}', '   \n          \n   \n{"a":"b"}'),
    ('{/*comment*/"a":"b"}', '{           "a":"b"}'),
    ('{"a":"b//c"}', '{"a":"b//c"}'),
    ('{"a":"b/*c*/"}', '{"a":"b/*c*/"}'),
    ('{"/*a":"b"}', '{"/*a":"b"}'),
    ('{"\\"/*a":"b"}', '{"\\"/*a":"b"}'),
    ('{"\\\\":"https://foobar.com"}', '{"\\\\":"https://foobar.com"}'),
    ('{"foo\\"":"https://foobar.com"}', '{"foo\\"":"https://foobar.com"}'),
    ('{"a":"b"\r\n}', '{"a":"b"\r\n}'),
    ('{"a":"b"//c\n}', '{"a":"b"   \n}'),
    ('{"a":"b"//c\r\n}', '{"a":"b"   \r\n}'),
    ('{"a":"b"/*c*/\r\n}', '{"a":"b"     \r\n}'),
    ('{"a":"b",/*c\r\nc2*/"x":"y"\r\n}', '{"a":"b",   \r\n    "x":"y"\r\n}'),
    ('{\r\n\t"a":"b"\r\n} //EOF', '{\r\n\t"a":"b"\r\n}      '),
    ('{"a":1}//\tx\t\n', '{"a":1}  \t \t\n'),  # blanks are spaces, but tabs (and CR, LF) stay
]


@pytest.mark.parametrize(("text", "expected"), STRIP_JSON_COMMENTS_CASES)
def test_strip_comments_matches_strip_json_comments_byte_for_byte(text: str, expected: str) -> None:
    assert strip_comments(text) == expected


def test_gemini_comments_that_cannot_be_kept_are_said_and_backed_up(env: Env) -> None:
    path = env.home / ".gemini" / "settings.json"
    path.parent.mkdir(parents=True)
    before = '{\n  "ui": {"theme": "GitHub"},\n  "hooks": { /* none yet */ }\n}\n'
    path.write_text(before)
    proc = agents_cli(env, "install", "--agent", "gemini")
    assert proc.returncode == 0, proc.stderr
    [saved] = backups(path)
    assert saved.read_text() == before
    assert f"comments in {path} could not all be kept; the original is in {saved}" in proc.stdout
    assert "/* none yet */" not in path.read_text()
    assert set(our_commands("gemini", json.loads(path.read_text()))) == set(AGENTS["gemini"].events)


def test_codex_hook_hash_is_the_one_codex_writes() -> None:
    """A trusted_hash that Codex itself wrote into a user's config.toml for the Stop hook of
    warpdotdev/codex-warp (plugins/warp/hooks/hooks.json at f11334dc: no matcher, no timeout)."""
    handler = {"type": "command", "command": "${PLUGIN_ROOT}/scripts/on-stop.sh"}
    written_by_codex = "sha256:6a3b3af655efa426e920425de93a830fe25b8b5a62ef7b9a699e7ff40d9ef351"
    assert codex_hook_hash("Stop", {"hooks": [handler]}, handler) == written_by_codex
    assert codex_hash("stop", handler["command"], 600) == written_by_codex
    # SessionStart keeps its matcher in the identity; UserPromptSubmit and Stop ignore theirs.
    with_matcher = {"matcher": "startup", "hooks": [handler]}
    assert codex_hook_hash("Stop", with_matcher, handler) == written_by_codex
    assert codex_hook_hash("SessionStart", with_matcher, handler) != codex_hook_hash(
        "SessionStart", {"hooks": [handler]}, handler
    )
    assert codex_hook_hash("Stop", {"hooks": [{"type": "prompt"}]}, {"type": "prompt"}) is None


def test_codex_install_explains_trust_and_listing_says_what_codex_will_do(env: Env) -> None:
    codex = env.home / ".codex"
    write_config(codex / "hooks.json", CODEX_HOOKS)
    (codex / "config.toml").write_text(CODEX_CONFIG)
    proc = agents_cli(env, "install", "--agent", "codex")
    assert proc.returncode == 0, proc.stderr
    assert "openai/codex#20321" in proc.stdout
    assert "/hooks" in proc.stdout
    assert "codex exec" in proc.stdout
    assert (codex / "config.toml").read_text() == CODEX_CONFIG  # trust is the user's to give

    listing = agents_cli(env)
    assert "Codex skips SessionStart, UserPromptSubmit, Stop (not trusted yet)" in listing.stdout

    path = codex / "hooks.json"
    doc = json.loads(path.read_text())
    command = f"{shlex.quote(EXE)} hook codex"
    slots = {}
    for event, snake in (
        ("SessionStart", "session_start"),
        ("UserPromptSubmit", "user_prompt_submit"),
        ("Stop", "stop"),
    ):
        group = next(i for i, g in enumerate(doc["hooks"][event]) if any(is_ours(h) for h in g["hooks"]))
        slots[event] = (f"{path}:{snake}:{group}:0", snake)

    def trust(hashes: dict[str, str], extra: str = "") -> dict[str, Any]:
        lines = [CODEX_CONFIG]
        for event, (key, _) in slots.items():
            lines.append(f'[hooks.state."{key}"]\ntrusted_hash = "{hashes[event]}"\n')
        (codex / "config.toml").write_text("\n".join(lines) + extra)
        [state] = [a for a in json.loads(agents_cli(env, "--json").stdout) if a["agent"] == "codex"]
        return state

    # A hash is stored for each slot, but for another definition (e.g. tracekeeper moved to
    # another virtualenv since): Codex reports the hooks as modified and does not run them.
    stale = trust(
        {event: codex_hash(snake, "/old/venv/bin/tracekeeper hook codex", 10) for event, (_, snake) in slots.items()}
    )
    assert stale["codex_trusted"] == {"SessionStart": False, "UserPromptSubmit": False, "Stop": False}
    assert set(stale["codex_trust"].values()) == {"modified"}
    assert "(changed since it was trusted)" in agents_cli(env).stdout
    assert "openai/codex#20321" in agents_cli(env, "install", "--agent", "codex").stdout

    # The hash of the definition as it is now: Codex runs them.
    current = {event: codex_hash(snake, command, 10) for event, (_, snake) in slots.items()}
    state = trust(current)
    assert state["codex_trusted"] == {"SessionStart": True, "UserPromptSubmit": True, "Stop": True}
    assert set(state["codex_trust"].values()) == {"trusted"}
    assert "Codex trust: trusted, Codex runs them" in agents_cli(env).stdout
    again = agents_cli(env, "install", "--agent", "codex")
    assert "openai/codex#20321" not in again.stdout

    # Trusted but switched off in /hooks (`enabled = false`): Codex does not run it either.
    key = slots["Stop"][0]
    state = trust(current, f'\n[hooks.state."{key}-unrelated"]\nenabled = false\n')
    assert state["codex_trust"]["Stop"] == "trusted"
    text = (
        (codex / "config.toml")
        .read_text()
        .replace(f'[hooks.state."{key}"]\n', f'[hooks.state."{key}"]\nenabled = false\n')
    )
    (codex / "config.toml").write_text(text)
    [state] = [a for a in json.loads(agents_cli(env, "--json").stdout) if a["agent"] == "codex"]
    assert state["codex_trust"] == {"SessionStart": "trusted", "UserPromptSubmit": "trusted", "Stop": "disabled"}
    assert "Codex skips Stop (disabled in /hooks)" in agents_cli(env).stdout


def test_codex_hooks_disabled_in_config_is_reported(env: Env) -> None:
    codex = env.home / ".codex"
    codex.mkdir()
    (codex / "config.toml").write_text("[features]\nhooks = false\n")
    proc = agents_cli(env, "install", "--agent", "codex")
    assert "hooks are disabled" in proc.stdout


def test_listing_shows_presence_and_state(env: Env) -> None:
    fake_binary(env, "codex")
    (env.home / ".claude").mkdir()
    write_config(env.home / ".gemini" / "settings.json", {"hooksConfig": {"enabled": False}})
    agents_cli(env, "install", "--agent", "claude")
    proc = agents_cli(env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"codex at {env.root / 'bin' / 'codex'}" in out
    assert f"{env.home / '.claude'} exists" in out
    assert "hooksConfig.enabled = false" in out
    data = {a["agent"]: a for a in json.loads(agents_cli(env, "--json").stdout)}
    assert data["claude"]["complete"] is True
    assert data["codex"]["present"] is True and data["codex"]["hooks"] == []
    assert data["cursor"]["present"] is False


# --- what must not be touched ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agent", "rel"),
    [("claude", ".claude/settings.json"), ("cursor", ".cursor/hooks.json"), ("codex", ".codex/hooks.json")],
)
def test_invalid_json_is_refused_with_one_line(env: Env, agent: str, rel: str) -> None:
    path = env.home / rel
    path.parent.mkdir(parents=True)
    broken = b'{\n  "hooks": {\n    "Stop": [\n  }\n'
    path.write_bytes(broken)
    proc = agents_cli(env, "install", "--agent", agent)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(path) in lines[0] and "not valid JSON" in lines[0]
    assert "Traceback" not in proc.stderr
    assert path.read_bytes() == broken
    assert backups(path) == []
    proc = agents_cli(env, "uninstall", "--agent", agent)
    assert proc.returncode == 1
    assert path.read_bytes() == broken


def test_wrong_shape_is_refused(env: Env) -> None:
    path = env.home / ".claude" / "settings.json"
    before = write_config(path, {"hooks": ["not", "an", "object"]})
    proc = agents_cli(env, "install", "--agent", "claude")
    assert proc.returncode == 1
    assert "'hooks' is a list" in proc.stderr
    assert path.read_bytes() == before


def test_other_agents_still_installed_when_one_config_is_broken(env: Env) -> None:
    bad = env.home / ".claude" / "settings.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{oops")
    (env.home / ".codex").mkdir()
    proc = agents_cli(env, "install")
    assert proc.returncode == 1
    assert (env.home / ".codex" / "hooks.json").exists()
    assert bad.read_text() == "{oops"


def test_moved_executable_is_updated_in_place_and_duplicates_dropped(env: Env) -> None:
    path = env.home / ".claude" / "settings.json"
    doc = json.loads(json.dumps(CLAUDE_SETTINGS))
    old = {"type": "command", "command": "/old/venv/bin/tracekeeper hook claude", "timeout": 10}
    doc["hooks"]["Stop"].append({"hooks": [dict(old)]})
    doc["hooks"]["Stop"].append({"hooks": [dict(old)]})  # a hand-made duplicate
    doc["hooks"]["Stop"][0]["hooks"].append(dict(old))  # and one inside the user's group
    write_config(path, doc)
    proc = agents_cli(env, "install", "--agent", "claude")
    assert proc.returncode == 0, proc.stderr
    new = json.loads(path.read_text())
    assert our_commands("claude", new)["Stop"] == [f"{shlex.quote(EXE)} hook claude"]
    assert ours_removed("claude", new) == CLAUDE_SETTINGS


def test_uninstall_removes_only_ours_from_a_shared_group(env: Env) -> None:
    path = env.home / ".claude" / "settings.json"
    doc = json.loads(json.dumps(CLAUDE_SETTINGS))
    doc["hooks"]["Stop"][0]["hooks"].append({"type": "command", "command": "'/opt/tk bin/tracekeeper' hook claude"})
    write_config(path, doc)
    agents_cli(env, "uninstall", "--agent", "claude")
    assert json.loads(path.read_text()) == CLAUDE_SETTINGS


def test_symlinked_config_is_written_through(env: Env) -> None:
    dotfiles = env.root / "dotfiles" / "claude-settings.json"
    write_config(dotfiles, CLAUDE_SETTINGS)
    link = env.home / ".claude" / "settings.json"
    link.parent.mkdir(parents=True)
    link.symlink_to(dotfiles)
    proc = agents_cli(env, "install", "--agent", "claude")
    assert proc.returncode == 0, proc.stderr
    assert link.is_symlink()
    assert our_commands("claude", json.loads(dotfiles.read_text()))


def test_compact_single_line_file_stays_single_line(env: Env) -> None:
    path = env.home / ".cursor" / "hooks.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"version":1,"hooks":{"stop":[{"command":"say done"}]}}')
    agents_cli(env, "install", "--agent", "cursor")
    text = path.read_text()
    assert "\n" not in text
    assert text.startswith('{"version":1,"hooks":{"stop":[{"command":"say done"},')
    agents_cli(env, "uninstall", "--agent", "cursor")
    assert path.read_text() == '{"version":1,"hooks":{"stop":[{"command":"say done"}]}}'


def test_one_agents_broken_config_is_one_error_line_and_the_others_are_still_done(env: Env) -> None:
    """Each agent's failure is said through the one error table (control characters spelled
    out), the next agents are still installed or uninstalled, and the exit status is 1."""
    broken = env.home / ".gemini" / "settings.json"
    broken.parent.mkdir(parents=True)
    broken.write_text("[1]")
    for verb in ("install", "uninstall"):
        proc = agents_cli(env, verb, "--agent", "gemini", "--agent", "claude")
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr == f"Error: {broken}: expected a JSON object, found a list; nothing written\n"
        assert "claude: " in proc.stdout
    assert broken.read_text() == "[1]"


#: What a terminal would act on (C0 but newline, DEL, C1, bidi controls): none may reach it raw.
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
#: A directory name a config path can pass through: OSC 0 (window title), CSI 2J, a bidi override.
HOSTILE = "cfg\x1b]0;owned\x07\x1b[2J\u202e"


def test_hostile_text_in_config_paths_and_errors_is_spelled_out(env: Env) -> None:
    """Config files and their locations are outside text (a symlinked dotfile's target, an
    env-given config dir): the listing, install's notes and the errors spell their control
    characters out (safetext.visible) rather than let the terminal act on them."""
    claude_dir = env.root / HOSTILE
    claude_dir.mkdir()
    (claude_dir / "settings.json").write_text('{"hooks": {"Stop": [\x1b[31m')
    dotfiles = env.root / f"dot{HOSTILE}"
    write_config(dotfiles / "hooks.json", CODEX_HOOKS)
    (env.home / ".codex").mkdir()
    (env.home / ".codex" / "hooks.json").symlink_to(dotfiles / "hooks.json")
    extra = {"CLAUDE_CONFIG_DIR": str(claude_dir)}
    spelled = "cfg\\x1b]0;owned\\x07\\x1b[2J\\u202e"

    listing = agents_cli(env, extra_env=extra)
    assert listing.returncode == 0, listing.stderr
    assert not RAW_CONTROL.search(listing.stdout + listing.stderr), listing.stdout
    cannot = [line for line in listing.stdout.splitlines() if "cannot tell" in line]
    assert len(cannot) == 1 and spelled in cannot[0] and "not valid JSON" in cannot[0]

    proc = agents_cli(env, "install", "--agent", "codex", "--agent", "claude", extra_env=extra)
    assert proc.returncode == 1
    assert not RAW_CONTROL.search(proc.stdout + proc.stderr), proc.stdout + proc.stderr
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("Error: ") and spelled in errors[0]
    assert "Traceback" not in proc.stderr
    backup_line = next(line for line in proc.stdout.splitlines() if line.startswith("codex: updated"))
    assert f"dot{spelled}" in backup_line  # the backup sits next to the symlink's target

    mcp = agents_cli(env, "install", "--mcp", "--agent", "claude", extra_env=extra)
    assert mcp.returncode == 0, mcp.stderr
    assert not RAW_CONTROL.search(mcp.stdout + mcp.stderr), mcp.stdout
    assert spelled in mcp.stdout
