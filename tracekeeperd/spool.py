"""The spool: how a commit reaches the daemon even when the daemon is not running.

The post-commit hook (POSIX sh, no Python) always writes one small file per commit into the
spool directory, then (unless the daemon watches the spool) pokes the daemon over the socket
in the background. Whoever ingests it (the socket handler, the directory watcher on
close-after-write, or the start-up and periodic scans) persists the job first and deletes the
file second, so a crash in between only means a duplicate the queue ignores. The hook writes
the final name directly (a rename costs a process); a scan that meets a young file it cannot
parse leaves it alone, since the hook may still be writing it.

Format (text, one `key value` per line, then the raw bytes of hf-traces-active.json if the
repository had one at commit time; the file's mtime is the commit time):

    tracekeeper-spool 1
    sha <hex>
    git-dir <absolute path>
    work-tree <absolute path or empty>
    made-by <commit|rebase|cherry-pick SHA>      (optional; older hooks omit it)
    active <absent|present|live>
    --
    <hf-traces-active.json bytes, with `present`>

`live` means the repository had an active file and the hook, seeing that a daemon watches the
spool and will read it within milliseconds, did not copy it.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from . import active as active_mod

MAGIC = b"tracekeeper-spool 1"
SUFFIX = ".commit"
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


class SpoolError(ValueError):
    """A spool file that cannot be understood; it is moved aside, never silently dropped."""


@dataclass(frozen=True)
class CommitEvent:
    sha: str
    git_dir: Path
    work_tree: Path | None
    committed_at: float
    #: Raw hf-traces-active.json at commit time; None when the repo had none.
    active: bytes | None
    spool_file: Path | None = None
    #: The repo had an active file that the hook left for the daemon to read now.
    active_live: bool = False
    #: "commit", "rebase" (re-created by a rebase) or "cherry-pick".
    made_by: str = "commit"
    #: For a cherry-pick: the commit it copies.
    copy_of: str | None = None


REWRITE_MAGIC = b"tracekeeper-rewrite 1"
REWRITE_SUFFIX = ".rewrite"


@dataclass(frozen=True)
class RewriteEvent:
    """What git's post-rewrite hook reported: commits replaced by amend or rebase."""

    git_dir: Path
    command: str  # "amend" or "rebase"
    pairs: list[tuple[str, str]]
    spool_file: Path | None = None


def parse_rewrite(data: bytes, path: Path | None = None) -> RewriteEvent:
    head, sep, body = data.partition(b"\n--\n")
    if not sep:
        raise SpoolError("missing the '--' separator line")
    lines = head.split(b"\n")
    if lines[0].strip() != REWRITE_MAGIC:
        raise SpoolError("not a tracekeeper rewrite file")
    fields = dict(raw.decode("utf-8", errors="surrogateescape").partition(" ")[::2] for raw in lines[1:])
    git_dir = fields.get("git-dir", "")
    if not os.path.isabs(git_dir):
        raise SpoolError(f"git dir {git_dir!r} is not an absolute path")
    pairs = []
    for line in body.decode(errors="replace").splitlines():
        parts = line.split()
        if len(parts) >= 2 and valid_sha(parts[0]) and valid_sha(parts[1]):
            pairs.append((parts[0], parts[1]))
    return RewriteEvent(git_dir=Path(git_dir), command=fields.get("command", "").strip(), pairs=pairs, spool_file=path)


def read_rewrite(path: Path, now: float | None = None) -> RewriteEvent:
    data, _, young = _load(path, now, MAX_REWRITE_FILE)
    try:
        return parse_rewrite(data, path)
    except SpoolError as exc:
        if young:
            raise SpoolIncomplete(str(exc)) from None
        raise


def valid_sha(value: str) -> bool:
    return bool(_SHA.match(value))


def parse(data: bytes, *, mtime: float, path: Path | None = None) -> CommitEvent:
    head, sep, payload = data.partition(b"\n--\n")
    if not sep:
        raise SpoolError("missing the '--' separator line")
    lines = head.split(b"\n")
    if lines[0].strip() != MAGIC:
        raise SpoolError("not a tracekeeper spool file")
    fields: dict[str, str] = {}
    for raw in lines[1:]:
        key, _, value = raw.decode("utf-8", errors="surrogateescape").partition(" ")
        fields[key] = value
    sha = fields.get("sha", "").strip().lower()
    if not valid_sha(sha):
        raise SpoolError(f"bad commit sha {sha!r}")
    git_dir = fields.get("git-dir", "")
    if not os.path.isabs(git_dir):
        raise SpoolError(f"git dir {git_dir!r} is not an absolute path")
    work_tree = fields.get("work-tree", "")
    if "\0" in git_dir or "\0" in work_tree:
        raise SpoolError("a path contains a NUL character")
    mode = fields.get("active", "absent")
    if mode not in ("absent", "present", "live"):
        raise SpoolError(f"bad active mode {mode!r}")
    active = payload if mode == "present" else None
    made_by, _, copy_of = fields.get("made-by", "commit").strip().partition(" ")
    if made_by not in ("commit", "rebase", "cherry-pick"):
        raise SpoolError(f"bad made-by {made_by!r}")
    copy_of = copy_of.strip().lower()
    if copy_of and not valid_sha(copy_of):
        raise SpoolError(f"bad cherry-picked commit {copy_of!r}")
    return CommitEvent(
        sha=sha,
        git_dir=Path(git_dir),
        work_tree=Path(work_tree) if work_tree else None,
        committed_at=mtime,
        active=active,
        spool_file=path,
        active_live=mode == "live",
        made_by=made_by,
        copy_of=copy_of or None,
    )


#: Caps on what is read of a spool file: a commit's (a larger copied active file is read only
#: far enough for `active.parse` to refuse it, so it becomes a failed job with that reason) and
#: a rewrite's (git's old/new pairs; a rebase of a huge branch).
MAX_COMMIT_FILE = 4 * 1024 * 1024
MAX_REWRITE_FILE = 16 * 1024 * 1024
#: A spool file younger than this that does not parse may still be being written.
YOUNG = 10.0


class SpoolIncomplete(SpoolError):
    """Unparseable but young: leave it for the close event or the next scan."""


def _load(path: Path, now: float | None, limit: int, *, cut: bool = False) -> tuple[bytes, float, bool]:
    """A spool file's bytes (with `cut`, only the first `limit` + 1 of a larger one), its mtime,
    and whether it is young enough that its writer may still be busy."""
    with path.open("rb") as fh:
        mtime = os.fstat(fh.fileno()).st_mtime
        data = fh.read(limit + 1)
    if len(data) > limit and not cut:
        raise SpoolError(f"spool file is larger than {limit // (1024 * 1024)} MiB")
    return data, mtime, (time.time() if now is None else now) - mtime < YOUNG


def read(path: Path, now: float | None = None) -> CommitEvent:
    data, mtime, young = _load(path, now, MAX_COMMIT_FILE, cut=True)
    try:
        event = parse(data, mtime=mtime, path=path)
    except SpoolError as exc:
        if young:
            raise SpoolIncomplete(str(exc)) from None
        raise
    complete_enough = event.active is None or len(event.active) > active_mod.MAX_BYTES
    if young and not complete_enough and not _is_json(event.active or b""):
        # The hook's `cat` of the active file may still be running: look again later. (A file
        # that stays broken is handled, and reported, once it is no longer young.)
        raise SpoolIncomplete("the copied active file is not complete yet")
    return event


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    except RecursionError:
        return True  # too deep to be read at all: complete or not, ingest reports it
    return True


def _entries(directory: Path) -> list[Path]:
    """The spool entries in `directory`, oldest first (a missing directory holds none; the
    hook's `.tmp` files are still being written and are not entries)."""
    try:
        entries = [p for p in directory.iterdir() if p.name.endswith((SUFFIX, REWRITE_SUFFIX))]
    except (FileNotFoundError, NotADirectoryError):
        return []

    def age(p: Path) -> float:
        try:
            return p.stat().st_mtime
        except FileNotFoundError:  # taken meanwhile: sorts first, and its reader finds it gone
            return 0.0

    return sorted(entries, key=lambda p: (age(p), p.name))


def pending(spool_dir: Path) -> list[Path]:
    """Complete spool files, oldest first."""
    return _entries(spool_dir)


#: The dead-letter folder, under the spool: entries that cannot be read, or that failed to be
#: ingested MAX_TRIES times, each with a `.reason` file. `tracekeeper retry` puts them back.
DEAD_LETTER = "bad"
#: Failed ingests of one entry before it is set aside (whoever delivered it: socket, watcher, scan).
MAX_TRIES = 5


def quarantine(path: Path, reason: str) -> Path:
    """Move a spool file aside with the reason next to it, for `status`, `doctor` and humans."""
    bad = path.parent / DEAD_LETTER
    bad.mkdir(exist_ok=True, mode=0o700)
    target = bad / path.name
    os.replace(path, target)
    (bad / (path.name + ".reason")).write_text(" ".join(reason.split()) + "\n")
    return target


def dead_letters(spool_dir: Path) -> list[Path]:
    """The set-aside entries, newest first."""
    return _entries(spool_dir / DEAD_LETTER)[::-1]


def dead_letter_reason(entry: Path) -> str:
    try:
        return entry.with_name(entry.name + ".reason").read_text(errors="replace").strip()
    except OSError:
        return "no reason recorded"


def revive(spool_dir: Path) -> list[str]:
    """Put every set-aside entry back in the spool (after the user fixed the cause); their names."""
    names = []
    for entry in dead_letters(spool_dir):
        try:
            os.replace(entry, spool_dir / entry.name)
        except FileNotFoundError:
            continue
        entry.with_name(entry.name + ".reason").unlink(missing_ok=True)
        names.append(entry.name)
    return names


def discard_dead_letters(spool_dir: Path) -> int:
    """Delete every set-aside entry (`tracekeeper drop --failed`): those commits stay unlinked."""
    count = 0
    for entry in dead_letters(spool_dir):
        entry.unlink(missing_ok=True)
        entry.with_name(entry.name + ".reason").unlink(missing_ok=True)
        count += 1
    return count


def write(spool_dir: Path, event: CommitEvent) -> Path:
    """Python twin of the shell hook's writer, used by `tracekeeper` commands and tests."""
    spool_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    body = b"\n".join(
        [
            MAGIC,
            b"sha " + event.sha.encode(),
            b"git-dir " + os.fsencode(event.git_dir),
            b"work-tree " + (os.fsencode(event.work_tree) if event.work_tree else b""),
            b"active " + (b"present" if event.active is not None else b"absent"),
            b"--",
            event.active or b"",
        ]
    )
    final = spool_dir / f"{event.sha}.{os.getpid()}{SUFFIX}"
    tmp = final.with_name(final.name + ".tmp")
    with tmp.open("wb") as fh:
        fh.write(body)
        fh.flush()
        os.fsync(fh.fileno())
    os.utime(tmp, (event.committed_at, event.committed_at))
    os.replace(tmp, final)
    return final
