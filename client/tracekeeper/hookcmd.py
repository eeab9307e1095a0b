"""`tracekeeper hook <agent>`: record the agent session that is active in a repository.

Coding agents run this from their hook configs (session start, prompt submit, stop, end) with
the hook payload on stdin. It writes the session into the repo's `hf-traces-active.json` (the
file `git rev-parse --git-path` names, so each linked worktree has its own), where the
post-commit hook and tracekeeperd pick it up at commit time.

Why it looks the way it does:

* It runs on every prompt of every agent, so it must be fast: the standard library only, and
  only its cheap modules: no click, rich, pathlib, `json` or `re` (json's Python half imports re,
  enum, functools and collections: more than all the rest); bench/bench_hook.py keeps it within
  1.5x a bare interpreter start. JSON goes through `_json` directly, the regexes are written
  out, and the git dir is found by walking up for `.git`, with git (through posix_spawn rather
  than `subprocess`) asked only in unusual layouts. `tracekeeperd.agents.paths` is not
  imported: that runs `tracekeeperd/agents/__init__.py`, which loads every transcript parser
  (~30 ms), so the few small helpers needed here are repeated (tests/test_hookcmd.py checks
  them, and the json/re stand-ins, against the originals).
* Agents read its stdout: Claude Code and Codex add plain stdout to the model's context, Gemini
  turns it into a system message, Cursor wants JSON. So stdout is empty, or exactly Cursor's
  JSON, whatever happens; failures go to a log file; the exit status is always 0 (a non-zero
  status can block the agent).
* Several agents' hooks can fire at once in one worktree, so the file is rewritten under an
  fcntl lock and replaced atomically.
"""

from __future__ import annotations

import _json
import fcntl
import os
import stat  # loaded by `os` already
import sys
import time

# The git runner's own environment rule: its module imports only `os`, so it costs nothing here.
from tracekeeperd.gitenv import clean_env

from .errors import ClientError

# `typing` costs ~2 ms to import and every annotation here is a string (PEP 563), so it is
# imported for the type checker only (mypy treats any `TYPE_CHECKING` name as true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

ACTIVE_FILE = "hf-traces-active.json"
FORMAT_VERSION = 1

#: Agents this command knows; any other argument is kept (sanitised) as the agent's name.
AGENTS = ("codex", "claude", "gemini", "cursor", "copilot")

#: Payload fields never copied into the active file: user and model text (large, private, and
#: the post-commit hook copies this file into the spool), tool I/O, and the user's e-mail.
#: The transcript-path aliases are dropped because `transcript_path` is set canonically and
#: tracekeeperd would otherwise prefer a stale `trace_file`.
_DROP_KEYS = frozenset(
    {
        "prompt",
        "initialPrompt",
        "last_assistant_message",
        "prompt_response",
        "attachments",
        "tool_input",
        "tool_response",
        "tool_output",
        "toolArgs",
        "toolResult",
        "result_json",
        "output",
        "content",
        "edits",
        "command",
        "message",
        "user_email",
        "llm_request",
        "llm_response",
        "trace_file",
        "transcriptPath",
    }
)
_MAX_FIELD_CHARS = 1024  # longer strings are someone's text, not metadata
_MAX_FIELDS = 64
_MAX_SESSIONS = 64  # a file nobody resets after commits must not grow without bound
_MAX_ID_CHARS = 256
_LOCK_WAIT = 3.0  # seconds; agents give hooks 5-600 s, a wedged lock must not eat that
_GIT_TIMEOUT = 5.0
_LOG_MAX_BYTES = 1 << 20

_GEMINI_EVENTS = frozenset(
    {"BeforeAgent", "AfterAgent", "BeforeModel", "AfterModel", "BeforeToolSelection", "BeforeTool", "AfterTool"}
)
_GEMINI_EVENTS_ANY = _GEMINI_EVENTS | {"PreCompress"}
_END_EVENTS = frozenset({"SessionEnd", "sessionEnd"})
_SUBMIT_EVENTS = frozenset({"beforeSubmitPrompt", "UserPromptSubmit"})
_CURSOR_KEYS = ("conversation_id", "cursor_version", "workspace_roots")
_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_NAME_CHARS = _ALNUM | frozenset("._-")
_HEX = frozenset("0123456789ABCDEFabcdef")


def _safe_id(value: str) -> bool:
    """A session id used as a path component must not climb out of its directory: the regex
    `[A-Za-z0-9][A-Za-z0-9._-]*`, written out because `re` is not imported here."""
    return bool(value) and value[0] in _ALNUM and all(c in _NAME_CHARS for c in value)


def _safe_name(value: str) -> str:
    """`re.sub(r"[^A-Za-z0-9._-]+", "-", value)`."""
    out: list[str] = []
    in_run = False
    for char in value:
        if char in _NAME_CHARS:
            out.append(char)
            in_run = False
        elif not in_run:
            out.append("-")
            in_run = True
    return "".join(out)


# --- JSON through the C accelerator -------------------------------------------------------------
#
# `import json` runs json/decoder.py and json/encoder.py, which import `re`, which imports enum,
# functools and collections: about as much start-up time as everything else this command does
# (bench/bench_hook.py). The parsing and string escaping are done by the C module `_json` that
# `json` itself wraps, so it is used directly here. Anything out of the ordinary (a BOM, UTF-16,
# a syntax error) goes to the real `json`, so errors and their messages are json's own;
# tests/test_hookcmd.py checks both functions against `json` on generated documents.


class _ScanContext:
    """The attributes `_json.make_scanner` reads from a `json.JSONDecoder` (CPython
    Modules/_json.c, scanner_new), with JSONDecoder's defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}.__getitem__


# typeshed types the context as `make_scanner` itself; the C code only reads these attributes.
_scan = _json.make_scanner(_ScanContext())  # type: ignore[arg-type]
_JSON_SPACE = " \t\n\r"


def _loads(data: bytes) -> Any:
    """`json.loads(data)`: same result, same exceptions."""
    if data[:4].count(0) or data[:3] == b"\xef\xbb\xbf" or data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return _json_module().loads(data)  # not plain UTF-8: json's encoding detection
    text = data.decode("utf-8", "surrogatepass")  # what json.loads does with UTF-8 bytes
    start = len(text) - len(text.lstrip(_JSON_SPACE))
    try:
        value, end = _scan(text, start)
    except (StopIteration, ValueError, SystemError):
        # A syntax error. The scanner raises json.decoder.JSONDecodeError only once json.decoder
        # is loaded (else a SystemError, CPython Modules/_json.c raise_errmsg), so json parses
        # again: its error, its message.
        return _json_module().loads(data)
    if text[end:].strip(_JSON_SPACE):
        return _json_module().loads(data)  # raises json's "Extra data"
    return value


def _json_module() -> Any:
    import json

    return json


_encode_str = _json.encode_basestring  # ensure_ascii=False
_FLOAT_NAMES = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _dumps(value: Any) -> str:
    """`json.dumps(value, indent=2, ensure_ascii=False)` for what JSON parsing produces."""
    parts: list[str] = []
    try:
        _dump_into(value, parts, "\n")
    except _NotPlain:
        return str(_json_module().dumps(value, indent=2, ensure_ascii=False))
    return "".join(parts)


class _NotPlain(Exception):
    """A value `_dump_into` leaves to `json` (a non-string key, a type JSON has no word for)."""


def _dump_into(value: Any, parts: list[str], newline: str) -> None:
    """json.encoder's `_make_iterencode` with indent 2 and separators (',', ': ')."""
    if isinstance(value, str):
        parts.append(_encode_str(value))
    elif value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif type(value) is int:
        parts.append(int.__repr__(value))
    elif type(value) is float:
        text = float.__repr__(value)  # json.encoder's floatstr: nan, inf, -inf get JSON's names
        parts.append(_FLOAT_NAMES.get(text, text))
    elif type(value) is dict:
        if not value:
            parts.append("{}")
            return
        inner = newline + "  "
        parts.append("{")
        first = True
        for key, item in value.items():
            if type(key) is not str:
                raise _NotPlain
            parts.append(inner if first else "," + inner)
            first = False
            parts.append(_encode_str(key))
            parts.append(": ")
            _dump_into(item, parts, inner)
        parts.append(newline + "}")
    elif type(value) is list:
        if not value:
            parts.append("[]")
            return
        inner = newline + "  "
        parts.append("[")
        for i, item in enumerate(value):
            parts.append("," + inner if i else inner)
            _dump_into(item, parts, inner)
        parts.append(newline + "]")
    else:
        raise _NotPlain


class HookError(ClientError):
    """Something the user may want to know about, written to the hook log."""


def _log(message: str, agent: str = "") -> None:
    """Append one line to the hook log; never raises (there is nowhere left to report to)."""
    try:
        base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
        directory = os.path.join(base, "tracekeeper")
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, "hook.log")
        try:
            if os.stat(path).st_size > _LOG_MAX_BYTES:
                os.replace(path, path + ".1")
        except OSError:
            pass
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        line = f"{stamp} pid={os.getpid()} hook {agent or '?'}: {message}".replace("\n", " ")[:2000]
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode("utf-8", "replace"))
        finally:
            os.close(fd)
    except Exception:  # noqa: S110 - the log is the last resort
        pass


def _str(value: Any) -> str | None:
    """A non-empty string field, else None (hostile payloads send numbers, lists, nulls)."""
    return value if isinstance(value, str) and value else None


def _event(payload: dict[str, Any], fallback: str) -> str:
    """The hook event: Claude/Codex/Gemini/Cursor send it; Copilot's is passed as an argument."""
    event = _str(payload.get("hook_event_name")) or _str(payload.get("hookEventName")) or fallback
    return event[:64]


def detect_agent(payload: dict[str, Any], arg: str) -> str:
    """Which agent sent this payload: by its fields first, the argument only to break ties.

    The argument cannot be trusted alone: Cursor also runs the hooks in ~/.claude/settings.json,
    so `tracekeeper hook claude` may well receive a Cursor payload.
    """
    if any(key in payload for key in _CURSOR_KEYS):
        return "cursor"
    if "sessionId" in payload and "session_id" not in payload:
        return "copilot"
    by_path = _agent_from_transcript(_str(payload.get("transcript_path")) or "")
    if by_path:
        return by_path
    event = _str(payload.get("hook_event_name")) or ""
    if event in _GEMINI_EVENTS or ("timestamp" in payload and "session_id" in payload):
        return "gemini"
    if "turn_id" in payload:
        return "codex"
    if arg in AGENTS:
        return arg
    if event in _GEMINI_EVENTS_ANY:
        return "gemini"
    if "model" in payload and "permission_mode" in payload and event != "SessionStart":
        return "codex"  # Codex sends `model` on every event, Claude only on SessionStart
    name = _safe_name(arg).strip(".-")[:64]
    return name or ("claude" if "session_id" in payload else "agent")


def _agent_from_transcript(path: str) -> str | None:
    """The agent whose transcript directory (default or relocated) holds `path`."""
    if not path:
        return None
    roots = (
        ("codex", os.environ.get("CODEX_HOME"), "/.codex/"),
        ("claude", os.environ.get("CLAUDE_CONFIG_DIR"), "/.claude/projects/"),
        ("gemini", None, "/.gemini/tmp/"),
        ("cursor", os.environ.get("CURSOR_CONFIG_DIR"), "/.cursor/projects/"),
        ("copilot", os.environ.get("COPILOT_HOME"), "/.copilot/session-state/"),
        ("pi", os.environ.get("PI_CODING_AGENT_DIR"), "/.pi/agent/sessions/"),
    )
    for agent, relocated, marker in roots:
        if relocated and path.startswith(relocated.rstrip("/") + "/"):
            return agent
        if marker in path:
            return agent
    return None


def _find_cwd(payload: dict[str, Any]) -> str:
    """The directory the session works in, as an absolute path."""
    cwd = _str(payload.get("cwd"))
    if cwd is None:
        roots = payload.get("workspace_roots")
        if isinstance(roots, list) and roots:
            cwd = _str(roots[0])
    if cwd is None:
        cwd = _str(os.environ.get("GEMINI_CWD")) or _str(os.environ.get("CLAUDE_PROJECT_DIR"))
    if cwd is None:
        cwd = os.getcwd()
    if "\0" in cwd:
        raise HookError("the payload's cwd contains a NUL byte")
    return os.path.abspath(os.path.expanduser(cwd))


def active_file_for(cwd: str) -> str | None:
    """`git -C <cwd> rev-parse --git-path hf-traces-active.json` as an absolute path; None
    outside a repository (or when git is missing): then the hook has nothing to do."""
    if not os.path.isdir(cwd):
        return None
    git_dir = _find_git_dir(cwd)
    if git_dir is not None:
        return os.path.join(git_dir, ACTIVE_FILE)
    result = _run_git(["git", "-C", cwd, "rev-parse", "--git-path", ACTIVE_FILE])
    if result is None:
        return None
    out = result.decode("utf-8", "surrogateescape").rstrip("\n")
    if not out or "\n" in out:
        return None
    return os.path.normpath(os.path.join(cwd, out))


def _find_git_dir(cwd: str) -> str | None:
    """The repository's git dir found the way git's discovery finds it, without starting git
    (that start is a tenth of this command's time); None when git itself must decide.

    Handled here: a `.git` directory, or a `.git` file saying `gitdir: <path>` (linked
    worktrees, submodules), in `cwd` or a parent on the same file system, owned by us (git's
    safe.directory check). Everything else goes to git: GIT_CEILING_DIRECTORIES or
    GIT_DISCOVERY_ACROSS_FILESYSTEM set, a parent that is itself a bare repository, a `.git`
    that is not a valid git dir (git walks past it), a foreign owner, no repository found.
    Inherited GIT_DIR and friends are ignored, as `clean_env` drops them for git (git/git
    setup.c, setup_git_directory_gently_1, is the order followed).
    """
    env = os.environ
    if env.get("GIT_CEILING_DIRECTORIES") or "GIT_DISCOVERY_ACROSS_FILESYSTEM" in env:
        return None
    uid = os.geteuid()
    directory = cwd
    try:
        device = os.stat(directory).st_dev
        while True:
            dot_git = os.path.join(directory, ".git")
            try:
                st = os.stat(dot_git)
            except OSError:
                st = None
            if st is not None:
                if st.st_uid != uid:
                    return None
                git_dir = dot_git if stat.S_ISDIR(st.st_mode) else _read_gitfile(dot_git, directory)
                if git_dir is None:
                    return None
                if os.stat(directory).st_uid != uid or os.stat(git_dir).st_uid != uid:
                    return None
                return git_dir if _is_git_dir(git_dir) else None
            if os.path.exists(os.path.join(directory, "HEAD")):
                return None  # maybe a bare repository: git's call
            parent = os.path.dirname(directory)
            if parent == directory or os.stat(parent).st_dev != device:
                return None
            directory = parent
    except OSError:
        return None


def _read_gitfile(path: str, directory: str) -> str | None:
    """The target of a `gitdir: <path>` file, relative to the file's directory (git/git
    setup.c, read_gitfile_gently); None if it is anything else."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(4097)
    except OSError:
        return None
    text = data.decode("utf-8", "surrogateescape").rstrip("\r\n")
    if len(data) > 4096 or not text.startswith("gitdir: ") or "\n" in text or "\0" in text:
        return None
    target = text[len("gitdir: ") :]
    return os.path.normpath(os.path.join(directory, target)) if target else None


def _is_git_dir(path: str) -> bool:
    """git's is_git_directory, for the layouts it accepts without configuration: HEAD, and
    objects/ and refs/ here or in the common dir a linked worktree's `commondir` names."""
    if not os.path.isfile(os.path.join(path, "HEAD")):
        return False
    common = path
    try:
        with open(os.path.join(path, "commondir"), "rb") as handle:
            line = handle.read(4097).decode("utf-8", "surrogateescape").rstrip("\r\n")
        if not line or "\n" in line or "\0" in line:
            return False
        common = os.path.normpath(os.path.join(path, line))
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return os.path.isdir(os.path.join(common, "objects")) and os.path.isdir(os.path.join(common, "refs"))


def _run_git(argv: list[str]) -> bytes | None:
    """Run git and return its stdout if it succeeded, within _GIT_TIMEOUT.

    posix_spawn rather than `subprocess`, whose import (threading, selectors, locale, signal
    handling) costs about as much as the rest of this module; see bench/bench_hook.py.
    """
    import select  # only when the walk in _find_git_dir could not decide

    devnull = os.open(os.devnull, os.O_RDWR)
    read_end, write_end = os.pipe()  # both close-on-exec; DUP2 makes the child's fd 1 inheritable
    try:
        try:
            pid = os.posix_spawnp(
                argv[0],
                argv,
                clean_env(),
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, devnull, 0),
                    (os.POSIX_SPAWN_DUP2, write_end, 1),
                    (os.POSIX_SPAWN_DUP2, devnull, 2),
                ],
            )
        except OSError:
            return None  # no git on PATH
        os.close(write_end)
        write_end = -1
        chunks: list[bytes] = []
        deadline = time.monotonic() + _GIT_TIMEOUT
        timed_out = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([read_end], [], [], left)[0]:
                timed_out = True
                break
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        if timed_out:
            os.kill(pid, 9)  # SIGKILL; the `signal` module is not worth importing for it
        _, status = os.waitpid(pid, 0)
        if timed_out or not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
            return None
        return b"".join(chunks)
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
        os.close(devnull)


def _session_id(payload: dict[str, Any], agent: str) -> str | None:
    keys = ("conversation_id", "session_id") if agent == "cursor" else ("session_id", "sessionId", "conversation_id")
    for key in keys:
        value = payload.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and value.strip() and len(value) <= _MAX_ID_CHARS and "\0" not in value:
            return value.strip()
    return None


def _home() -> str:
    return os.path.expanduser("~")


def _slug(path: str) -> str:
    """Claude Code's ~/.claude/projects/<slug>: every non-alphanumeric character becomes '-'."""
    return "".join(c if c in _ALNUM else "-" for c in path)


def _cursor_transcript(payload: dict[str, Any], cwd: str, session_id: str) -> str:
    """Cursor CLI sends `transcript_path: null`; the file is projects/<slug>/agent-transcripts/.

    The slug is the workspace root without its leading '/', non-alphanumerics turned into '-'
    (tracekeeperd.agents.paths.cursor_project_slug). The IDE nests `<id>/<id>.jsonl` and creates
    the directory first, older builds wrote `.txt`; the CLI's flat `.jsonl` is the default.
    """
    roots = payload.get("workspace_roots")
    root = _str(roots[0]) if isinstance(roots, list) and roots else None
    root = os.path.abspath(root) if root else cwd
    base = os.environ.get("CURSOR_CONFIG_DIR") or os.path.join(_home(), ".cursor")
    directory = os.path.join(base, "projects", _slug(root.lstrip("/")), "agent-transcripts")
    flat = os.path.join(directory, session_id + ".jsonl")
    nested_dir = os.path.join(directory, session_id)
    if os.path.exists(flat):
        return flat
    if os.path.isdir(nested_dir):
        return os.path.join(nested_dir, session_id + ".jsonl")
    legacy = os.path.join(directory, session_id + ".txt")
    return legacy if os.path.exists(legacy) else flat


def _claude_transcript(cwd: str, session_id: str) -> str:
    """~/.claude/projects/<slug>/<id>.jsonl; slugs over 200 characters carry a hash suffix we
    cannot compute, so those are looked up by prefix."""
    base = os.path.join(os.environ.get("CLAUDE_CONFIG_DIR") or os.path.join(_home(), ".claude"), "projects")
    slug = _slug(cwd)
    if len(slug) > 200:
        import glob

        pattern = os.path.join(glob.escape(base), glob.escape(slug[:200]) + "-*", session_id + ".jsonl")
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return os.path.join(base, slug, session_id + ".jsonl")


def _codex_transcript(session_id: str) -> str:
    """A Codex payload without `transcript_path` (not null: absent): look in the last two days'
    rollout directories (named in local time), else name where today's would be."""
    import glob

    base = os.path.join(os.environ.get("CODEX_HOME") or os.path.join(_home(), ".codex"), "sessions")
    now = time.time()
    for when in (now, now - 86400):
        day = time.strftime("%Y/%m/%d", time.localtime(when))
        found = glob.glob(os.path.join(glob.escape(os.path.join(base, day)), f"rollout-*{session_id}.jsonl*"))
        if found:
            return sorted(found)[-1]
    found = glob.glob(os.path.join(glob.escape(base), f"rollout-*{session_id}.jsonl*"))
    if found:
        return sorted(found)[-1]
    return os.path.join(base, time.strftime("%Y/%m/%d"), f"rollout-{session_id}.jsonl")


def _gemini_transcript(session_id: str) -> str:
    """~/.gemini/tmp/<project>/chats/session-<time>-<first 8 chars of the id>.json[l]."""
    import glob

    base = os.path.join(_home(), ".gemini", "tmp")
    found = glob.glob(os.path.join(glob.escape(base), "*", "chats", f"session-*-{session_id[:8]}.json*"))
    if found:
        return sorted(found)[-1]
    return os.path.join(base, "unknown", "chats", f"session-{session_id[:8]}.jsonl")


def find_transcript(payload: dict[str, Any], agent: str, cwd: str, session_id: str | None) -> str | None:
    """The transcript's absolute path; None when the agent says there is none.

    A path in the payload wins. Codex `--ephemeral` sends `transcript_path: null` and Gemini
    sends "" with recording off: those sessions have nothing to link, so nothing is recorded.
    Otherwise the path is derived from the agent's layout even if the file does not exist yet
    (Codex and Cursor create it lazily), so the daemon can report a transcript that never came.
    """
    for key in ("transcript_path", "transcriptPath", "trace_file"):
        value = payload.get(key)
        if isinstance(value, str) and value:
            if "\0" in value:
                raise HookError(f"the payload's {key} contains a NUL byte")
            return os.path.normpath(os.path.join(cwd, os.path.expanduser(value)))
    explicit_none = "transcript_path" in payload and payload["transcript_path"] in (None, "")
    if explicit_none and agent not in ("cursor", "copilot"):
        return None  # Cursor's CLI always sends null: its transcript is derived below
    if session_id is None:
        raise HookError("the payload names neither a transcript nor a session id")
    if not _safe_id(session_id):
        raise HookError(f"refusing to build a transcript path from the session id {session_id[:80]!r}")
    if agent == "cursor":
        return _cursor_transcript(payload, cwd, session_id)
    if agent == "copilot":
        base = os.environ.get("COPILOT_HOME") or os.path.join(_home(), ".copilot")
        return os.path.join(base, "session-state", session_id, "events.jsonl")
    if agent == "codex":
        return _codex_transcript(session_id)
    if agent == "gemini":
        return _gemini_transcript(session_id)
    return _claude_transcript(cwd, session_id)


def _kept_fields(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload's small metadata fields (event, model, source, permission mode, ...)."""
    kept: dict[str, Any] = {}
    for key, value in payload.items():
        if len(kept) >= _MAX_FIELDS:
            break
        if key in _DROP_KEYS or len(key) > 64:
            continue
        if isinstance(value, str):
            if len(value) <= _MAX_FIELD_CHARS:
                kept[key] = value
        elif value is None or isinstance(value, bool | int | float):
            kept[key] = value
        elif key == "workspace_roots" and isinstance(value, list):
            kept[key] = [v for v in value[:16] if isinstance(v, str) and len(v) <= 4096]
    return kept


def build_entry(
    payload: dict[str, Any], arg: str, event_arg: str = "", now: float | None = None
) -> dict[str, Any] | None:
    """The active-file entry for this payload, or None when there is nothing to record."""
    agent = detect_agent(payload, arg)
    cwd = _find_cwd(payload)
    session_id = _session_id(payload, agent)
    transcript = find_transcript(payload, agent, cwd, session_id)
    if transcript is None:
        return None
    if session_id is None:
        session_id = _id_from_path(transcript)
    now = time.time() if now is None else now
    event = _event(payload, event_arg)
    entry: dict[str, Any] = {
        "agent": agent,
        "session_id": session_id,
        "transcript_path": transcript,
        "cwd": cwd,
        "seen_at": now,
    }
    if event in _END_EVENTS:
        entry["ended_at"] = now
    if event:
        entry["hook_event_name"] = event
    for key, value in _kept_fields(payload).items():
        if key not in entry and key != "ended_at":
            entry[key] = value
    return entry


_UUID_DASHES = (8, 13, 18, 23)


def _is_uuid(text: str) -> bool:
    """`[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}` in full."""
    if len(text) != 36:
        return False
    return all((c == "-") if i in _UUID_DASHES else (c in _HEX) for i, c in enumerate(text))


def _last_uuid(name: str) -> str | None:
    """The last of `re.findall` over the uuid pattern: leftmost matches, not overlapping."""
    found = None
    i = 0
    while i + 36 <= len(name):
        if _is_uuid(name[i : i + 36]):
            found = name[i : i + 36]
            i += 36
        else:
            i += 1
    return found


def _id_from_path(path: str) -> str:
    """Like tracekeeperd.agents.paths.session_id_from_path: the last uuid in the name, else
    a uuid-named parent (Copilot's events.jsonl), else the stem."""
    name = os.path.basename(path)
    found = _last_uuid(name)
    if found:
        return found
    parent = os.path.basename(os.path.dirname(path))
    if _is_uuid(parent):
        return parent
    for suffix in (".zst", ".jsonl", ".json", ".txt"):
        name = name.removesuffix(suffix)
    return name


_PATH_KEYS = ("trace_file", "transcript_path", "transcriptPath")  # tracekeeperd.active's order


def _key(entry: dict[str, Any]) -> tuple[str, str]:
    """(agent, session id) of an entry, whoever wrote it (the recipe writes neither field)."""
    path = next((entry[k] for k in _PATH_KEYS if _str(entry.get(k))), "")
    agent = _str(entry.get("agent")) or _agent_from_transcript(path) or detect_agent(entry, "")
    session = _session_id(entry, agent) or (_id_from_path(path) if path else "")
    return agent, session


def merge(existing: bytes | None, entry: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The new file content and, if the old content had to be thrown away, why.

    Every other session is kept (two agents in one worktree, or a session resumed after an
    earlier one); the entry with the same (agent, session id) is replaced. The recipe's single
    payload object and a bare JSON list are converted, keeping their sessions.
    """
    doc: dict[str, Any] = {}
    sessions: list[Any] = []
    problem: str | None = None
    if existing is not None and existing.strip():
        try:
            old = _loads(existing)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            old, problem = None, f"not JSON ({str(exc)[:120]})"
        if isinstance(old, dict) and "sessions" in old:
            if isinstance(old["sessions"], list):
                doc = {k: v for k, v in old.items() if k not in ("version", "sessions")}
                sessions = old["sessions"]
            else:
                problem = "'sessions' is not a list"
        elif isinstance(old, dict):
            sessions = [old]  # the recipe's `cat > hf-traces-active.json`: one payload
        elif isinstance(old, list):
            sessions = old
        elif problem is None:
            problem = f"a JSON {type(old).__name__}, not an object"
    kept: list[dict[str, Any]] = []
    mine = _key(entry)
    for old_entry in sessions:
        if not isinstance(old_entry, dict):
            problem = problem or "a session that is not an object was dropped"
            continue
        if not any(key in old_entry for key in _PATH_KEYS):
            # tracekeeperd rejects the whole file for one such entry (active.parse).
            problem = problem or "a session naming no transcript was dropped"
            continue
        if _key(old_entry) != mine:
            kept.append(old_entry)
    kept.append(entry)
    if len(kept) > _MAX_SESSIONS:
        kept.sort(key=_seen_at)
        kept = kept[-_MAX_SESSIONS:]
    return {"version": FORMAT_VERSION, **doc, "sessions": kept}, problem


def _seen_at(entry: dict[str, Any]) -> float:
    value = entry.get("seen_at")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def write_active(path: str, entry: dict[str, Any], agent: str) -> None:
    """Merge `entry` into the active file under a lock, then replace the file atomically.

    No fsync: the file is short-lived state, and a torn file after a power cut is treated like
    any corrupt one (replaced on the next hook). A lock that stays busy past _LOCK_WAIT is
    logged and the update skipped, rather than holding the agent up.
    """
    lock_fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + _LOCK_WAIT
        while True:
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise HookError(f"{path}.lock stayed locked for {_LOCK_WAIT:g}s; session not recorded") from None
                time.sleep(0.005)
        doc, problem = merge(_read(path), entry)
        if problem:
            _log(f"dropped unusable content of {path}: {problem}", agent)
        data = _dumps(doc).encode("utf-8", "surrogateescape") + b"\n"
        tmp = f"{path}.tmp.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        try:
            os.replace(tmp, path)
        except OSError:
            os.unlink(tmp)
            raise
    finally:
        os.close(lock_fd)  # closing releases the flock


def _cursor_reply(event: str) -> str:
    return '{"continue": true}' if event in _SUBMIT_EVENTS else "{}"


def _read_stdin() -> bytes:
    return sys.stdin.buffer.read() if sys.stdin is not None else b""


def run(state: dict[str, str]) -> None:
    """Do the work, raising on failure; `state` tells main which agent and event to answer."""
    arg = state["agent"]
    event_arg = state["event"]
    raw = _read_stdin()
    if not raw.strip():
        raise HookError("no payload on stdin")
    try:
        payload = _loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise HookError(f"the payload is not JSON ({str(exc)[:120]})") from None
    if not isinstance(payload, dict):
        raise HookError(f"the payload is a JSON {type(payload).__name__}, not an object")
    state["agent"] = detect_agent(payload, arg)
    state["event"] = _event(payload, event_arg)
    entry = build_entry(payload, arg, event_arg)
    if entry is None:
        return  # the agent keeps no transcript for this session
    path = active_file_for(entry["cwd"])
    if path is None:
        return  # not in a git repository: nothing to link to
    write_active(path, entry, state["agent"])


USAGE = """usage: tracekeeper hook <agent> [event] < payload.json

Run by coding agents' hooks (see `tracekeeper agents install`), not by hand: records the agent
session described by the JSON payload on stdin in the repository of the payload's cwd.
Agents: codex, claude, gemini, cursor, copilot. Problems are logged to
$XDG_STATE_HOME/tracekeeper/hook.log (default ~/.local/state/tracekeeper/hook.log).
"""


def main(argv: list[str]) -> int:
    """Entry point: always 0, stdout empty or Cursor's JSON, problems in the hook log."""
    arg = argv[0].strip().lower()[:64] if argv else ""
    state = {"agent": arg, "event": argv[1][:64] if len(argv) > 1 else ""}
    if arg in ("-h", "--help") or sys.stdin is None or sys.stdin.isatty():
        sys.stderr.write(USAGE)  # someone at a terminal; agents always pipe a payload
        return 0
    try:
        run(state)
    except HookError as exc:
        _log(str(exc), state["agent"])
    except BaseException as exc:  # a hook must never fail the agent, whatever happened
        _log(f"unexpected {type(exc).__name__}: {exc}", state["agent"])
    if state["agent"] == "cursor" or arg == "cursor":
        try:
            sys.stdout.write(_cursor_reply(state["event"]) + "\n")
            sys.stdout.flush()
        except Exception as exc:
            _log(f"cannot answer Cursor on stdout: {exc}", state["agent"])
    return 0
