"""`tracekeeper agents install --mcp` / `uninstall --mcp` on users' real-looking configs: each agent's
file gets our one entry in the shape its docs describe (mcp_setup.py cites them), and uninstall
gives back the file byte for byte. Run through the real CLI with a temporary HOME."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

import pytest

from tracekeeper import jsonc

from .harness import Env

# `claude mcp add --scope user` leaves ~/.claude.json as Claude Code writes it (JSON.stringify, 2 spaces),
# with its own state around mcpServers.
CLAUDE_JSON = """{
  "numStartups": 34,
  "theme": "dark",
  "projects": {
    "/home/me/src/app": {
      "allowedTools": [],
      "mcpServers": {}
    }
  },
  "mcpServers": {
    "github": {
      "type": "stdio",
      "command": "npx",
      "args": [
        "-y",
        "@modelcontextprotocol/server-github"
      ],
      "env": {
        "GITHUB_TOKEN": "${GITHUB_TOKEN}"
      }
    }
  },
  "userID": "5f2c"
}
"""
# A hand-written ~/.cursor/mcp.json (cursor.com/docs/mcp's examples): one-line entries stay one-line.
CURSOR_JSON = """{
  "mcpServers": {
    "playwright": { "command": "npx", "args": ["-y", "@playwright/mcp@latest"] },
    "context7": {
      "url": "https://mcp.context7.com/mcp",
      "headers": { "CONTEXT7_API_KEY": "${env:CONTEXT7_API_KEY}" }
    }
  }
}
"""
# Gemini CLI's settings.json with comments, which Gemini accepts (jsonc.py).
GEMINI_JSON = """{
  // how it looks
  "ui": { "theme": "GitHub" },
  /* servers I use */
  "mcpServers": {
    "github": {
      "command": "npx", // the runner
      "args": ["-y", "@modelcontextprotocol/server-github"]
    }
  },
  "general": { "vimMode": true } // keep
}
"""
CODEX_TOML = """# my Codex set-up
model = "gpt-5"

[mcp_servers.docs]
command = "docs-server"
args = ["--stdio"]  # keep this comment

[mcp_servers.docs.env]
DOCS_TOKEN = "x"

[profiles.fast]
model = "gpt-5-mini"
"""

FILES = {
    "claude": (".claude.json", CLAUDE_JSON),
    "cursor": (".cursor/mcp.json", CURSOR_JSON),
    "gemini": (".gemini/settings.json", GEMINI_JSON),
    "codex": (".codex/config.toml", CODEX_TOML),
}


def _read(agent: str, path: Path) -> dict[str, object]:
    text = path.read_text()
    if agent == "codex":
        return tomllib.loads(text)
    doc: dict[str, object] = jsonc.loads(text) if agent == "gemini" else json.loads(text)
    return doc


def _servers(agent: str, path: Path) -> dict[str, dict[str, object]]:
    doc = _read(agent, path)
    servers = doc["mcp_servers" if agent == "codex" else "mcpServers"]
    assert isinstance(servers, dict)
    return servers


@pytest.mark.parametrize("agent", list(FILES))
def test_install_adds_one_entry_and_uninstall_gives_the_file_back(env: Env, agent: str) -> None:
    name, original = FILES[agent]
    path = env.home / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(original)
    before = _servers(agent, path)

    out = env.cli("agents", "install", "--mcp", "--agent", agent).stdout
    assert f"{agent}: registered in {path}" in out and "backup:" in out
    servers = _servers(agent, path)
    ours = servers.pop("tracekeeper")
    assert servers == before  # the others untouched
    # `python -m tracekeeper` runs here: the script beside that python is named, by absolute path.
    assert ours["command"] == str(Path(sys.executable).parent / "tracekeeper")
    # Cursor fills in ${workspaceFolder}: the tools default to the open project.
    assert ours["args"] == (["mcp", "--root", "${workspaceFolder}"] if agent == "cursor" else ["mcp"])
    if agent == "claude":
        assert ours["type"] == "stdio" and ours["env"] == {}
        assert _read(agent, path)["userID"] == "5f2c"
    if agent == "codex":
        assert "HF_TOKEN" in ours["env_vars"] and "XDG_STATE_HOME" in ours["env_vars"]  # type: ignore[operator]
        assert path.read_text().startswith(original)  # appended after everything that was there
    if agent == "gemini":
        assert ours["env"] == {"HF_TOKEN": "$HF_TOKEN"}
        text = path.read_text()
        for comment in ("// how it looks", "/* servers I use */", "// the runner", "// keep"):
            assert comment in text
    if agent == "cursor":
        assert '"playwright": { "command": "npx", "args": ["-y", "@playwright/mcp@latest"] },' in path.read_text()
    installed = path.read_bytes()

    again = env.cli("agents", "install", "--mcp", "--agent", agent).stdout
    assert "already registered" in again and path.read_bytes() == installed

    out = env.cli("agents", "uninstall", "--mcp", "--agent", agent).stdout
    assert f"{agent}: removed from {path}" in out
    assert path.read_text() == original
    assert "not registered" in env.cli("agents", "uninstall", "--mcp", "--agent", agent).stdout
    assert path.read_text() == original


def test_a_file_we_created_is_removed_again(env: Env) -> None:
    (env.home / ".cursor").mkdir()
    path = env.home / ".cursor" / "mcp.json"
    assert "created" in env.cli("agents", "install", "--mcp", "--agent", "cursor").stdout
    assert list(_servers("cursor", path)) == ["tracekeeper"]
    out = env.cli("agents", "uninstall", "--mcp", "--agent", "cursor").stdout
    assert "held only tracekeeper's entry" in out and not path.exists()


def test_all_registers_with_the_agents_found_here(env: Env) -> None:
    """'all' means the agents on this machine: Gemini (its directory exists) and none of the others."""
    (env.home / ".gemini").mkdir()
    env.vars["PATH"] = str(Path(sys.executable).parent) + ":/usr/bin:/bin"  # no agent binaries
    proc = env.cli("agents", "install", "--mcp")
    assert "gemini: created" in proc.stdout
    assert "skipped: codex, claude, cursor" in proc.stdout
    assert not (env.home / ".claude.json").exists() and not (env.home / ".codex").exists()


def test_uninstall_leaves_an_entry_that_is_not_ours(env: Env) -> None:
    path = env.home / ".cursor" / "mcp.json"
    path.parent.mkdir()
    mine = '{\n  "mcpServers": {\n    "tracekeeper": { "command": "/opt/my-own-tool", "args": [] }\n  }\n}\n'
    path.write_text(mine)
    out = env.cli("agents", "uninstall", "--mcp", "--agent", "cursor").stdout
    assert "does not run `tracekeeper mcp`; left as it is" in out
    assert path.read_text() == mine


def test_config_tracekeeper_cannot_edit_is_refused_untouched(env: Env) -> None:
    """Codex servers as an inline table cannot take a [mcp_servers.tracekeeper] table: one line,
    exit 1, nothing written; a broken JSON file likewise."""
    toml = env.home / ".codex" / "config.toml"
    toml.parent.mkdir()
    inline = 'mcp_servers = { docs = { command = "docs-server" } }\n'
    toml.write_text(inline)
    proc = env.cli("agents", "install", "--mcp", "--agent", "codex", check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error: ") and "nothing written" in proc.stderr and "Traceback" not in proc.stderr
    assert toml.read_text() == inline and not list(toml.parent.glob("*backup*"))

    broken = env.home / ".claude.json"
    broken.write_text('{"mcpServers": {')
    proc = env.cli("agents", "install", "--mcp", "--agent", "claude", check=False)
    assert proc.returncode == 1 and "not valid JSON" in proc.stderr
    assert broken.read_text() == '{"mcpServers": {'


def test_claude_config_dir_moves_claude_json(env: Env) -> None:
    """With CLAUDE_CONFIG_DIR set, Claude Code keeps .claude.json in that directory."""
    config_dir = env.root / "claude-profile"
    config_dir.mkdir()
    env.vars["CLAUDE_CONFIG_DIR"] = str(config_dir)
    env.cli("agents", "install", "--mcp", "--agent", "claude")
    assert "tracekeeper" in _servers("claude", config_dir / ".claude.json")
    assert not (env.home / ".claude.json").exists()


def test_an_older_codex_entry_is_updated_in_place(env: Env) -> None:
    """tracekeeper moved to another virtualenv: its table is rewritten where it stands, the tables
    around it (and the blank line after it) stay as they were."""
    toml = env.home / ".codex" / "config.toml"
    toml.parent.mkdir()
    before = '[mcp_servers.docs]\ncommand = "docs-server"\n\n'
    after = '\n[profiles.fast]\nmodel = "gpt-5-mini"\n'
    toml.write_text(
        before + '[mcp_servers.tracekeeper]\ncommand = "/old/venv/bin/tracekeeper"\nargs = ["mcp"]\n' + after
    )
    out = env.cli("agents", "install", "--mcp", "--agent", "codex").stdout
    assert "registered in" in out
    text = toml.read_text()
    assert text.startswith(before + "[mcp_servers.tracekeeper]\n") and text.endswith(
        '"]\nstartup_timeout_sec = 30\n' + after
    )
    ours = tomllib.loads(text)["mcp_servers"]["tracekeeper"]
    assert ours["command"] == str(Path(sys.executable).parent / "tracekeeper")
    env.cli("agents", "uninstall", "--mcp", "--agent", "codex")
    assert toml.read_text() == before + after.lstrip("\n")


def test_the_agents_listing_says_where_the_mcp_server_is_registered(env: Env) -> None:
    """`tracekeeper agents` (and `--json`) says per agent whether its MCP config runs `tracekeeper
    mcp`: registered (by install), not registered, a `tracekeeper` entry that runs something else,
    a config it cannot read (one line why), or an agent it cannot register with."""
    env.cli("agents", "install", "--mcp", "--agent", "codex", "--agent", "cursor")
    (env.home / ".claude.json").write_text(
        '{"mcpServers": {"tracekeeper": {"type": "stdio", "command": "/opt/my-own-tool", "args": []}}}\n'
    )
    gemini = env.home / ".gemini" / "settings.json"
    gemini.parent.mkdir()
    gemini.write_text('{"mcpServers": [')
    listing = env.cli("agents").stdout
    mcp_lines = {
        agent: line.split("mcp", 1)[1].strip()
        for agent, line in zip(
            [line.split()[0] for line in listing.splitlines() if not line.startswith(" ")],
            [line for line in listing.splitlines() if line.strip().startswith("mcp ")],
            strict=True,
        )
    }
    codex_config = env.home / ".codex" / "config.toml"
    cursor_config = env.home / ".cursor" / "mcp.json"
    assert mcp_lines["codex"] == f"registered in {codex_config}", listing
    assert mcp_lines["cursor"] == f"registered in {cursor_config}", listing
    assert mcp_lines["claude"] == (
        f"not registered: the entry 'tracekeeper' in {env.home / '.claude.json'} does not run `tracekeeper mcp`"
    ), listing
    assert mcp_lines["gemini"].startswith(f"cannot tell: {gemini}: not valid JSON"), listing
    assert "nothing written" not in mcp_lines["gemini"], listing
    assert mcp_lines["copilot"] == "not supported for this agent yet", listing

    views = {view["agent"]: view["mcp"] for view in json.loads(env.cli("agents", "--json").stdout)}
    assert views["codex"] == {"config": str(codex_config), "registered": True, "other_entry": False, "error": None}
    assert views["claude"]["registered"] is False and views["claude"]["other_entry"] is True
    assert views["gemini"]["registered"] is None and "not valid JSON" in views["gemini"]["error"]
    assert views["copilot"] is None

    env.cli("agents", "uninstall", "--mcp", "--agent", "cursor")
    after = json.loads(env.cli("agents", "--json").stdout)
    (cursor,) = [view["mcp"] for view in after if view["agent"] == "cursor"]
    assert cursor == {"config": str(cursor_config), "registered": False, "other_entry": False, "error": None}
    assert "not registered (tracekeeper agents install --mcp --agent cursor)" in env.cli("agents").stdout
