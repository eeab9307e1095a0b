"""Where each agent writes its transcripts: the roots discovery watches and uploads may come from.

An agent fact, so it lives with the other agent facts: every agent honours its own relocation
variable (``CODEX_HOME``, ``CLAUDE_CONFIG_DIR``, ``GEMINI_CLI_HOME``, ...), and the daemon must
look where the agent writes, not where it writes by default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Root:
    """A directory tree where one agent writes its transcripts."""

    agent: str
    path: Path


def parse_roots(text: str) -> list[Root]:
    """``agent=path`` items separated by ``os.pathsep`` (TRACEKEEPER_ROOTS); ``~`` is expanded."""
    roots = []
    for item in text.split(os.pathsep):
        if not item.strip():
            continue
        agent, sep, path = item.partition("=")
        if not sep or not agent.strip() or not path.strip():
            raise ValueError(f"TRACEKEEPER_ROOTS: expected agent=path, got {item!r}")
        roots.append(Root(agent.strip(), Path(os.path.abspath(os.path.expanduser(path.strip())))))
    return roots


def default_roots(env: Mapping[str, str] | None = None) -> list[Root]:
    """Each agent's transcript directory, honouring the agents' own relocation variables.

    ``TRACEKEEPER_ROOTS`` (see ``parse_roots``) replaces the list entirely; set it empty to
    disable discovery. Roots that do not exist are still listed: the index waits for them.
    """
    env = os.environ if env is None else env
    override = env.get("TRACEKEEPER_ROOTS")
    if override is not None:
        return parse_roots(override)
    home = Path(env.get("HOME") or Path.home())

    def place(variable: str, default: Path) -> Path:
        value = env.get(variable, "")
        return Path(os.path.abspath(os.path.expanduser(value))) if value else default

    codex = place("CODEX_HOME", home / ".codex")
    return [
        Root("codex", codex / "sessions"),
        Root("codex", codex / "archived_sessions"),
        Root("claude", place("CLAUDE_CONFIG_DIR", home / ".claude") / "projects"),
        Root("gemini", place("GEMINI_CLI_HOME", home) / ".gemini" / "tmp"),
        Root("cursor", place("CURSOR_CONFIG_DIR", home / ".cursor") / "projects"),
        Root("copilot", place("COPILOT_HOME", home / ".copilot") / "session-state"),
        Root("pi", place("PI_CODING_AGENT_DIR", home / ".pi" / "agent") / "sessions"),
    ]


def transcript_dirs(env: Mapping[str, str] | None = None) -> list[Path]:
    """Every directory transcripts may be read from: each agent's own (relocations honoured)
    plus the ``TRACEKEEPER_ROOTS`` roots, which add to the agents' directories here rather
    than replace them (unlike ``default_roots``, which chooses what discovery watches)."""
    env = dict(os.environ if env is None else env)
    override = env.pop("TRACEKEEPER_ROOTS", None)
    dirs = [root.path for root in default_roots(env)]
    if override:
        dirs += [root.path for root in parse_roots(override)]
    return dirs
