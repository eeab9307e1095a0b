"""Make trace notes travel: fetch them into a tracking ref, merge, push, never force.

Notes are only useful if teammates and future agents get them, but the usual ways of sharing
them hurt (docs/sync.md has the full story):

- a `remote.<name>.push` refspec replaces git's default push behaviour, so a plain `git push`
  would stop pushing the current branch. We never add one; notes are pushed after the user's
  push by a background job that the `pre-push` hook starts (git has no post-push hook);
- a forced `+refs/notes/*:refs/notes/*` fetch silently replaces local notes with the remote's
  (git-ai#907). We fetch into a tracking ref, `refs/notes/remotes/<remote>/<name>`, exactly as
  branches go to `refs/remotes/<remote>/`, and merge that into the live ref with
  `cat_sort_uniq`, which keeps both sides' lines of a note both clones wrote;
- two clones pushing at once get a non-fast-forward rejection; we fetch, merge and retry with
  jittered backoff, so concurrent pushes converge instead of one of them winning.

Every git call runs with `tracekeeperd.git.clean_env()`, which drops `GIT_DIR` and friends:
the background job starts from a hook, where those point at one repository.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import secrets
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracekeeperd import git, gitconfig
from tracekeeperd.config import DEFAULT_NOTES_REF, normalize_notes_ref
from tracekeeperd.errors import GitError, TracekeeperError
from tracekeeperd.gitconfig import ConfigChange
from tracekeeperd.notesync import (  # the reading of a repository's sync state, shared with the daemon
    STATE_FILE,
    TRACKING_PREFIX,
    Repository,
    Where,
    _config_all,
    _is_ancestor,
    _note_pairs,
    _out,
    _read_state,
    _rev,
    _run,
    _where,
    fetch_refspec,
    notes_name,
    remotes,
    tracking_ref,
    unpushed,
)

from .errors import ClientError

if TYPE_CHECKING:
    from tracekeeperd.paths import Paths

#: Multi-valued: one `<config key> <value>` per setting `configure` added, so `unconfigure`
#: removes exactly those and never a value the user had set themselves.
RECORD_KEY = "tracekeeper.added"
MERGE_STRATEGY = "cat_sort_uniq"
#: Scratch refs for a merge (see `_merge_into`); a killed process may leave one behind, and
#: `unconfigure` sweeps them.
SCRATCH_PREFIX = "refs/notes/tracekeeper-merge/"
LOCK_FILE = "tracekeeper-notes-sync.lock"
NETWORK_TIMEOUT = 300.0
PUSH_ATTEMPTS = 8
#: How long the background job waits for the user's `git push` to exit before going anyway.
WAIT_FOR_PUSH = 1800.0


class SyncError(TracekeeperError, ClientError):
    """Fetching, merging or pushing notes failed in a way retrying here cannot fix."""


class MergeOutcome(StrEnum):
    NO_REMOTE_NOTES = "no-remote-notes"
    UP_TO_DATE = "up-to-date"
    CREATED = "created"
    FAST_FORWARD = "fast-forward"
    MERGED = "merged"


class PushOutcome(StrEnum):
    NOTHING_TO_PUSH = "nothing-to-push"
    UP_TO_DATE = "up-to-date"
    PUSHED = "pushed"


@dataclass(frozen=True)
class PullResult:
    remote: str
    outcome: MergeOutcome
    remote_oid: str | None
    local_oid: str | None
    #: Commits whose note here is new or changed by this pull (what the summary line counts).
    received: int = 0


@dataclass(frozen=True)
class PushResult:
    remote: str
    outcome: PushOutcome
    attempts: int
    pulled: PullResult
    pushed_oid: str | None = None
    #: Commits whose note the remote lacked or had an older version of, before this push.
    sent: int = 0


@dataclass(frozen=True)
class BootstrapResult:
    config: list[ConfigChange]
    pulled: list[PullResult]
    #: remote -> one-line reason, for remotes that could not be fetched (offline, no access).
    errors: dict[str, str] = field(default_factory=dict)


# --- small git helpers --------------------------------------------------------------------


def _update_ref(where: Where, ref: str, new: str, expect: str | None, message: str) -> bool:
    """Compare-and-swap: move `ref` to `new` only if it still is `expect` ("" = must not exist).

    `git notes add` and `git notes merge` update the ref without checking its old value, so a
    merge written that way could drop a note the daemon added a moment earlier. Doing the
    final update ourselves with the old value makes a lost race visible, and we redo it.
    """
    args = ["update-ref", "-m", message, ref, new]
    if expect is not None:
        args.append(expect)
    return _run(where, args, check=False).returncode == 0


def _is_remote(where: Where, name: str) -> bool:
    return name in _out(where, ["remote"]).splitlines()


# --- configure ------------------------------------------------------------------------------


def _recorded(where: Where) -> gitconfig.Recorded:
    return gitconfig.Recorded(where.cwd, RECORD_KEY, "local", where.git_dir)


def configure(repo: Repository, notes_ref: str = DEFAULT_NOTES_REF) -> list[ConfigChange]:
    """Set the repository up so `git fetch` brings notes into tracking refs; idempotent.

    Writes, in the repository's own config only:
    - `remote.<name>.fetch = +<ref>*:refs/notes/remotes/<name>/<notes>*` for every remote;
    - `notes.<notes>.mergeStrategy = cat_sort_uniq`, unless the user chose one: it is what a
      hand-run `git notes merge` then does (ours always passes `-s cat_sort_uniq`). Not the
      global `notes.mergeStrategy`, which would change how the user's other notes merge.
    Nothing that changes `git push`. Each value added is recorded under `tracekeeper.added`.
    """
    where = _where(repo)
    recorded = _recorded(where)
    ref = normalize_notes_ref(notes_ref)
    changes = []
    for remote in remotes(repo):
        key, spec = f"remote.{remote}.fetch", fetch_refspec(remote, ref)
        if spec in _config_all(where, key, local=True):
            changes.append(ConfigChange(key, spec, "present"))
        else:
            changes.append(recorded.add(key, spec))
    key = f"notes.{notes_name(ref)}.mergeStrategy"
    current = _config_all(where, key)
    if not current:
        changes.append(recorded.add(key, MERGE_STRATEGY))
    else:
        changes.append(ConfigChange(key, current[-1], "present" if current[-1] == MERGE_STRATEGY else "kept"))
    return changes


def _set_up(where: Where, ref: str) -> bool:
    """Whether `install` (`configure`) set this repository's notes up: it recorded a change, or
    some remote fetches the notes our way."""
    return bool(_recorded(where).records()) or any(
        fetch_refspec(remote, ref) in _config_all(where, f"remote.{remote}.fetch") for remote in remotes(where)
    )


def remotes_without_notes(repo: Repository, notes_ref: str = DEFAULT_NOTES_REF) -> list[str]:
    """Remotes whose `git fetch` brings no notes, in a repository `install` set up (a remote added
    since); empty where tracekeeper never set the repository up."""
    where = _where(repo)
    ref = normalize_notes_ref(notes_ref)
    if not _set_up(where, ref):
        return []
    return sorted(r for r in remotes(where) if fetch_refspec(r, ref) not in _config_all(where, f"remote.{r}.fetch"))


def _ensure_fetch_refspec(where: Where, remote: str, ref: str) -> ConfigChange | None:
    """Give a remote added after `install` the refspec `configure` gave the others (recorded,
    so `uninstall` takes it out); nothing in a repository tracekeeper never set up."""
    spec = fetch_refspec(remote, ref)
    key = f"remote.{remote}.fetch"
    if not _is_remote(where, remote) or spec in _config_all(where, key) or not _set_up(where, ref):
        return None
    return _recorded(where).add(key, spec)


def merge_fetched(repo: Repository, notes_ref: str = DEFAULT_NOTES_REF) -> dict[str, MergeOutcome]:
    """Merge into the local notes what a plain `git fetch`/`git pull` brought into the tracking
    refs (no network): git fills those through our refspec, but only we merge them."""
    where = _where(repo)
    ref = normalize_notes_ref(notes_ref)
    merged = {}
    for remote in remotes(where):
        theirs = tracking_ref(remote, ref)
        if fetch_refspec(remote, ref) in _config_all(where, f"remote.{remote}.fetch") and _rev(where, theirs):
            merged[remote] = _merge_into(where, ref, theirs)
    return merged


def unconfigure(
    repo: Repository, notes_ref: str = DEFAULT_NOTES_REF, *, drop_tracking: bool = True
) -> list[ConfigChange]:
    """Remove exactly the config values `configure` added (and, by default, our refs and state).

    Values the user set, even identical ones set before `configure`, are never touched: only
    what `tracekeeper.added` lists goes. Git drops a section left empty. The live notes ref is
    never touched; the tracking refs are a cache of the remote and go with `drop_tracking`.
    """
    where = _where(repo)
    changes = _recorded(where).undo()
    if drop_tracking:
        ours = tuple(tracking_ref(remote, notes_ref) for remote in remotes(where))
        refs = _out(where, ["for-each-ref", "--format=%(refname)", TRACKING_PREFIX, SCRATCH_PREFIX]).splitlines()
        for ref in refs:
            # The fetch refspec is a glob (`<tracking>*`), so everything it can have created.
            if ref.startswith((*ours, SCRATCH_PREFIX)):
                _run(where, ["update-ref", "-d", ref], check=False)
        from tracekeeperd.notes import drop_written

        drop_written(where.git_dir)  # the daemon's private record of its last notes write
        common = git.common_dir(where.git_dir)
        for leftover in (STATE_FILE, STATE_FILE + ".lock", LOCK_FILE):
            (common / leftover).unlink(missing_ok=True)
    return changes


class ForcedRefspec(str):
    """A flagged refspec: the string is the refspec itself; `remote` says whose fetch has it."""

    remote: str

    def __new__(cls, remote: str, refspec: str) -> ForcedRefspec:
        self = super().__new__(cls, refspec)
        self.remote = remote
        return self

    @property
    def refspec(self) -> str:
        return str(self)

    @property
    def fix(self) -> str:
        """The command that removes it; `configure` has already set up the safe way to fetch."""
        return f"git config --fixed-value --unset remote.{self.remote}.fetch '{self}'"


def forced_notes_refspecs(repo: Repository, notes_ref: str = DEFAULT_NOTES_REF) -> list[ForcedRefspec]:
    """Fetch refspecs that would overwrite the live notes ref on `git fetch` (git-ai#907).

    A forced (`+`) refspec whose destination is the live ref, e.g. `+refs/notes/*:refs/notes/*`
    or `+refs/notes/hf-traces:refs/notes/hf-traces` (or a mirror's `+refs/*:refs/*`), replaces
    local notes with the remote's: every note written here and not yet pushed is gone. Ours
    (`+<ref>*:refs/notes/remotes/...`) writes only the tracking ref and is not flagged.
    """
    where = _where(repo)
    live = normalize_notes_ref(notes_ref)
    proc = _run(where, ["config", "--get-regexp", r"^remote\..*\.fetch$"], check=False)
    found = []
    for line in proc.stdout.decode(errors="replace").splitlines():
        key, _, spec = line.partition(" ")
        if not spec.startswith("+") or ":" not in spec:
            continue
        dst = spec[1:].split(":", 1)[1]
        if _refspec_matches(dst, live):
            found.append(ForcedRefspec(key.removeprefix("remote.").removesuffix(".fetch"), spec))
    return found


def _refspec_matches(pattern: str, ref: str) -> bool:
    if "*" not in pattern:
        return pattern == ref
    head, tail = pattern.split("*", 1)
    return ref.startswith(head) and ref.endswith(tail) and len(ref) >= len(head) + len(tail)


# --- state: when each remote was last fetched and pushed -------------------------------------


@contextlib.contextmanager
def _locked(path: Path, timeout: float) -> Iterator[bool]:
    """An exclusive flock on `path`, waited for up to `timeout`; yields whether we got it."""
    with path.open("a") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(0.05)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remember(where: Where, notes_ref: str, remote: str, **values: Any) -> None:
    """Merge `values` into this remote's entry; the lock keeps concurrent jobs from losing one."""
    common = git.common_dir(where.git_dir)
    path = common / STATE_FILE
    with _locked(common / (STATE_FILE + ".lock"), timeout=10) as got:
        if not got:
            return  # bookkeeping only: never fail a sync over it
        state = _read_state(where)
        entry = state.setdefault(notes_ref, {}).setdefault(remote, {})
        entry.update(values)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state, sort_keys=True))
        os.replace(tmp, path)


# --- pull -----------------------------------------------------------------------------------


def _fetch(where: Where, remote: str, notes_ref: str) -> str | None:
    """Fetch the remote's notes into the tracking ref; the remote's notes commit, or None.

    The refspec is a glob with `--prune`, so a remote without notes is not an error, and a
    tracking ref whose remote ref was deleted goes away rather than lingering.
    """
    args = [
        "-c",
        "fetch.pruneTags=false",
        "fetch",
        "--quiet",
        "--prune",
        "--no-tags",
        "--no-write-fetch-head",  # the user's FETCH_HEAD is theirs
        "--recurse-submodules=no",
        "--no-auto-maintenance",
        remote,
        fetch_refspec(remote, notes_ref),
    ]
    try:
        _run(where, args, timeout=NETWORK_TIMEOUT)
    except GitError as exc:
        raise SyncError(f"cannot fetch notes from {remote}: {_first_fatal(exc)}") from exc
    return _rev(where, tracking_ref(remote, notes_ref))


def _first_fatal(exc: GitError) -> str:
    """git's own reason in one line: the first `fatal:`/`error:` line, else the first line."""
    lines = [line.strip() for line in exc.stderr.splitlines() if line.strip()]
    for line in lines:
        for prefix in ("fatal: ", "error: "):
            if line.startswith(prefix):
                return line.removeprefix(prefix)
    return lines[0] if lines else str(exc)


def _notes_merge(where: Where, into: str, theirs: str) -> None:
    git.run_committing(
        where.git_dir, ["notes", f"--ref={into}", "merge", "-q", "-s", MERGE_STRATEGY, theirs], cwd=where.cwd
    )


def _merge_commit(where: Where, ours: str, theirs_ref: str) -> str:
    """The notes commit merging `ours` with `theirs_ref`, without touching the live ref.

    `git notes merge` can only merge into a notes ref, and updates it blindly, so it works on
    a private scratch ref under refs/notes/ (git refuses any other place) that starts at ours.
    """
    scratch = f"{SCRATCH_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    _run(where, ["update-ref", scratch, ours, ""])
    try:
        _notes_merge(where, scratch, theirs_ref)
        merged = _rev(where, scratch)
    finally:
        _run(where, ["update-ref", "-d", scratch], check=False)
    if merged is None:
        raise SyncError("git notes merge left no result")
    return merged


def _merge_into(where: Where, notes_ref: str, theirs_ref: str, attempts: int = 10) -> MergeOutcome:
    """Merge `theirs_ref` into the live notes ref, keeping both sides' lines of every note."""
    theirs = _rev(where, theirs_ref)
    if theirs is None:
        return MergeOutcome.NO_REMOTE_NOTES
    message = f"tracekeeper: merge {theirs_ref}"
    for _ in range(attempts):
        ours = _rev(where, notes_ref)
        if ours is None:
            if _update_ref(where, notes_ref, theirs, "", message):
                return MergeOutcome.CREATED
            continue
        if ours == theirs or _is_ancestor(where, theirs, ours):
            return MergeOutcome.UP_TO_DATE
        if _is_ancestor(where, ours, theirs):
            new, outcome = theirs, MergeOutcome.FAST_FORWARD
        else:
            new, outcome = _merge_commit(where, ours, theirs_ref), MergeOutcome.MERGED
        if _update_ref(where, notes_ref, new, ours, message):
            return outcome
        # Someone (the daemon adding a note) moved the ref meanwhile: merge again from there.
    raise SyncError(f"{notes_ref} kept changing while merging {theirs_ref}; try again")


def pull_notes(repo: Repository, remote: str, notes_ref: str = DEFAULT_NOTES_REF) -> PullResult:
    """Fetch `remote`'s notes into the tracking ref and merge them into the local notes ref.

    Local notes are never replaced: a note both sides wrote ends up with both sides' lines
    (sorted, duplicates dropped: `cat_sort_uniq`). A remote without notes yet is fine.
    """
    where = _where(repo)
    ref = normalize_notes_ref(notes_ref)
    _ensure_fetch_refspec(where, remote, ref)
    remote_oid = _fetch(where, remote, ref)
    _remember(where, ref, remote, fetched_at=time.time(), remote_oid=remote_oid)
    if not remote_oid:
        return PullResult(remote, MergeOutcome.NO_REMOTE_NOTES, remote_oid, _rev(where, ref))
    before = _note_pairs(where, ref) if _rev(where, ref) else {}
    outcome = _merge_into(where, ref, tracking_ref(remote, ref))
    local = _rev(where, ref)
    received = 0
    if outcome is not MergeOutcome.UP_TO_DATE and local:
        received = sum(1 for commit, blob in _note_pairs(where, ref).items() if before.get(commit) != blob)
    return PullResult(remote, outcome, remote_oid, local, received)


# --- push -----------------------------------------------------------------------------------

#: Reasons a remote gives when another push moved the ref between our fetch and our push.
_RACE_REASONS = ("fetch first", "non-fast-forward", "failed to update ref", "cannot lock", "but expected")


def _push_once(where: Where, remote: str, notes_ref: str, oid: str) -> tuple[bool, bool, str]:
    """Push `oid` to the remote's notes ref, never forced: (ok, worth retrying, detail)."""
    args = [
        "push",
        "--porcelain",
        "--no-verify",  # the user's pre-push checks (tests, linters) are about code, not notes
        "--recurse-submodules=no",
        "--no-follow-tags",
        remote,
        f"{oid}:{notes_ref}",
    ]
    proc = _run(where, args, timeout=NETWORK_TIMEOUT, check=False)
    out = proc.stdout.decode(errors="replace")
    err = proc.stderr.decode(errors="replace").strip()
    # --porcelain: "<flag>\t<src>:<dst>\t<summary> (<reason>)"; the flag and summaries are not
    # translated, and the reasons come from the protocol.
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[1].endswith(f":{notes_ref}"):
            if parts[0] in (" ", "*", "="):
                return True, False, parts[2]
            detail = parts[2]
            return False, any(reason in detail for reason in _RACE_REASONS), detail
    if proc.returncode == 0:
        return True, False, "pushed"
    return False, False, err.splitlines()[-1] if err else f"git push exited {proc.returncode}"


def _backoff(attempt: int) -> float:
    """Full jitter, so two clones that collided do not collide again in lockstep."""
    return random.uniform(0.05, min(2.0, 0.1 * 2**attempt))


def push_notes(
    repo: Repository,
    remote: str,
    notes_ref: str = DEFAULT_NOTES_REF,
    *,
    attempts: int = PUSH_ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
) -> PushResult:
    """Merge the remote's notes in, then push ours, never forced; retry when another clone won.

    A rejection means another clone pushed between our fetch and our push: fetching and
    merging again makes ours a fast-forward of theirs, so a bounded number of jittered
    retries converges. Anything else (no access, offline, a hook on the server said no)
    raises SyncError with git's reason.
    """
    where = _where(repo)
    ref = normalize_notes_ref(notes_ref)
    detail = ""
    for attempt in range(1, attempts + 1):
        pulled = pull_notes(where, remote, ref)
        local = pulled.local_oid
        if local is None:
            return PushResult(remote, PushOutcome.NOTHING_TO_PUSH, attempt, pulled)
        if local == pulled.remote_oid:
            return PushResult(remote, PushOutcome.UP_TO_DATE, attempt, pulled)
        sent = unpushed(where, ref, remote) or 0  # the tracking ref is theirs as just fetched
        ok, retry, detail = _push_once(where, remote, ref, local)
        if ok:
            # What plain `git push` does when a fetch refspec maps the ref; we do it always,
            # so `unpushed` is right even where the repository was never configured.
            _run(where, ["update-ref", tracking_ref(remote, ref), local], check=False)
            _remember(where, ref, remote, pushed_at=time.time(), remote_oid=local)
            return PushResult(remote, PushOutcome.PUSHED, attempt, pulled, local, sent)
        if not retry:
            break
        if attempt < attempts:
            sleep(_backoff(attempt))
    raise SyncError(f"cannot push {ref} to {remote}: {detail}")


# --- status ---------------------------------------------------------------------------------


def default_remote(repo: Repository) -> str:
    """Where a plain `git push` from here would go: pushRemote, pushDefault, upstream, origin."""
    where = _where(repo)
    names = remotes(where)
    branch = _run(where, ["symbolic-ref", "-q", "--short", "HEAD"], check=False).stdout.decode().strip()
    keys = [f"branch.{branch}.pushRemote", "remote.pushDefault", f"branch.{branch}.remote"]
    for key in keys if branch else ["remote.pushDefault"]:
        values = _config_all(where, key)
        if values and values[-1] in names:
            return values[-1]
    if "origin" in names:
        return "origin"
    if len(names) == 1:
        return names[0]
    if not names:
        raise SyncError("this repository has no remote")
    raise SyncError(f"several remotes ({', '.join(names)}) and none is origin: name one")


def bootstrap(repo: Repository, notes_ref: str = DEFAULT_NOTES_REF) -> BootstrapResult:
    """`configure`, then pull every remote's notes: a fresh clone gets the existing trail.

    An unreachable remote is reported, not fatal: the others still get pulled.
    """
    changes = configure(repo, notes_ref)
    pulled, errors = [], {}
    for remote in remotes(repo):
        try:
            pulled.append(pull_notes(repo, remote, notes_ref))
        except (SyncError, GitError) as exc:
            errors[remote] = str(exc)
    return BootstrapResult(changes, pulled, errors)


def _wait_for_exit(pid: int, timeout: float) -> None:
    """Wait for the user's `git push` to end, so our push does not compete with it."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            pass  # alive, someone else's (a reused pid): keep waiting until the deadline
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def log(message: str) -> None:
    """A line of the detached push's log: its stderr is sync.log (the pre-push hook sends it there)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    sys.stderr.write(f"{stamp} [{os.getpid()}] {message}\n")
    sys.stderr.flush()


def _map_refspec(spec: str, ref: str) -> str | None:
    """Where fetch refspec `spec` stores remote ref `ref`, or None when it does not cover it."""
    src, sep, dst = spec.removeprefix("+").partition(":")
    if not sep or not dst or spec.startswith("^"):
        return None
    if "*" not in src:
        return dst if src == ref else None
    head, tail = src.split("*", 1)
    if not (ref.startswith(head) and ref.endswith(tail) and len(ref) >= len(head) + len(tail)):
        return None
    return dst.replace("*", ref[len(head) : len(ref) - len(tail)], 1)


def push_landed(where: Where, remote: str, pushed: list[tuple[str, str]]) -> bool | None:
    """Did the user's push update `remote`? Judged from the remote-tracking refs git updates.

    `pushed` is what the pre-push hook was told: (remote ref, local oid) pairs. True when a
    tracking ref now holds what was pushed; False when every ref that has one does not (a
    `--dry-run`, which runs pre-push too, or a rejected push); None when no pushed ref has a
    tracking ref to tell (tags, `refs/for/*`), and then we push the notes anyway.
    """
    specs = _config_all(where, f"remote.{remote}.fetch")
    verdict: bool | None = None
    for remote_ref, local_oid in pushed:
        tracking = next((t for t in (_map_refspec(spec, remote_ref) for spec in specs) if t), None)
        if tracking is None:
            continue
        proc = _run(where, ["rev-parse", "-q", "--verify", tracking], check=False)
        current = proc.stdout.decode().strip() if proc.returncode == 0 else ""
        if current == local_oid or (not current and not local_oid.strip("0")):
            return True
        verdict = False
    return verdict


def background_push(
    repo: Path,
    remote: str,
    notes_ref: str,
    wait_pid: int | None,
    pushed: list[tuple[str, str]] | None = None,
) -> int:
    """What the pre-push hook starts: wait for the user's push, then push notes; log, never ask.

    Output goes to the sync log (the hook redirects it), one line per run, starting with
    `<repo> -> <remote>:`. Jobs for one repository take turns (a lock in its git dir), so two
    quick pushes do not race each other.
    """
    if wait_pid:
        _wait_for_exit(wait_pid, WAIT_FOR_PUSH)
    where_to = f"{repo} -> {remote}:"
    try:
        where = _where(repo)
        if not _is_remote(where, remote):
            log(f"{where_to} skipped: not a configured remote (a push to a URL?)")
            return 0
        if pushed and push_landed(where, remote, pushed) is False:
            log(f"{where_to} skipped: the push did not update the remote (--dry-run, or rejected)")
            return 0
        with _locked(git.common_dir(where.git_dir) / LOCK_FILE, timeout=WAIT_FOR_PUSH) as got:
            if not got:
                log(f"{where_to} gave up: another notes push kept the lock")
                return 1
            result = push_notes(where, remote, notes_ref)
        what = f" {result.pushed_oid[:12]}" if result.pushed_oid else ""
        log(f"{where_to} {result.outcome.value}{what} (attempt {result.attempts}, theirs {result.pulled.outcome})")
        return 0
    except (TracekeeperError, OSError) as exc:
        log(f"{where_to} failed: {exc}")
        return 1
    except Exception:
        log(f"{where_to} failed: unexpected error\n{traceback.format_exc()}")
        return 1


def notes_ref() -> str:
    """The configured notes ref (config.toml), read when a command needs it."""
    from tracekeeperd.config import load

    return load().notes_ref


def targets(repo: Path, remote: str | None, all_remotes: bool) -> list[str]:
    """The remotes a push or pull goes to: the one named, every one, or where `git push` goes."""
    if all_remotes:
        return remotes(repo)
    return [remote or default_remote(repo)]


def notes_per_repo(paths: Paths) -> list[dict[str, Any]]:
    """For each repository the daemon has seen: notes not yet pushed, per remote (no network)."""
    import sqlite3

    from tracekeeperd.config import load
    from tracekeeperd.queue import Queue

    if not paths.db.exists():
        return []
    try:
        queue = Queue(paths.db, readonly=True)
        try:
            known = queue.repositories()
        finally:
            queue.close()
        ref = load().notes_ref
    except sqlite3.Error:
        return []
    except TracekeeperError as exc:
        return [{"repo": None, "remotes": [], "error": str(exc)}]
    from tracekeeperd.repostate import NotesStates

    return NotesStates(ref).view(known)


if __name__ == "__main__":
    # `python -m tracekeeper.sync push|pull ...` is what installed pre-push hooks run (the
    # line is baked into hook files already in users' repositories, so it stays). The commands
    # live in cli/sync.py; run that module as the script. The library module, when imported,
    # never runs this and depends on nothing of the CLI.
    import runpy

    runpy.run_module("tracekeeper.cli.sync", run_name="__main__", alter_sys=True)
