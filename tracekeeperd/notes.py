"""The note format, and the only code that reads or writes trace notes.

Per linked session a note holds two lines:

    hf-trace: <url>
    hf-trace-meta: {"agent":...,"bytes":...,"lines":[first,last],"session":...,"sha256":...,"url":...,"v":1}

The first is the recipe's line, unchanged. The second is one JSON object with sorted keys, so
the same link always renders to the same bytes (writing it twice is a no-op) and notes merged
with `cat_sort_uniq` stay meaningful: every meta line names its own URL, so pairing does not
depend on line order. See docs/notes.md.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from . import git
from .errors import GitError, TransientError

LINK_PREFIX = "hf-trace: "
META_PREFIX = "hf-trace-meta: "
FORMAT_VERSION = 1


@dataclass(frozen=True)
class TraceLink:
    url: str
    agent: str
    session_id: str
    first_line: int
    last_line: int
    bytes: int
    sha256: str
    #: {"counts": {rule: n}, "ruleset": id}: redaction ran on what was uploaded.
    redacted: dict[str, object] | None = None

    def lines(self) -> list[str]:
        meta: dict[str, object] = {
            "agent": self.agent,
            "bytes": self.bytes,
            "lines": [self.first_line, self.last_line],
            "session": self.session_id,
            "sha256": self.sha256,
            "url": self.url,
            "v": FORMAT_VERSION,
        }
        if self.redacted is not None:
            meta["redacted"] = self.redacted
        return [LINK_PREFIX + self.url, META_PREFIX + json.dumps(meta, sort_keys=True, separators=(",", ":"))]


def parse(text: str) -> list[TraceLink]:
    """Every link in a note; lines that are not ours (or are damaged) are ignored, not fatal."""
    links: list[TraceLink] = []
    for line in text.splitlines():
        if not line.startswith(META_PREFIX):
            continue
        try:
            meta = json.loads(line[len(META_PREFIX) :])
            links.append(
                TraceLink(
                    url=str(meta["url"]),
                    agent=str(meta["agent"]),
                    session_id=str(meta["session"]),
                    first_line=int(meta["lines"][0]),
                    last_line=int(meta["lines"][1]),
                    bytes=int(meta["bytes"]),
                    sha256=str(meta["sha256"]),
                    redacted=meta.get("redacted") if isinstance(meta.get("redacted"), dict) else None,
                )
            )
        except (ValueError, KeyError, IndexError, TypeError):
            continue
    return links


def merge(existing: str, link: TraceLink) -> str | None:
    """The note text with `link` added, or None when every line of it is already there."""
    have = existing.splitlines()
    missing = [line for line in link.lines() if line not in have]
    if not missing:
        return None
    body = existing.rstrip("\n")
    return (body + "\n" if body else "") + "\n".join(missing) + "\n"


def read(git_dir: Path, ref: str, sha: str) -> str:
    proc = git.run(git_dir, ["notes", f"--ref={ref}", "show", sha], check=False)
    if proc.returncode != 0:
        return ""
    return proc.stdout.decode(errors="replace")


def _is_lock_contention(exc: BaseException) -> bool:
    return isinstance(exc, GitError) and ("lock" in exc.stderr.lower() or "cannot update ref" in exc.stderr)


#: Used only when git has no identity at all (a daemon started without the user's git config
#: or env): a notes commit needs one, and failing every retry forever would help nobody.
FALLBACK_IDENTITY = ["-c", "user.name=tracekeeper", "-c", "user.email=tracekeeper@localhost"]


def _write(git_dir: Path, ref: str, sha: str, text: str) -> None:
    args = ["notes", f"--ref={ref}", "add", "-f", "-F", "-", sha]
    try:
        git.run(git_dir, args, input=text.encode())
    except GitError as exc:
        if "tell me who you are" not in exc.stderr and "auto-detect email" not in exc.stderr:
            raise
        git.run(git_dir, [*FALLBACK_IDENTITY, *args], input=text.encode())


def _tip(git_dir: Path, ref: str) -> str | None:
    proc = git.run(git_dir, ["rev-parse", "-q", "--verify", f"{ref}^{{commit}}"], check=False)
    return proc.stdout.decode().strip() or None if proc.returncode == 0 else None


def _tip_and_parent(git_dir: Path, ref: str) -> tuple[str | None, str | None]:
    proc = git.run(git_dir, ["log", "-1", "--format=%H %P", ref, "--"], check=False)
    parts = proc.stdout.decode().split() if proc.returncode == 0 else []
    return (parts[0] if parts else None), (parts[1] if len(parts) > 1 else None)


def _read_at(git_dir: Path, notes_commit: str, sha: str) -> str:
    """The note of `sha` as it was in one notes commit (through a throwaway ref)."""
    # Under refs/notes/: `git notes --ref` prefixes anything else with it. Deleted right after.
    scratch = f"refs/notes/tracekeeper-read/{os.getpid()}-{threading.get_ident()}"
    git.run(git_dir, ["update-ref", scratch, notes_commit])
    try:
        return read(git_dir, scratch, sha)
    finally:
        git.run(git_dir, ["update-ref", "-d", scratch], check=False)


def lost_lines(git_dir: Path, ref: str, sha: str, before: str | None) -> list[str]:
    """Lines a concurrent writer had put in `sha`'s note that our last write replaced.

    `git notes add` moves the ref without checking what it pointed at, so a write based on
    what we read at `before` can drop a line another writer (a `tracekeeper pull`, a user's
    `git notes append`) added in between. Our write's notes commit has the tip it replaced as
    its parent: if that is not `before`, whatever that tip had and ours lacks was lost.
    """
    _, parent = _tip_and_parent(git_dir, ref)
    if parent == before or parent is None:
        return []
    now = read(git_dir, ref, sha).splitlines()
    return [line for line in _read_at(git_dir, parent, sha).splitlines() if line.strip() and line not in now]


def add_lines(git_dir: Path, ref: str, sha: str, lines: list[str]) -> bool:
    """Give `sha`'s note every line of `lines` it lacks, keeping what concurrent writers add."""
    changed = False
    wanted = lines
    for _ in range(5):
        before = _tip(git_dir, ref)
        have = read(git_dir, ref, sha)
        missing = [line for line in wanted if line not in have.splitlines()]
        if not missing:
            return changed
        body = have.rstrip("\n")
        _write(git_dir, ref, sha, (body + "\n" if body else "") + "\n".join(missing) + "\n")
        changed = True
        wanted = lost_lines(git_dir, ref, sha, before)
        if not wanted:
            return True
    raise TransientError(f"notes ref {ref} kept changing under us; will try again")


def copy(git_dir: Path, ref: str, source: str, target: str) -> bool:
    """Give `target` every line of `source`'s note it lacks (a cherry-pick keeps its trail)."""
    lines = [line for line in read(git_dir, ref, source).splitlines() if line.strip()]
    return add_lines(git_dir, ref, target, lines) if lines else False


def add_link(git_dir: Path, ref: str, sha: str, link: TraceLink) -> bool:
    """Attach `link` to commit `sha`; True if the note changed.

    A concurrent git command holding the notes ref lock is waited out briefly, then reported as
    transient so the job is retried later rather than lost; a concurrent writer that slipped in
    between our read and our write gets its lines put back (add_lines).
    """
    try:
        for attempt in Retrying(
            retry=retry_if_exception(_is_lock_contention),
            wait=wait_exponential_jitter(multiplier=0.05, max=1.0, jitter=0.05),
            stop=stop_after_attempt(6),
            reraise=True,
        ):
            with attempt:
                return add_lines(git_dir, ref, sha, link.lines())
    except GitError as exc:
        if _is_lock_contention(exc):
            raise TransientError(f"notes ref {ref} stayed locked by another git command") from exc
        raise
    return False
