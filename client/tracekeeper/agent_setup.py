"""`tracekeeper agents`: put `tracekeeper hook <agent>` into each coding agent's user config.

Every agent has its own hook file and dialect (docs: ../shared/docs/agents.md), and those files
are the user's: they hold other tools' hooks and unrelated settings. So an install parses the
file, adds only our handlers, and writes it back in the indentation it had, keeping key order;
a second install changes nothing; every change is preceded by a backup; and uninstall removes
only handlers whose command runs `tracekeeper hook`, plus the containers that emptied because
of that. A file that is not valid JSON is refused rather than "repaired". Gemini's settings.json
may hold comments, as Gemini CLI accepts them: it is edited in place so they stay (jsonc.py).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shlex
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

# BACKUP_SUFFIX and has_backup are re-exported: cli/agents.py and the tests take them from here.
from .configfiles import BACKUP_SUFFIX as BACKUP_SUFFIX  # noqa: PLC0414
from .configfiles import env_dir, gemini_home, replace_text
from .configfiles import has_backup as has_backup  # noqa: PLC0414
from .errors import ClientError
from .mcp_setup import TARGETS as MCP_TARGETS
from .mcp_setup import McpStatus
from .mcp_setup import status as mcp_status

#: How our handlers are recognised: the command runs `tracekeeper hook` (quoted or not).
_OURS = re.compile(r"tracekeeper['\"]?\s+hook(\s|$)")


class ConfigError(ClientError):
    """A config file we must not touch (unreadable, not JSON, unexpected shape)."""


@dataclass(frozen=True)
class AgentSpec:
    """Where an agent keeps its user hooks and how its hook entries are shaped."""

    name: str
    label: str
    home: Callable[[], Path]
    config: Callable[[Path], Path]
    binaries: tuple[str, ...]
    events: tuple[str, ...]
    #: "grouped": {"hooks": {Event: [{"matcher"?, "hooks": [handler]}]}} (Claude, Codex, Gemini);
    #: "flat": {"version": 1, "hooks": {event: [handler]}} (Cursor, Copilot).
    layout: str
    command_key: str = "command"
    skeleton: tuple[tuple[str, Any], ...] = ()
    #: The whole file is ours (Copilot reads every *.json in its hooks dir): delete it when empty.
    owns_file: bool = False
    #: The agent reads the file as JSON with comments (Gemini CLI strips them before parsing).
    comments: bool = False

    def config_path(self) -> Path:
        return self.config(self.home())

    def handler(self, exe: str, event: str) -> dict[str, Any]:
        """Our handler for one event, in this agent's dialect."""
        command = f"{shlex.quote(exe)} hook {self.name}"
        if self.name == "codex":
            return {"type": "command", "command": command, "timeout": 10}
        if self.name == "claude":
            return {"type": "command", "command": command, "timeout": 10}
        if self.name == "gemini":  # Gemini's timeouts are in milliseconds
            return {"name": "tracekeeper", "type": "command", "command": command, "timeout": 5000}
        if self.name == "cursor":
            return {"command": command, "timeout": 10}
        # Copilot sends no event name in its payloads: pass it as an argument (sessionEnd matters).
        return {"type": "command", "bash": f"{command} {event}", "timeoutSec": 10}


AGENTS: dict[str, AgentSpec] = {
    spec.name: spec
    for spec in (
        AgentSpec(
            "codex",
            "OpenAI Codex CLI",
            lambda: env_dir("CODEX_HOME", ".codex"),
            lambda home: home / "hooks.json",
            ("codex",),
            ("SessionStart", "UserPromptSubmit", "Stop"),
            "grouped",
        ),
        AgentSpec(
            "claude",
            "Claude Code",
            lambda: env_dir("CLAUDE_CONFIG_DIR", ".claude"),
            lambda home: home / "settings.json",
            ("claude",),
            ("SessionStart", "UserPromptSubmit", "Stop", "SessionEnd"),
            "grouped",
        ),
        AgentSpec(
            "gemini",
            "Gemini CLI",
            gemini_home,
            lambda home: home / "settings.json",
            ("gemini",),
            ("SessionStart", "BeforeAgent", "AfterAgent", "SessionEnd"),
            "grouped",
            comments=True,
        ),
        AgentSpec(
            "cursor",
            "Cursor (IDE and agent CLI)",
            lambda: env_dir("CURSOR_CONFIG_DIR", ".cursor"),
            lambda home: home / "hooks.json",
            ("cursor-agent", "cursor"),
            # Headless `agent -p` fires only sessionStart and sessionEnd: without the end, a
            # scripted session never tells the daemon it finished.
            ("sessionStart", "beforeSubmitPrompt", "stop", "sessionEnd"),
            "flat",
            skeleton=(("version", 1),),
        ),
        AgentSpec(
            "copilot",
            "GitHub Copilot CLI",
            lambda: env_dir("COPILOT_HOME", ".copilot"),
            lambda home: home / "hooks" / "tracekeeper.json",
            ("copilot",),
            ("sessionStart", "userPromptSubmitted", "agentStop", "sessionEnd"),
            "flat",
            command_key="bash",
            skeleton=(("version", 1),),
            owns_file=True,
        ),
    )
}


def hook_executable() -> str:
    """The absolute path of the installed `tracekeeper` script.

    Agents run hooks with whatever PATH they were started with (an IDE launched from the dock
    has a minimal one), so the command names the script by absolute path.
    """
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is not None and argv0.name == "tracekeeper" and argv0.is_file():
        return str(argv0.resolve())
    beside = Path(sys.executable).parent / "tracekeeper"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("tracekeeper")
    if found:
        return str(Path(found).resolve())
    return f"{sys.executable} -m tracekeeper"


def is_ours(handler: Any, key: str = "command") -> bool:
    """True for a handler that runs `tracekeeper hook` (the only ones uninstall removes)."""
    if not isinstance(handler, dict):
        return False
    command = handler.get(key)
    if not isinstance(command, str):
        command = handler.get("command") if key != "command" else None
    return isinstance(command, str) and _OURS.search(command) is not None


# --- reading and writing the user's JSON without disturbing it ---------------------------


@dataclass
class Style:
    """How a JSON file was written, so our rewrite looks like the user's (or tool's) own."""

    indent: int | str | None = 2
    separators: tuple[str, str] | None = None
    ensure_ascii: bool = False
    newline: bool = True

    @classmethod
    def of(cls, text: str) -> Style:
        style = cls(newline=text.endswith("\n"))
        body = text.strip()
        if "\n" not in body:
            style.indent = None
            style.separators = (", ", ": ") if '": ' in body or not body.strip("{}") else (",", ":")
        else:
            for line in body.splitlines()[1:]:
                stripped = line.lstrip(" \t")
                if stripped and stripped != line:
                    ws = line[: len(line) - len(stripped)]
                    style.indent = ws if "\t" in ws else len(ws)
                    break
        style.ensure_ascii = body.isascii() and re.search(r"\\u[0-9a-fA-F]{4}", body) is not None
        return style

    def dump(self, doc: Any) -> str:
        text = json.dumps(doc, indent=self.indent, separators=self.separators, ensure_ascii=self.ensure_ascii)
        return text + ("\n" if self.newline else "")


@dataclass
class Loaded:
    path: Path  # the real file (a symlinked dotfile is written through, not replaced)
    exists: bool
    doc: dict[str, Any]
    style: Style
    commented: str | None = None  # the file's text, when it holds comments to keep


def load(path: Path, skeleton: tuple[tuple[str, Any], ...] = (), *, comments: bool = False) -> Loaded:
    """Parse a config file (JSON with comments if the agent accepts them); a missing file is an
    empty one. Raises ConfigError, naming it."""
    from . import jsonc

    real = Path(os.path.realpath(path))
    try:
        raw = real.read_bytes()
    except FileNotFoundError:
        return Loaded(real, False, dict(skeleton), Style())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror}); nothing written") from None
    try:
        text = raw.decode("utf-8-sig")
        plain = jsonc.strip_comments(text) if comments else text
        doc = json.loads(plain) if plain.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc}); nothing written") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a JSON object, found a {type(doc).__name__}; nothing written")
    style = Style.of(plain) if plain.strip() else Style()
    return Loaded(real, True, doc, style, text if plain != text else None)


@dataclass
class Written:
    backup: Path | None
    comments: str | None = None  # "kept" or "lost" when the file had comments

    def notes(self, path: Path) -> list[str]:
        """What to tell the user beyond "updated": comments that could not be kept."""
        if self.comments == "lost":
            return [f"note: the comments in {path} could not all be kept; the original is in {self.backup}"]
        return []


def write(loaded: Loaded, doc: dict[str, Any]) -> Written:
    """Back up (if the file existed), then replace atomically keeping its mode.

    A file with comments is edited in place (jsonc.edit), so the user's comments survive; where
    an edit had to replace text holding a comment, or in-place editing failed, the document is
    written whole and the result says the comments were lost (the backup has them)."""
    from . import jsonc

    text = loaded.style.dump(doc)
    comments = None
    if loaded.commented is not None:
        try:
            edited = jsonc.edit(loaded.commented, loaded.doc, doc, loaded.style.indent, loaded.style.separators)
            text, comments = edited.text, ("lost" if edited.lost_comments else "kept")
        except (ValueError, json.JSONDecodeError):
            comments = "lost"
    return Written(replace_text(loaded.path, text, loaded.exists), comments)


# --- merging our entries ----------------------------------------------------------------------


def _hooks_table(doc: dict[str, Any], path: Path, create: bool) -> dict[str, Any] | None:
    hooks = doc.get("hooks")
    if hooks is None:
        if not create:
            return None
        hooks = doc["hooks"] = {}
    if not isinstance(hooks, dict):
        raise ConfigError(f"{path}: 'hooks' is a {type(hooks).__name__}, expected an object; nothing written")
    return hooks


def _event_list(hooks: dict[str, Any], event: str, path: Path, create: bool) -> list[Any] | None:
    entries = hooks.get(event)
    if entries is None:
        if not create:
            return None
        entries = hooks[event] = []
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: hooks.{event} is a {type(entries).__name__}, expected a list; nothing written")
    return entries


def _our_slots(spec: AgentSpec, entries: list[Any]) -> list[tuple[list[Any], int]]:
    """(containing list, index) of each of our handlers under one event."""
    slots: list[tuple[list[Any], int]] = []
    for entry in entries:
        if spec.layout == "grouped" and isinstance(entry, dict) and isinstance(entry.get("hooks"), list):
            handlers: list[Any] = entry["hooks"]
            slots.extend((handlers, i) for i, h in enumerate(handlers) if is_ours(h, spec.command_key))
    if spec.layout == "flat":
        slots.extend((entries, i) for i, h in enumerate(entries) if is_ours(h, spec.command_key))
    return slots


def add_ours(spec: AgentSpec, doc: dict[str, Any], path: Path, exe: str) -> dict[str, Any]:
    """A copy of `doc` with our handler under each event (updated in place if already there)."""
    new = copy.deepcopy(doc)
    for key, value in spec.skeleton:
        if "hooks" not in new and key not in new:
            new[key] = value
    hooks = _hooks_table(new, path, create=True)
    assert hooks is not None
    for event in spec.events:
        entries = _event_list(hooks, event, path, create=True)
        assert entries is not None
        wanted = spec.handler(exe, event)
        slots = _our_slots(spec, entries)
        if not slots:
            entries.append({"hooks": [wanted]} if spec.layout == "grouped" else wanted)
            continue
        first, index = slots[0]
        if first[index] != wanted:
            first[index] = wanted  # e.g. tracekeeper moved to another virtualenv
        if len(slots) > 1:  # duplicates from hand edits or an older install
            touched = {id(container) for container, _ in slots[1:]}
            for container, index in reversed(slots[1:]):
                del container[index]
            entries[:] = [
                e for e in entries if not (isinstance(e, dict) and e.get("hooks") == [] and id(e["hooks"]) in touched)
            ]
    return new


def remove_ours(spec: AgentSpec, doc: dict[str, Any], path: Path) -> dict[str, Any]:
    """A copy of `doc` without our handlers, and without the containers that only held them."""
    new = copy.deepcopy(doc)
    hooks = _hooks_table(new, path, create=False)
    if hooks is None:
        return new
    for event in list(hooks):
        entries = hooks[event]
        if not isinstance(entries, list):
            continue
        removed = False
        kept: list[Any] = []
        for entry in entries:
            if spec.layout == "grouped" and isinstance(entry, dict) and isinstance(entry.get("hooks"), list):
                handlers = [h for h in entry["hooks"] if not is_ours(h, spec.command_key)]
                if len(handlers) != len(entry["hooks"]):
                    removed = True
                    if not handlers:
                        continue  # the group held only ours
                    entry["hooks"] = handlers
            elif spec.layout == "flat" and is_ours(entry, spec.command_key):
                removed = True
                continue
            kept.append(entry)
        if removed:
            if kept:
                hooks[event] = kept
            else:
                del hooks[event]
    if not hooks and "hooks" in doc and doc["hooks"]:
        del new["hooks"]
    return new


def installed_events(spec: AgentSpec, doc: dict[str, Any]) -> list[str]:
    """The events under which one of our handlers is configured."""
    hooks = doc.get("hooks")
    if not isinstance(hooks, dict):
        return []
    return [event for event in spec.events if isinstance(hooks.get(event), list) and _our_slots(spec, hooks[event])]


# --- Codex trust ---------------------------------------------------------------------------
#
# Codex runs a user hook only while `[hooks.state."<hooks.json>:<event_snake>:<group>:<handler>"]`
# in config.toml holds `trusted_hash` equal to the hash of the hook's *current* definition and
# does not say `enabled = false`; a hash of any other definition is "modified" and the hook is
# skipped (silently in `codex exec`). So we compute that hash the way Codex does and compare.
# Source: openai/codex codex-rs/hooks/src/engine/discovery.rs (append_matcher_groups,
# normalize_command_hook, hook_hash / command_hook_hash, hook_trust_status, hook_enabled),
# codex-rs/hooks/src/lib.rs (hook_event_key_label, HOOK_EVENT_NAMES_WITH_MATCHERS),
# codex-rs/config/src/hook_config.rs (serde names) and codex-rs/config/src/fingerprint.rs
# (version_for_toml). The hash has no public contract (openai/codex#21615): a Codex release that
# changes it makes us report "modified" for hooks it runs, never the other way round.


class CodexTrust(StrEnum):
    """What Codex does with one of our handlers."""

    TRUSTED = "trusted"  # runs it
    UNTRUSTED = "untrusted"  # no trusted_hash: skipped until the user trusts it
    MODIFIED = "modified"  # trusted_hash of another definition: skipped until trusted again
    DISABLED = "disabled"  # enabled = false in hooks.state: skipped


_CODEX_SKIPPED_WHY = {
    CodexTrust.UNTRUSTED: "not trusted yet",
    CodexTrust.MODIFIED: "changed since it was trusted",
    CodexTrust.DISABLED: "disabled in /hooks",
}

#: lib.rs HOOK_EVENT_NAMES_WITH_MATCHERS: for other events the matcher is dropped from the identity.
_CODEX_MATCHER_EVENTS = frozenset(
    {"PreToolUse", "PermissionRequest", "PostToolUse", "PreCompact", "PostCompact", "SessionStart"}
    | {"SubagentStart", "SubagentStop", "SessionEnd"}
)
#: Events whose handlers may set additionalContextLimit; elsewhere Codex drops it before hashing.
_CODEX_CONTEXT_EVENTS = frozenset({"PreToolUse", "PostToolUse", "SessionStart", "UserPromptSubmit", "SubagentStart"})
_CODEX_DEFAULT_CONTEXT_LIMIT = 2500  # hooks/src/output_spill.rs DEFAULT_HOOK_OUTPUT_TOKEN_LIMIT


def _snake(event: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", event).lower()


def _codex_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def codex_hook_hash(event: str, group: dict[str, Any], handler: dict[str, Any]) -> str | None:
    """The `trusted_hash` Codex expects for `handler` (in `group`, under `event`), or None for a
    handler Codex would not run at all (not a command, empty command, a value it cannot parse)."""
    command = handler.get("command")
    if handler.get("type") != "command" or not isinstance(command, str) or not command.strip():
        return None
    timeout = handler.get("timeout")
    if timeout is not None and _codex_int(timeout) is None:
        return None
    if event in ("SessionEnd", "Interrupt"):  # SESSION_END_DEFAULT / MAX_TIMEOUT_SEC
        seconds = min(max(1 if timeout is None else timeout, 1), 3)
    else:
        seconds = max(600 if timeout is None else timeout, 1)
    normalized: dict[str, Any] = {
        "type": "command",
        "command": command,  # the POSIX command: `commandWindows` is used on Windows only
        "timeout": seconds,
        "async": handler.get("async") is True,
    }
    status = handler.get("statusMessage")
    if isinstance(status, str):
        normalized["statusMessage"] = status
    limit = _codex_int(handler.get("additionalContextLimit"))
    if limit is not None and event in _CODEX_CONTEXT_EVENTS and limit != _CODEX_DEFAULT_CONTEXT_LIMIT:
        normalized["additionalContextLimit"] = limit
    identity: dict[str, Any] = {"event_name": _snake(event), "hooks": [normalized]}
    matcher = group.get("matcher")
    if event in _CODEX_MATCHER_EVENTS and isinstance(matcher, str):
        identity["matcher"] = matcher  # a None matcher is left out, as TOML has no null
    # version_for_toml: TOML value -> JSON, keys sorted at every level, compact, sha256.
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def codex_trust(hooks_path: Path, doc: dict[str, Any]) -> tuple[dict[str, CodexTrust], str | None]:
    """Per event, what Codex does with our handler there (the worst case if there are several).

    Returns (per-event result, a note about config.toml such as hooks being disabled).
    """
    import tomllib

    config = hooks_path.parent / "config.toml"
    note: str | None = None
    state: dict[str, Any] = {}
    try:
        data = tomllib.loads(config.read_text(encoding="utf-8"))
    except FileNotFoundError:
        data = {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return {}, f"cannot read {config}: {exc}"
    features = data.get("features")
    if isinstance(features, dict) and (features.get("hooks") is False or features.get("codex_hooks") is False):
        note = f"hooks are disabled in {config} ([features] hooks = false)"
    hooks_table = data.get("hooks")
    if isinstance(hooks_table, dict) and isinstance(hooks_table.get("state"), dict):
        state = hooks_table["state"]
    # Codex keys the slot by the hooks.json path under CODEX_HOME as it resolved it.
    names = dict.fromkeys((str(hooks_path), os.path.realpath(hooks_path)))
    order = list(CodexTrust)
    result: dict[str, CodexTrust] = {}
    hooks = doc.get("hooks") if isinstance(doc.get("hooks"), dict) else {}
    assert isinstance(hooks, dict)
    for event in AGENTS["codex"].events:
        entries = hooks.get(event)
        verdicts: list[CodexTrust] = []
        for gi, group in enumerate(entries if isinstance(entries, list) else []):
            handlers = group.get("hooks") if isinstance(group, dict) else None
            for hi, handler in enumerate(handlers if isinstance(handlers, list) else []):
                if not is_ours(handler):
                    continue
                current = codex_hook_hash(event, group, handler)
                slots = [state.get(f"{name}:{_snake(event)}:{gi}:{hi}") for name in names]
                slot = next((s for s in slots if isinstance(s, dict)), {})
                stored = slot.get("trusted_hash")
                if slot.get("enabled") is False:
                    verdicts.append(CodexTrust.DISABLED)
                elif not isinstance(stored, str):
                    verdicts.append(CodexTrust.UNTRUSTED)
                elif current is None or stored != current:
                    verdicts.append(CodexTrust.MODIFIED)
                else:
                    verdicts.append(CodexTrust.TRUSTED)
        if verdicts:
            result[event] = max(verdicts, key=order.index)
    return result, note


def codex_skipped(trust: dict[str, CodexTrust], events: list[str]) -> str | None:
    """ "SessionStart, Stop (not trusted yet)" for the events Codex will not run; None if it runs all."""
    by_why: dict[str, list[str]] = {}
    for event in events:
        verdict = trust.get(event, CodexTrust.UNTRUSTED)
        if verdict is not CodexTrust.TRUSTED:
            by_why.setdefault(_CODEX_SKIPPED_WHY[verdict], []).append(event)
    if not by_why:
        return None
    return "; ".join(f"{', '.join(names)} ({why})" for why, names in by_why.items())


CODEX_TRUST_HELP = (
    "Codex runs user hooks only once you trust them (openai/codex#20321): start `codex`, "
    "review and trust the tracekeeper hooks when it lists new hooks at startup (or run /hooks). "
    "Until then `codex exec` skips them silently."
)


# --- what is on this machine ---------------------------------------------------------------


@dataclass
class AgentState:
    spec: AgentSpec
    present: bool
    why: str
    config: Path
    events: list[str]
    error: str | None = None
    trust: dict[str, CodexTrust] | None = None
    note: str | None = None
    #: Our MCP server in the agent's MCP config; None for an agent mcp_setup cannot register with.
    mcp: McpStatus | None = None

    def view(self) -> dict[str, Any]:
        trust = self.trust
        return {
            "agent": self.spec.name,
            "present": self.present,
            "detected_by": self.why,
            "config": str(self.config),
            "hooks": self.events,
            "complete": set(self.events) == set(self.spec.events),
            "error": self.error,
            # Per event: will Codex run it (True only when the stored hash is the current one),
            # and why not.
            "codex_trusted": None if trust is None else {e: trust.get(e) is CodexTrust.TRUSTED for e in self.events},
            "codex_trust": None if trust is None else {e: str(trust.get(e, CodexTrust.UNTRUSTED)) for e in self.events},
            "note": self.note,
            "mcp": None if self.mcp is None else self.mcp.view(),
        }


def inspect(spec: AgentSpec) -> AgentState:
    """Is the agent here (config dir or binary on PATH), and are our hooks in its config?"""
    home = spec.home()
    reasons = []
    if home.is_dir():
        reasons.append(f"{home} exists")
    for binary in spec.binaries:
        found = shutil.which(binary)
        if found:
            reasons.append(f"{binary} at {found}")
            break
    path = spec.config_path()
    state = AgentState(spec, bool(reasons), ", ".join(reasons), path, [])
    state.mcp = mcp_status(spec.name) if spec.name in MCP_TARGETS else None
    try:
        loaded = load(path, spec.skeleton, comments=spec.comments)
    except ConfigError as exc:
        state.error = str(exc)
        return state
    state.events = installed_events(spec, loaded.doc)
    if spec.name == "codex" and state.events:
        state.trust, state.note = codex_trust(path, loaded.doc)
    if spec.name == "gemini":
        hooks_config = loaded.doc.get("hooksConfig")
        if isinstance(hooks_config, dict) and hooks_config.get("enabled") is False:
            state.note = f"hooks are disabled in {path} (hooksConfig.enabled = false)"
    return state


def selected(agents: tuple[str, ...]) -> list[AgentSpec]:
    """Every named agent once, in the order given (`--agent` may repeat); 'all' means every one."""
    if not agents or "all" in agents:
        return list(AGENTS.values())
    return [AGENTS[name] for name in dict.fromkeys(agents)]


def after_install(spec: AgentSpec, path: Path, changed: bool) -> list[str]:
    """What the user still has to do for the hooks to run (one line each)."""
    lines: list[str] = []
    if spec.name == "codex":
        loaded = load(path)
        trust, note = codex_trust(path, loaded.doc)
        if note:
            lines.append(f"warning: {note}")
        if codex_skipped(trust, list(spec.events)) is not None:
            lines.append(CODEX_TRUST_HELP)
    elif spec.name == "claude" and changed:
        lines.append("Claude Code reads hooks at startup: restart running sessions (or review them in /hooks).")
    elif spec.name == "gemini":
        state = inspect(spec)
        if state.note:
            lines.append(f"warning: {state.note}")
    return lines
