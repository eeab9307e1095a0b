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
  "args", "env"}` (cursor.com/docs/mcp).

JSON files are edited in place (jsonc.edit), so the user's formatting outside our entry stays as
it was; Codex's TOML is edited as text (our table appended, or cut out) and the result is parsed
again and compared with what was meant before anything is written.
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

from .agent_setup import AGENTS, ConfigError, Loaded, backup, has_backup, inspect, load, write

#: The name of our entry in every agent's config.
NAME = "tracekeeper"
#: Agents whose MCP config we know (Copilot CLI's is not supported yet).
MCP_AGENTS = ("claude", "codex", "gemini", "cursor")
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
_OURS = re.compile(r"tracekeeper['\"]?(\s+\S+)*?\s+mcp$")


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


@dataclass(frozen=True)
class McpAgent:
    name: str
    config: Callable[[], Path]
    entry: Callable[[str], dict[str, Any]]
    toml: bool = False
    comments: bool = False

    @property
    def label(self) -> str:
        return AGENTS[self.name].label


def _claude_config() -> Path:
    configured = os.environ.get("CLAUDE_CONFIG_DIR")
    return (Path(configured).expanduser() if configured else Path(os.path.expanduser("~"))) / ".claude.json"


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
    command, args = command_line(exe)
    return {"command": command, "args": args}


TARGETS: dict[str, McpAgent] = {
    "claude": McpAgent("claude", _claude_config, _claude_entry),
    "codex": McpAgent("codex", lambda: AGENTS["codex"].home() / "config.toml", _codex_entry, toml=True),
    "gemini": McpAgent("gemini", lambda: AGENTS["gemini"].home() / "settings.json", _gemini_entry, comments=True),
    "cursor": McpAgent("cursor", lambda: AGENTS["cursor"].home() / "mcp.json", _cursor_entry),
}


# --- JSON (Claude Code, Gemini CLI, Cursor) -------------------------------------------------------


def _load_json(target: McpAgent, path: Path) -> Loaded:
    loaded = load(path, comments=target.comments)
    if loaded.exists and loaded.commented is None:
        # Edit every file in place, not only commented ones: a hand-formatted file keeps its layout.
        text = loaded.path.read_text(encoding="utf-8-sig")
        if text.strip():
            loaded.commented = text
    servers = loaded.doc.get("mcpServers")
    if servers is not None and not isinstance(servers, dict):
        raise ConfigError(f"{path}: 'mcpServers' is a {type(servers).__name__}, expected an object; nothing written")
    return loaded


def _json_install(target: McpAgent, path: Path, exe: str) -> str:
    loaded = _load_json(target, path)
    new = copy.deepcopy(loaded.doc)
    new.setdefault("mcpServers", {})[NAME] = target.entry(exe)
    if loaded.exists and new == loaded.doc:
        return f"already registered in {path} (no change)"
    written = write(loaded, new)
    extra = f" (backup: {written.backup})" if written.backup else ""
    if written.comments == "lost":
        extra += f"; its comments could not all be kept, the original is in {written.backup}"
    return f"{'registered in' if loaded.exists else 'created'} {path}{extra}"


def _json_uninstall(target: McpAgent, path: Path) -> str:
    loaded = _load_json(target, path)
    servers = loaded.doc.get("mcpServers")
    if not loaded.exists or not isinstance(servers, dict) or NAME not in servers:
        return f"not registered in {path}"
    if not is_ours(servers[NAME]):
        return f"the '{NAME}' entry in {path} does not run `tracekeeper mcp`; left as it is"
    new = copy.deepcopy(loaded.doc)
    del new["mcpServers"][NAME]
    if not new["mcpServers"]:
        del new["mcpServers"]  # it held only ours
    if not new and not has_backup(loaded.path):
        loaded.path.unlink()  # we created the file: leave none behind
        return f"removed {path} (it held only tracekeeper's entry)"
    written = write(loaded, new)
    return f"removed from {path} (backup: {written.backup})"


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


def _write_text(path: Path, text: str, existed: bool) -> Path | None:
    """Back up (if it existed), then replace atomically keeping the file's mode."""
    saved = backup(path) if existed else None
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o7777 if existed else 0o600  # config.toml may hold tokens
    tmp = path.with_name(f".{path.name}.tracekeeper-{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return saved


def _read_toml(path: Path) -> tuple[Path, str | None]:
    real = Path(os.path.realpath(path))
    try:
        return real, real.read_text(encoding="utf-8")
    except FileNotFoundError:
        return real, None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc}); nothing written") from None


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
    real, text = _read_toml(path)
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
    real, text = _read_toml(path)
    if text is None:
        return f"not registered in {path}"
    old = _parse_toml(text, path)
    servers = _servers(old, path)
    if NAME not in servers:
        return f"not registered in {path}"
    if not is_ours(servers[NAME]):
        return f"[mcp_servers.{NAME}] in {path} does not run `tracekeeper mcp`; left as it is"
    expected = copy.deepcopy(old)
    del expected["mcp_servers"][NAME]
    if not expected["mcp_servers"]:
        del expected["mcp_servers"]
    lines = text.splitlines(keepends=True)
    span = _our_span(lines)
    if span is None:
        raise _layout(path)
    start, end = span
    if end == len(lines) and start > 0 and not lines[start - 1].strip():
        start -= 1  # the blank line install put before it
    new_text = "".join(lines[:start]) + "".join(lines[end:])
    if not new_text.strip() and not has_backup(real):
        real.unlink()
        return f"removed {path} (it held only tracekeeper's entry)"
    saved = _write_text(real, _checked(new_text, expected, path), True)
    return f"removed from {path} (backup: {saved})"


# --- per agent ------------------------------------------------------------------------------------


def _selected(agents: tuple[str, ...]) -> tuple[list[McpAgent], list[str]]:
    """The agents to act on, and those named that have no MCP config we know."""
    names = list(AGENTS) if not agents or "all" in agents else list(dict.fromkeys(agents))
    return [TARGETS[n] for n in names if n in TARGETS], [n for n in names if n not in TARGETS]


def install(agents: tuple[str, ...], exe: str) -> list[tuple[str, str | Exception]]:
    """Register `exe mcp` with each agent ('all': each one found on this machine). Per agent: what
    was done, or the ConfigError/OSError that stopped it (the others are still done)."""
    targets, unsupported = _selected(agents)
    every = not agents or "all" in agents
    results: list[tuple[str, str | Exception]] = []
    skipped: list[str] = []
    for target in targets:
        if every and not inspect(AGENTS[target.name]).present:
            skipped.append(target.name)
            continue
        path = target.config()
        try:
            done = _toml_install(target, path, exe) if target.toml else _json_install(target, path, exe)
        except (ConfigError, OSError) as exc:
            results.append((target.name, exc if isinstance(exc, ConfigError) else _os_error(exc, path)))
            continue
        results.append((target.name, done))
    for name in unsupported:
        if not every:
            results.append((name, f"{AGENTS[name].label}: registering tracekeeper's MCP server is not supported yet"))
    if skipped:
        results.append(("note", f"not found here, skipped: {', '.join(skipped)} (use --agent NAME to register anyway)"))
    return results


def uninstall(agents: tuple[str, ...]) -> list[tuple[str, str | Exception]]:
    """Remove our entry from each agent's config (every agent we know, for 'all')."""
    targets, _ = _selected(agents)
    results: list[tuple[str, str | Exception]] = []
    for target in targets:
        path = target.config()
        try:
            done = _toml_uninstall(target, path) if target.toml else _json_uninstall(target, path)
        except (ConfigError, OSError) as exc:
            results.append((target.name, exc if isinstance(exc, ConfigError) else _os_error(exc, path)))
            continue
        results.append((target.name, done))
    return results


def _os_error(exc: OSError, path: Path) -> ConfigError:
    return ConfigError(f"{path}: {exc.strerror or exc}; nothing written")
