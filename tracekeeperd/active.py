"""Which agent sessions a commit belongs to, from `hf-traces-active.json`.

The file is whatever an agent hook wrote. The recipe's hook does `cat > ...` of the raw hook
payload (one object); newer writers keep several sessions (`{"sessions": [payload, ...]}`, or
a JSON list). Every payload names its transcript as `trace_file`, `transcript_path` or
`transcriptPath`, relative paths being relative to the payload's `cwd`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .agents.paths import recipe_agent, recipe_session_id
from .errors import ActiveFileError

ACTIVE_FILE = "hf-traces-active.json"
_PATH_KEYS = ("trace_file", "transcript_path", "transcriptPath")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: Ids that are their own session id: safe characters, not starting or ending with `.` or `-`,
#: and without `--`, which only the mapped form below contains (so the two never meet).
_SAFE_ID = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9._]|-(?!-))*(?<![.-])")
MAX_ID = 128
#: Hex digits of sha256(raw id) that keep a cleaned or cut id apart from every other id.
_ID_HASH = 16

#: Limits on what the file may be. The hook writes a few hundred bytes per session and keeps at
#: most 64 sessions (client/tracekeeper/hookcmd.py, _MAX_SESSIONS); anything far beyond that is
#: not a hook's file, and must become a reason in `status`, not a stuck commit or a crash.
MAX_BYTES = 1 << 20
MAX_SESSIONS = 64
#: Longer than any path the kernel accepts (PATH_MAX is 4096 on Linux, 1024 on macOS).
MAX_PATH_CHARS = 4096


@dataclass(frozen=True, kw_only=True)
class ActiveSession:
    agent: str
    #: The id as the agent gave it (or the file name's, without one).
    session_raw: str
    transcript: Path
    #: When an agent hook last saw the session, and when it ended (tracekeeper's own hook
    #: writes these; the recipe's raw payload has neither, and is always linked).
    seen_at: float | None = None
    ended_at: float | None = None

    @property
    def session_id(self) -> str:
        """`session_key(session_raw)`: the queue's key, the note's `session`, the remote file's
        name. Derived, so it can never disagree with the raw id it stands for."""
        return session_key(self.session_raw)


def safe_component(value: str) -> str:
    """A name usable as one remote path component: a hostile `../` cannot climb out.

    Not one to one (`a/b` and `a-b` both give `a-b`): fine for a label next to a hash, as in
    the repository key; session ids go through `session_key`.
    """
    cleaned = _UNSAFE.sub("-", value).strip(".-")
    return cleaned[:MAX_ID]


def session_key(raw: str) -> str:
    """The session id for a raw id: the raw id itself when it is already safe, else its
    cleaned, cut form plus `--` and a hash of the raw id.

    One to one (up to a 64-bit hash collision), so two sessions never share a queue key or a
    remote file: `team/<uuid>` and `team-<uuid>`, or two long ids that differ after their 128th
    character, stay apart. Ordinary ids (uuids) map to themselves, so the recipe's
    `<repo>/sessions/<agent>-<id>.jsonl`, existing notes and existing queue rows are unchanged.
    Mapped ids always contain `--` and ids that map to themselves never do.
    """
    if len(raw) <= MAX_ID and _SAFE_ID.fullmatch(raw):
        return raw
    digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:_ID_HASH]
    stem = _UNSAFE.sub("-", raw).strip(".-")[: MAX_ID - _ID_HASH - 2].rstrip(".-") or "id"
    return f"{stem}--{digest}"


_SAFE_AGENT = re.compile(r"[A-Za-z0-9_]{1,32}")
_UNSAFE_AGENT = re.compile(r"[^A-Za-z0-9_]+")


def agent_key(raw: str) -> str:
    """The agent name in a remote path: itself when plain, else its cleaned form, `.` and a hash.

    The remote file is `<agent>-<session>.jsonl`, and session keys contain dashes (uuids), so an
    agent name with a dash would make two (agent, session) pairs share a file (`a-b` + `c` and
    `a` + `b-c`). Plain names (every agent tracekeeper knows) have no dash and map to
    themselves; any other name maps to one with a `.`, which plain names never have, and no dash.
    """
    if _SAFE_AGENT.fullmatch(raw):
        return raw
    digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    stem = _UNSAFE_AGENT.sub("_", raw).strip("_")[:23] or "agent"
    return f"{stem}.{digest}"


def _path_text(name: str, value: str) -> str:
    if "\0" in value:
        raise ActiveFileError(f"{ACTIVE_FILE}: the {name} contains a NUL character")
    if len(value) > MAX_PATH_CHARS:
        raise ActiveFileError(f"{ACTIVE_FILE}: the {name} is longer than {MAX_PATH_CHARS} characters")
    return value


#: The longest raw id kept; a longer one is cut and ends with a hash of the whole.
MAX_RAW_ID = 1024


def _raw_id(value: object) -> str:
    """An id from a string or an integer only (str() of a nested value can recurse without end),
    at most `MAX_RAW_ID` characters; `session_key`/`agent_key` make it safe and one to one.

    A longer id keeps its start and ends with `--` and a hash of all of it: two ids that differ
    only past the cut must not become one session, one queue key and one remote file."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return ""
    text = str(value)
    if len(text) <= MAX_RAW_ID:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:_ID_HASH]
    return f"{text[: MAX_RAW_ID - _ID_HASH - 2]}--{digest}"


def _session(payload: dict[str, Any], base: Path) -> ActiveSession | None:
    # The first key with a value wins: some writers send `trace_file: null` next to a real path.
    raw_path = next((payload[k] for k in _PATH_KEYS if payload.get(k) not in (None, "")), None)
    if raw_path is None or raw_path == "":
        # Codex sends `transcript_path: null` for `--ephemeral` sessions: nothing to keep.
        return None
    if not isinstance(raw_path, str):
        raise ActiveFileError(f"the transcript path must be a string, got {type(raw_path).__name__}")
    cwd = payload.get("cwd")
    root = Path(_path_text("cwd", cwd)) if isinstance(cwd, str) and cwd.startswith("/") else base
    transcript = Path(_path_text("transcript path", raw_path)).expanduser()
    if not transcript.is_absolute():
        transcript = root / transcript
    raw_id = _raw_id(payload.get("session_id") or payload.get("sessionId"))
    raw_id = raw_id or recipe_session_id(transcript) or "session"
    agent_raw = _raw_id(payload.get("agent"))
    # A name with no letter or digit at all says nothing: fall back to the path's agent.
    agent = agent_key(agent_raw) if _UNSAFE_AGENT.sub("", agent_raw) else ""
    return ActiveSession(
        agent=agent or recipe_agent(transcript),
        transcript=transcript,
        seen_at=_epoch(payload.get("seen_at")),
        ended_at=_epoch(payload.get("ended_at")),
        session_raw=raw_id,
    )


def _epoch(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def read(path: Path) -> bytes | None:
    """The file's bytes, at most MAX_BYTES + 1 of them (enough for `parse` to say it is too large);
    None when there is none.

    Opened without blocking and checked to be a regular file first: a FIFO in its place would
    otherwise hang the reader until some writer came, and a device could be endless.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a FIFO (or socket) nobody writes to
            raise ActiveFileError(f"{ACTIVE_FILE} is not a regular file") from None
        raise ActiveFileError(f"cannot read {ACTIVE_FILE}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ActiveFileError(f"{ACTIVE_FILE} is not a regular file")
        chunks: list[bytes] = []
        left = MAX_BYTES + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise ActiveFileError(f"cannot read {ACTIVE_FILE}: {exc.strerror}") from None
    finally:
        os.close(fd)


def parse(raw: bytes, *, base: Path) -> list[ActiveSession]:
    """Sessions named by an active file; `base` resolves relative paths when `cwd` is absent.

    Raises ActiveFileError for anything a user should hear about (not JSON, too large or too
    deep, wrong shape, no transcript key at all); a payload that deliberately has no transcript
    yields nothing.
    """
    if len(raw) > MAX_BYTES:
        raise ActiveFileError(f"{ACTIVE_FILE} is larger than {MAX_BYTES >> 20} MiB; no agent hook writes that")
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ActiveFileError(f"{ACTIVE_FILE} is not valid JSON ({exc})") from None
    except RecursionError:
        # The C decoder guards its recursion (Py_EnterRecursiveCall): a deep document is refused
        # with this, long before the stack is at risk.
        raise ActiveFileError(f"{ACTIVE_FILE} is nested too deeply to be an agent hook's payload") from None
    if isinstance(doc, dict) and isinstance(doc.get("sessions"), list):
        payloads: list[Any] = doc["sessions"]
    elif isinstance(doc, list):
        payloads = doc
    elif isinstance(doc, dict):
        payloads = [doc]
    else:
        raise ActiveFileError(f"{ACTIVE_FILE} must hold a JSON object, got {type(doc).__name__}")
    if len(payloads) > MAX_SESSIONS:
        raise ActiveFileError(
            f"{ACTIVE_FILE} names more than {MAX_SESSIONS} sessions ({len(payloads)}); no agent hook keeps that many"
        )
    sessions: list[ActiveSession] = []
    seen: set[tuple[str, str]] = set()
    for payload in payloads:
        if not isinstance(payload, dict):
            raise ActiveFileError(f"{ACTIVE_FILE}: every session must be a JSON object")
        if not any(key in payload for key in _PATH_KEYS):
            raise ActiveFileError(f"{ACTIVE_FILE} names no transcript (expected one of {', '.join(_PATH_KEYS)})")
        session = _session(payload, base)
        if session and (session.agent, session.session_id) not in seen:
            seen.add((session.agent, session.session_id))
            sessions.append(session)
    return sessions
