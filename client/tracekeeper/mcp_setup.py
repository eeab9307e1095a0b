"""Register `tracekeeper mcp` with coding agents: every agent's MCP config fact, in one place.

Each agent keeps its user-level MCP servers in its own file and dialect. Those files are the
user's (other servers, and for Claude Code its whole state), so an install adds only our one entry,
named `tracekeeper`, and changes no other byte; uninstall removes exactly that entry (and the
`mcpServers` container if it held nothing else), and leaves an entry named `tracekeeper` that does
not run `tracekeeper mcp` alone. A file that changes is backed up first, like the hook configs
(agent_setup.py); a file that does not parse is refused, never "repaired".

Where and how, per agent (checked against each agent's docs or source):
- Claude Code: user scope is `mcpServers` at the top of `~/.claude.json` (`$CLAUDE_CONFIG_DIR/.claude.json`
  when that is set), entries `{"type": "stdio", "command", "args", "env"}`, as `claude mcp add
  --scope user` writes them (code.claude.com/docs/en/mcp, "MCP installation scopes"; the
  CLAUDE_CONFIG_DIR location as verified in yarikleto/claude-profile#15). Claude Code rewrites
  this file itself while it runs: register while no session is open, or restart sessions after.
- Codex: `[mcp_servers.<name>]` in `$CODEX_HOME/config.toml` (default `~/.codex`), keys `command`,
  `args`, `env`, `env_vars`, `startup_timeout_sec` (openai/codex codex-rs/config/src/mcp_types.rs
  RawMcpServerConfig).
  Codex starts a stdio server with only HOME, PATH, USER, LANG, TMPDIR, ... of its environment
  (codex-rs/rmcp-client/src/utils.rs DEFAULT_ENV_VARS, create_env_for_mcp_server): `env_vars`
  names the variables tracekeeper reads (token, XDG and tracekeeper directories) so they pass.
- Gemini CLI: `mcpServers` in `~/.gemini/settings.json` (`$GEMINI_CLI_HOME/.gemini`), entries
  `{"command", "args", "env"}` (google-gemini/gemini-cli docs/tools/mcp-server.md). Gemini removes
  variables whose names match *TOKEN*, *KEY*, ... from a server's environment unless the entry's
  `env` names them (packages/core/src/tools/mcp-client.ts, services/environmentSanitization.ts),
  so `HF_TOKEN` is passed as `"$HF_TOKEN"`, which Gemini expands (empty when unset, which
  huggingface_hub treats as no token). The file may hold comments: it is edited in place (jsonc.py).
- Cursor: `mcpServers` in `~/.cursor/mcp.json` (`$CURSOR_CONFIG_DIR`), entries `{"command",
  "args", "env"}`, with `${workspaceFolder}` filled in (cursor.com/docs/mcp).

JSON files are edited in place (jsonc.edit), so the user's formatting outside our entry stays as
it was; Codex's TOML is edited as text (our table appended, or cut out) and the result is parsed
again and compared with what was meant before anything is written.

The agents' directories, the backup naming and the atomic replace are configfiles.py's, shared with
agent_setup.py (one piece of code for hook and MCP configs alike); the directory variables are the
ones tracekeeperd/agents/roots.py reads.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import jsonc
from .configfiles import env_dir, gemini_home, has_backup, replace_text
from .errors import ClientError

#: The name of our entry in every agent's config.
NAME = "tracekeeper"
#: What `tracekeeper mcp` reads from its environment, for agents that pass a server only what it
#: names: the Hub token and endpoint, huggingface_hub's home (a saved token), the XDG directories
#: (config, queue, local store) and tracekeeper's own overrides.
FORWARDED_ENV = (
    "HF_TOKEN",
    "HF_HOME",
    "HF_ENDPOINT",
    "HF_TRACE_BUCKET",
    "XDG_CONFIG_HOME",
    "XDG_STATE_HOME",
    "XDG_DATA_HOME",
    "XDG_RUNTIME_DIR",
    "TRACEKEEPER_STORE",
    "TRACEKEEPER_STATE_DIR",
    "TRACEKEEPER_RUNTIME_DIR",
)
_OURS = re.compile(r"tracekeeper['\"]?(\s+\S+)*?\s+mcp(\s|$)")


def command_line(exe: str) -> tuple[str, list[str]]:
    """`tracekeeper mcp` as (command, args): `exe` may be `python -m tracekeeper` (hook_executable)."""
    parts = shlex.split(exe)
    return parts[0], [*parts[1:], "mcp"]


def is_ours(entry: Any) -> bool:
    """An entry that runs `tracekeeper mcp` (the only kind uninstall removes)."""
    if not isinstance(entry, dict):
        return False
    command, args = entry.get("command"), entry.get("args", [])
    if not isinstance(command, str) or not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        return False
    return _OURS.search(" ".join([command, *args])) is not None


class ConfigError(ClientError):
    """A config file we must not touch (unreadable, not parseable, unexpected shape)."""


@dataclass(frozen=True)
class McpAgent:
    name: str
    label: str
    config: Callable[[], Path]
    entry: Callable[[str], dict[str, Any]]
    toml: bool = False


def _claude_config() -> Path:
    return env_dir("CLAUDE_CONFIG_DIR", "") / ".claude.json"


def _gemini_settings() -> Path:
    return gemini_home() / "settings.json"


def _claude_entry(exe: str) -> dict[str, Any]:
    command, args = command_line(exe)
    return {"type": "stdio", "command": command, "args": args, "env": {}}


def _codex_entry(exe: str) -> dict[str, Any]:
    command, args = command_line(exe)
    # Importing the SDK takes a few seconds on a busy machine; Codex's default start-up wait is 10 s.
    return {"command": command, "args": args, "env_vars": list(FORWARDED_ENV), "startup_timeout_sec": 30}


def _gemini_entry(exe: str) -> dict[str, Any]:
    command, args = command_line(exe)
    return {"command": command, "args": args, "env": {"HF_TOKEN": "$HF_TOKEN"}}


def _cursor_entry(exe: str) -> dict[str, Any]:
    # Cursor fills ${workspaceFolder} in args (cursor.com/docs/mcp, "Config interpolation"): the
    # tools default to the open project whatever directory Cursor starts the server in.
    command, args = command_line(exe)
    return {"command": command, "args": [*args, "--root", "${workspaceFolder}"]}


TARGETS: dict[str, McpAgent] = {
    "claude": McpAgent("claude", "Claude Code", _claude_config, _claude_entry),
    "codex": McpAgent(
        "codex", "OpenAI Codex CLI", lambda: env_dir("CODEX_HOME", ".codex") / "config.toml", _codex_entry, toml=True
    ),
    "gemini": McpAgent("gemini", "Gemini CLI", _gemini_settings, _gemini_entry),
    "cursor": McpAgent("cursor", "Cursor", lambda: env_dir("CURSOR_CONFIG_DIR", ".cursor") / "mcp.json", _cursor_entry),
}


# --- files: read, back up, replace -----------------------------------------------------------------


def _read(path: Path) -> tuple[Path, str | None]:
    """The real file (a symlinked dotfile is written through) and its text; None if missing."""
    real = Path(os.path.realpath(path))
    try:
        return real, real.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return real, None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{path}: cannot read it ({getattr(exc, 'strerror', None) or exc}); nothing written"
        ) from None


def _write_text(path: Path, text: str, existed: bool) -> Path | None:
    return replace_text(path, text, existed, new_mode=0o600)  # these files may hold tokens


def _nothing_to_remove(servers: Any, path: Path, entry: str) -> str | None:
    """Why uninstall leaves the file alone (no entry of ours, or one named ours that runs something
    else), or None when our entry is there to remove."""
    if not isinstance(servers, dict) or NAME not in servers:
        return f"not registered in {path}"
    if not is_ours(servers[NAME]):
        return f"{entry} in {path} does not run `tracekeeper mcp`; left as it is"
    return None


def _without_ours(doc: dict[str, Any], container: str) -> dict[str, Any]:
    """`doc` without our entry, and without the servers table if it held only ours."""
    new = copy.deepcopy(doc)
    del new[container][NAME]
    if not new[container]:
        del new[container]
    return new


def _write_removal(real: Path, path: Path, emptied: bool, text: Callable[[], str]) -> str:
    """Write the config without our entry; a file left empty that we created (no backup of it
    exists) is removed instead, so uninstall leaves none behind."""
    if emptied and not has_backup(real):
        real.unlink()
        return f"removed {path} (it held only tracekeeper's entry)"
    saved = _write_text(real, text(), True)
    return f"removed from {path} (backup: {saved})"


# --- JSON (Claude Code, Gemini CLI, Cursor) -------------------------------------------------------


def _load_json(path: Path) -> tuple[Path, str | None, dict[str, Any]]:
    """Parse the file as JSON with comments (Gemini accepts them; for the others there are none)."""
    real, text = _read(path)
    if text is None or not text.strip():
        return real, text, {}
    try:
        doc = jsonc.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc}); nothing written") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a JSON object, found a {type(doc).__name__}; nothing written")
    servers = doc.get("mcpServers")
    if servers is not None and not isinstance(servers, dict):
        raise ConfigError(f"{path}: 'mcpServers' is a {type(servers).__name__}, expected an object; nothing written")
    return real, text, doc


def _json_text(text: str | None, old: dict[str, Any], new: dict[str, Any]) -> str:
    """`new` written into the user's text, changing only what differs (jsonc.edit keeps comments
    and layout); a new file in the agents' own style (two spaces)."""
    if not text or not text.strip():
        return json.dumps(new, indent=2, ensure_ascii=False) + "\n"
    body = jsonc.strip_comments(text).strip()
    indent: int | str | None = None
    if "\n" in body:
        line = next((ln for ln in body.splitlines()[1:] if ln.strip() and ln != ln.lstrip(" \t")), "  ")
        whitespace = line[: len(line) - len(line.lstrip(" \t"))]
        indent = whitespace if "\t" in whitespace else len(whitespace)
    separators = None if indent is not None else ((", ", ": ") if '": ' in body else (",", ":"))
    try:
        return jsonc.edit(text, old, new, indent, separators).text
    except (ValueError, json.JSONDecodeError):
        return json.dumps(new, indent=indent if indent is not None else 2, ensure_ascii=False) + "\n"


def _json_install(target: McpAgent, path: Path, exe: str) -> str:
    real, text, doc = _load_json(path)
    new = copy.deepcopy(doc)
    new.setdefault("mcpServers", {})[NAME] = target.entry(exe)
    if text is not None and new == doc:
        return f"already registered in {path} (no change)"
    saved = _write_text(real, _json_text(text, doc, new), text is not None)
    return f"registered in {path} (backup: {saved})" if saved else f"created {path}"


def _json_uninstall(target: McpAgent, path: Path) -> str:
    real, text, doc = _load_json(path)
    if text is None:
        return f"not registered in {path}"
    refused = _nothing_to_remove(doc.get("mcpServers"), path, f"the '{NAME}' entry")
    if refused is not None:
        return refused
    new = _without_ours(doc, "mcpServers")
    return _write_removal(real, path, not new, lambda: _json_text(text, doc, new))


# --- TOML (Codex) -----------------------------------------------------------------------------------

#: A table header line; ours is `[mcp_servers.tracekeeper]` or one of its sub-tables.
_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_OUR_TABLE = re.compile(r"""^mcp_servers\s*\.\s*(tracekeeper|"tracekeeper"|'tracekeeper')(\s*\..*)?$""")


def _toml_value(value: Any) -> str:
    """A TOML value for our entry: strings (JSON's escapes are TOML basic-string escapes), lists."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def _toml_block(entry: dict[str, Any]) -> str:
    return f"[mcp_servers.{NAME}]\n" + "".join(f"{key} = {_toml_value(value)}\n" for key, value in entry.items())


def _our_span(lines: list[str]) -> tuple[int, int] | None:
    """The lines of our table and its sub-tables: from its header to the next other header."""
    start = end = None
    for index, line in enumerate(lines):
        match = _HEADER.match(line)
        if not match:
            continue
        ours = _OUR_TABLE.match(match.group(1)) is not None
        if ours and start is None:
            start = index
        elif not ours and start is not None and end is None:
            end = index
        elif ours and end is not None:
            return None  # our tables are not together: not a layout we edit
    if start is None:
        return None
    return start, len(lines) if end is None else end


def _parse_toml(text: str, path: Path) -> dict[str, Any]:
    import tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); nothing written") from None


def _servers(doc: dict[str, Any], path: Path) -> dict[str, Any]:
    servers = doc.get("mcp_servers", {})
    if not isinstance(servers, dict):
        raise ConfigError(f"{path}: 'mcp_servers' is a {type(servers).__name__}, expected a table; nothing written")
    return servers


def _checked(text: str, expected: dict[str, Any], path: Path) -> str:
    """Never write a file that does not parse to what was meant."""
    import tomllib

    try:
        if tomllib.loads(text) == expected:
            return text
    except tomllib.TOMLDecodeError:
        pass
    raise _layout(path)


def _layout(path: Path) -> ConfigError:
    return ConfigError(
        f"{path}: its [mcp_servers] are laid out in a way tracekeeper does not edit (inline or dotted tables);"
        f" edit [mcp_servers.{NAME}] by hand; nothing written"
    )


def _toml_install(target: McpAgent, path: Path, exe: str) -> str:
    real, text = _read(path)
    old = _parse_toml(text or "", path)
    entry = target.entry(exe)
    if _servers(old, path).get(NAME) == entry:
        return f"already registered in {path} (no change)"
    expected = copy.deepcopy(old)
    expected.setdefault("mcp_servers", {})[NAME] = entry
    block = _toml_block(entry)
    lines = (text or "").splitlines(keepends=True)
    span = _our_span(lines)
    if span is not None:  # ours (or a hand-written one): replace it, keeping the blank lines after it
        start, end = span
        body = lines[start:end]
        blank = len(body) - len("".join(body).rstrip().splitlines())  # the blank lines it ends with
        new_text = "".join(lines[:start]) + block + "".join(body[len(body) - blank :]) + "".join(lines[end:])
    elif text:
        # A blank line, then our table, at the end: uninstall cuts exactly these lines.
        new_text = text + ("" if text.endswith("\n") else "\n") + "\n" + block
    else:
        new_text = block
    saved = _write_text(real, _checked(new_text, expected, path), text is not None)
    return f"{'registered in' if text is not None else 'created'} {path}" + (f" (backup: {saved})" if saved else "")


def _toml_uninstall(target: McpAgent, path: Path) -> str:
    real, text = _read(path)
    if text is None:
        return f"not registered in {path}"
    old = _parse_toml(text, path)
    refused = _nothing_to_remove(_servers(old, path), path, f"[mcp_servers.{NAME}]")
    if refused is not None:
        return refused
    expected = _without_ours(old, "mcp_servers")
    lines = text.splitlines(keepends=True)
    span = _our_span(lines)
    if span is None:
        raise _layout(path)
    start, end = span
    if end == len(lines) and start > 0 and not lines[start - 1].strip():
        start -= 1  # the blank line install put before it
    new_text = "".join(lines[:start]) + "".join(lines[end:])
    return _write_removal(real, path, not new_text.strip(), lambda: _checked(new_text, expected, path))


# --- per agent ------------------------------------------------------------------------------------


def install(name: str, exe: str) -> str:
    """Register `exe mcp` in agent `name`'s user MCP config; says what was done. Raises
    ConfigError (nothing written) for a file it must not touch."""
    target = TARGETS[name]
    path = target.config()
    try:
        return _toml_install(target, path, exe) if target.toml else _json_install(target, path, exe)
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}; nothing written") from None


@dataclass(frozen=True)
class McpStatus:
    """Whether an agent's MCP config runs `tracekeeper mcp`: `registered` is None when the file
    cannot be read (`error` says why); `other_entry` when a server named `tracekeeper` runs
    something else (uninstall leaves it)."""

    config: Path
    registered: bool | None
    other_entry: bool = False
    error: str | None = None

    def view(self) -> dict[str, Any]:
        return {
            "config": str(self.config),
            "registered": self.registered,
            "other_entry": self.other_entry,
            "error": self.error,
        }


def status(name: str) -> McpStatus:
    """Read agent `name`'s user MCP config (never writing it) for our entry."""
    target = TARGETS[name]
    path = target.config()
    try:
        if target.toml:
            _, text = _read(path)
            servers = _servers(_parse_toml(text, path), path) if text is not None else {}
        else:
            servers = _load_json(path)[2].get("mcpServers") or {}
    except ConfigError as exc:
        # The readers' messages are an install's ("...; nothing written"): here nothing was to be.
        return McpStatus(path, None, error=str(exc).removesuffix("; nothing written"))
    entry = servers.get(NAME)
    ours = is_ours(entry)
    return McpStatus(path, ours, other_entry=entry is not None and not ours)


def uninstall(name: str) -> str:
    """Remove our entry from agent `name`'s user MCP config, and nothing else; says what was done."""
    target = TARGETS[name]
    path = target.config()
    try:
        return _toml_uninstall(target, path) if target.toml else _json_uninstall(target, path)
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}; nothing written") from None
