"""What a transcript's path alone says: which agent wrote it and which session it is.

Pure string work, no filesystem access: the daemon calls these on paths from
watcher events and hook payloads, some of which do not exist yet (Codex creates
its rollout lazily) or no longer exist.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import PurePath

_UUID = re.compile(
    r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}(?![0-9A-Fa-f])"
)

# Suffixes stripped to get a transcript's stem; ".zst" first so "x.jsonl.zst" -> "x".
_SUFFIXES = (".zst", ".jsonl", ".json", ".txt")

# Where each agent keeps its transcripts under the user's home (default locations only:
# CODEX_HOME, CLAUDE_CONFIG_DIR and CURSOR_CONFIG_DIR relocations are not recognised).
_AGENT_DIRS = (
    ("codex", "/.codex/"),
    ("claude", "/.claude/projects/"),
    ("gemini", "/.gemini/tmp/"),
    ("cursor", "/.cursor/projects/"),
    ("copilot", "/.copilot/session-state/"),
    ("pi", "/.pi/agent/sessions/"),
)


def transcript_stem(path: str | PurePath) -> str:
    """The file name without its transcript suffixes (``.jsonl``, ``.json``, ``.zst``, ``.txt``)."""
    name = PurePath(path).name
    changed = True
    while changed:
        changed = False
        for suffix in _SUFFIXES:
            if name.endswith(suffix) and len(name) > len(suffix):
                name = name[: -len(suffix)]
                changed = True
    return name


def is_uuid_like(text: str) -> bool:
    """True if the whole text is a UUID (any version, any case)."""
    return _UUID.fullmatch(text) is not None


def session_id_from_path(path: str | PurePath) -> str:
    """The session id a path implies: its last UUID-like part, else the stem.

    Codex ``rollout-<local time>-<uuid>``, Claude ``<uuid>``, pi ``<ts>_<uuid>`` and
    Cursor ``<uuid>`` names all end with the id. Copilot names every file
    ``events.jsonl`` inside a ``<sessionId>/`` directory, so when the name holds no
    UUID a UUID-named parent directory is used before falling back to the stem.
    """
    stem = transcript_stem(path)
    found = _UUID.findall(stem)
    if found:
        return str(found[-1])
    parent = PurePath(path).parent.name
    if is_uuid_like(parent):
        return parent
    return stem


def agent_from_path(path: str | PurePath) -> str | None:
    """The agent whose default transcript directory contains this path, if any."""
    text = str(path).replace("\\", "/")
    for agent, marker in _AGENT_DIRS:
        if marker in text:
            return agent
    return None


#: The recipe's uuid rule: the first uuid-like run anywhere in the name (no boundaries).
_RECIPE_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


def recipe_session_id(path: PurePath) -> str:
    """The recipe's fallback for an active-file payload without a session id: the first
    uuid-like part of the file name, lower-cased, else the name without ``.zst``, ``.jsonl``
    and ``.json`` (each stripped once, in that order).

    Not ``session_id_from_path``: the recipe's rule decides the session ids (and so the
    remote file names) of commits linked through its payload, and must not change under them.
    """
    match = _RECIPE_UUID.search(path.name)
    if match:
        return match.group(0).lower()
    name = path.name
    for suffix in (".zst", ".jsonl", ".json"):
        name = name.removesuffix(suffix)
    return name


def recipe_agent(path: PurePath) -> str:
    """The recipe's fallback for a payload without an agent: ``codex`` for a transcript under
    ``/.codex/``, else ``agent`` (never None, unlike ``agent_from_path``: the name is part of
    the remote path ``<agent>-<session>.jsonl`` the recipe's commits already point at)."""
    return "codex" if "/.codex/" in path.as_posix() else "agent"


def gemini_project_hash(project_root: str | os.PathLike[str]) -> str:
    """Gemini's ``projectHash``: hex SHA-256 of the absolute project root string.

    Mirrors ``getProjectHash`` in gemini-cli ``packages/core/src/utils/paths.ts``,
    which hashes the path as given (no symlink resolution). A caller matching a
    repo should try both the checkout path and its ``realpath``.
    """
    return hashlib.sha256(os.path.abspath(os.fspath(project_root)).encode("utf-8")).hexdigest()


def cursor_project_slug(project_root: str | os.PathLike[str]) -> str:
    """The ``~/.cursor/projects/<slug>`` directory name for a workspace root.

    The slug drops the leading "/" and turns every non-alphanumeric character into
    "-", so it cannot be decoded back into a path; compare candidate roots against
    it instead.
    """
    absolute = os.path.abspath(os.fspath(project_root))
    return re.sub(r"[^A-Za-z0-9]", "-", absolute.lstrip("/"))
