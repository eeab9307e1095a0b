"""The agents' user config files as tracekeeper changes them: where each agent keeps its directory,
and the one way a file is backed up and replaced.

Both agent_setup.py (hooks) and mcp_setup.py (MCP entries) edit these files, so they share this
module rather than each other: every change is preceded by a `<file>.tracekeeper-backup-<time>`
copy and written atomically keeping the file's mode, whichever command made it.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

BACKUP_SUFFIX = ".tracekeeper-backup-"


def home() -> Path:
    return Path(os.path.expanduser("~"))


def gemini_home() -> Path:
    """Gemini CLI's user directory: `$GEMINI_CLI_HOME/.gemini`, else `~/.gemini`, the value taken
    as it is (google-gemini/gemini-cli packages/core/src/utils/paths.ts homedir() and
    packages/core/src/config/storage.ts getGlobalGeminiDir())."""
    return (Path(os.environ["GEMINI_CLI_HOME"]) if os.environ.get("GEMINI_CLI_HOME") else home()) / ".gemini"


def env_dir(var: str, default: str) -> Path:
    value = os.environ.get(var)
    return Path(value).expanduser() if value else home() / default


def backup(path: Path) -> Path:
    """Copy the file aside before we change it: `<file>.tracekeeper-backup-<timestamp>`."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}{BACKUP_SUFFIX}{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}{BACKUP_SUFFIX}{stamp}-{n}")
        n += 1
    shutil.copy2(path, target)
    return target


def has_backup(path: Path) -> bool:
    return any(path.parent.glob(f"{path.name}{BACKUP_SUFFIX}*")) if path.parent.is_dir() else False


def replace_text(path: Path, text: str, existed: bool, new_mode: int = 0o644) -> Path | None:
    """Back up (if the file existed), then replace it atomically keeping its mode; returns the backup.

    One writer for every agent config we change (hooks in agent_setup.py, MCP entries in mcp_setup.py), so they
    are all backed up and replaced the same way; `new_mode` is for a file that did not exist (the
    MCP configs may hold tokens, so mcp_setup.py asks for 0600)."""
    saved = backup(path) if existed else None
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o7777 if existed else new_mode
    tmp = path.with_name(f".{path.name}.tracekeeper-{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return saved
