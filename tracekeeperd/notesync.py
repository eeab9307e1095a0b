"""A repository's notes-sync state, read without the network: per remote, the notes not pushed
yet (against the remote-tracking notes ref as last fetched), whether a plain `git fetch` brings
the remote's notes, and when `tracekeeper pull`/`push` last ran.

The one reading of it: `tracekeeper status` without a daemon, the daemon's cached view of every
known repository (repostate.py), and the sync commands (client/tracekeeper/sync.py, which
also writes what is read here) all use these functions.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import git
from .config import DEFAULT_NOTES_REF, normalize_notes_ref

if TYPE_CHECKING:
    import subprocess

#: Where tracking refs live. Under refs/notes/ so `git log --notes=remotes/origin/hf-traces`
#: and `git notes --ref=...` can read them (git only displays notes refs under refs/notes/).
TRACKING_PREFIX = "refs/notes/remotes/"
#: Per notes ref and remote: when this machine last fetched and pushed, in the common git dir.
STATE_FILE = "tracekeeper-notes-sync.json"


@dataclass(frozen=True)
class RemoteNotesStatus:
    remote: str
    #: Notes present here that the remote (as last fetched) lacks or has an older version of;
    #: None when this remote was never fetched.
    unpushed: int | None
    #: Whether `configure` set up plain `git fetch` to bring this remote's notes.
    fetch_configured: bool
    last_fetch: float | None
    last_push: float | None

    def view(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Where:
    """A repository as git commands need it: its git dir, and the directory to run git in.

    The directory matters: a remote given as a relative path (`git remote add origin
    ../shared.git`) is resolved by git against its working directory, which for a plain
    `git fetch` is the top of the work tree (the git dir, when bare).
    """

    git_dir: Path
    cwd: Path
    #: The common git dir, when the caller knows it (the daemon's record): no git to find it.
    common: Path | None = None


Repository = Path | str | Where


def _where(repo: Repository) -> Where:
    if isinstance(repo, Where):
        return repo
    path = Path(repo).resolve()
    git_dir = git.find_git_dir(path)
    return Where(git_dir, git.toplevel(path) or git_dir)


def _run(
    where: Where,
    args: list[str],
    *,
    timeout: float = git.DEFAULT_TIMEOUT,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """`tracekeeperd.git.run`, from the repository's directory (see `Where`)."""
    return git.run(where.git_dir, args, cwd=where.cwd, timeout=timeout, check=check)


def _out(where: Where, args: list[str], **kwargs: Any) -> str:
    return _run(where, args, **kwargs).stdout.decode(errors="replace").strip()


def _rev(where: Where, ref: str) -> str | None:
    proc = _run(where, ["rev-parse", "-q", "--verify", f"{ref}^{{commit}}"], check=False)
    if proc.returncode != 0:
        return None
    return proc.stdout.decode().strip() or None


def _is_ancestor(where: Where, older: str, newer: str) -> bool:
    return git.is_ancestor(where.git_dir, older, newer, cwd=where.cwd)


def _config_all(where: Where, key: str, *, local: bool = False) -> list[str]:
    scope = ["--local"] if local else []
    proc = _run(where, ["config", *scope, "--get-all", key], check=False)
    return proc.stdout.decode(errors="replace").splitlines() if proc.returncode == 0 else []


def remotes(repo: Repository) -> list[str]:
    return _out(_where(repo), ["remote"]).splitlines()


def notes_name(notes_ref: str) -> str:
    """`refs/notes/hf-traces` -> `hf-traces`: the `<name>` of `notes.<name>.mergeStrategy`."""
    return normalize_notes_ref(notes_ref).removeprefix("refs/notes/")


def tracking_ref(remote: str, notes_ref: str = DEFAULT_NOTES_REF) -> str:
    return f"{TRACKING_PREFIX}{remote}/{notes_name(notes_ref)}"


def fetch_refspec(remote: str, notes_ref: str = DEFAULT_NOTES_REF) -> str:
    """The refspec that brings the remote's notes into the tracking ref.

    Forced, because it writes only the tracking ref, a mirror of the remote like
    `refs/remotes/origin/*`: if someone rewinds the remote's notes, a non-forced refspec
    would make every plain `git fetch` (and so `git pull`) fail with "rejected"; local notes
    are in the live ref, which only a merge ever moves. A glob (`<ref>*`) rather than the
    exact ref, because git dies with "couldn't find remote ref" on a configured exact refspec
    the remote does not have, which would break `git fetch` on every remote without notes yet.
    """
    ref = normalize_notes_ref(notes_ref)
    return f"+{ref}*:{tracking_ref(remote, ref)}*"


#: The values an entry of the state file may hold, and their types (`_read_state`).
_STATE_TYPES: dict[str, tuple[type, ...]] = {
    "fetched_at": (int, float),
    "pushed_at": (int, float),
    "remote_oid": (str,),
}


def _read_state(where: Where) -> dict[str, dict[str, dict[str, Any]]]:
    """{notes ref: {remote: entry}} as `sync._remember` wrote it. The file sits in the user's
    .git, so anything else in it (a damaged or hand-edited entry) reads as "never synced",
    and the next write leaves it out, rather than stopping `status` or `pull` with a traceback."""
    try:
        data = json.loads(((where.common or git.common_dir(where.git_dir)) / STATE_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        ref: {
            remote: {k: v for k, v in entry.items() if isinstance(v, _STATE_TYPES.get(k, ()))}
            for remote, entry in remotes.items()
            if isinstance(entry, dict)
        }
        for ref, remotes in data.items()
        if isinstance(remotes, dict)
    }


def _note_pairs(where: Where, ref: str) -> dict[str, str]:
    """commit -> note blob, for every note under `ref`."""
    proc = _run(where, ["notes", f"--ref={ref}", "list"], check=False)
    pairs = {}
    for line in proc.stdout.decode().splitlines():
        blob, _, commit = line.partition(" ")
        pairs[commit] = blob
    return pairs


def unpushed(repo: Repository, notes_ref: str = DEFAULT_NOTES_REF, remote: str = "origin") -> int | None:
    """Commits whose note here differs from (or is missing in) the remote, as last fetched.

    None when the remote was never fetched (nothing to compare with). Offline: no network.
    """
    where = _where(repo)
    ref = normalize_notes_ref(notes_ref)
    local = _rev(where, ref)
    theirs_ref = tracking_ref(remote, ref)
    theirs = _rev(where, theirs_ref)
    if theirs is None:
        entry = _read_state(where).get(ref, {}).get(remote)
        if not entry or entry.get("remote_oid"):
            return None  # never fetched (or the tracking ref was deleted by hand)
        return len(_note_pairs(where, ref)) if local else 0  # the remote has no notes at all
    if local is None or local == theirs or _is_ancestor(where, local, theirs):
        return 0
    remote_pairs = _note_pairs(where, theirs_ref)
    return sum(1 for commit, blob in _note_pairs(where, ref).items() if remote_pairs.get(commit) != blob)


#: Per common git dir: (the stamp of the files git reads remotes from, each remote with its
#: fetch refspecs). See `_remote_config`.
_REMOTES: dict[str, tuple[tuple[tuple[int, int, int] | None, ...], list[tuple[str, list[str]]]]] = {}
#: Repositories whose remotes are kept: a daemon's known ones; beyond it the table starts over.
_REMOTES_KEPT = 4096


def _remote_stamp(common: Path) -> tuple[tuple[int, int, int] | None, ...]:
    """(inode, size, mtime) of what `git remote` reads: `config`, and the legacy `remotes/` and
    `branches/` directories (git's Documentation/gitrepository-layout.txt; remote.c
    `read_remotes_file`, `read_branches_file`). git rewrites `config` through a lock file and a
    rename, so any change gives it a new inode."""
    out: list[tuple[int, int, int] | None] = []
    for name in ("config", "remotes", "branches"):
        try:
            st = (common / name).stat()
        except OSError:
            out.append(None)
            continue
        out.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


def _remote_config(where: Where) -> list[tuple[str, list[str]]]:
    """Each remote and its fetch refspecs: two git processes per remote and one more, asked again
    only when the files they come from changed. The daemon computes a repository's state after
    each of its own notes writes (once per 10 s per repository in a burst); the remotes were
    most of that computation's processes, yet only `git remote add` or `tracekeeper install`
    change them, and those rewrite `config`. As before, a change in the user's global config is
    seen at the next change of the repository's own."""
    if where.common is None:
        return [(r, _config_all(where, f"remote.{r}.fetch")) for r in remotes(where)]
    key = str(where.common)
    stamp = _remote_stamp(where.common)
    known = _REMOTES.get(key)
    if known is not None and known[0] == stamp and stamp[0] is not None:
        return known[1]
    found = [(r, _config_all(where, f"remote.{r}.fetch")) for r in remotes(where)]
    if len(_REMOTES) >= _REMOTES_KEPT:
        _REMOTES.clear()
    _REMOTES[key] = (stamp, found)
    return found


def notes_status(repo: Repository, notes_ref: str = DEFAULT_NOTES_REF) -> list[RemoteNotesStatus]:
    """Per remote: notes not pushed yet, whether `git fetch` brings notes, last sync times."""
    where = _where(repo)
    ref = normalize_notes_ref(notes_ref)
    state = _read_state(where).get(ref, {})
    result = []
    for remote, fetches in _remote_config(where):
        entry = state.get(remote, {})
        result.append(
            RemoteNotesStatus(
                remote=remote,
                unpushed=unpushed(where, ref, remote),
                fetch_configured=fetch_refspec(remote, ref) in fetches,
                last_fetch=entry.get("fetched_at"),
                last_push=entry.get("pushed_at"),
            )
        )
    return result
