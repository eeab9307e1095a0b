"""Trace links that survive rewrites: git's own note copying, and `tracekeeper relink`.

Three layers, from exact to heuristic (docs/rewrites.md says what each recovers):

1. `configure` sets `notes.rewriteRef` and friends, so `commit --amend` and `rebase` (interactive
   too) copy the old commit's note to the new one inside git itself, with `cat_sort_uniq` so a
   squash of two commits of one session keeps both ranges and one URL line. (A rewrite of a
   commit whose upload is still queued is the daemon's: hooks/post-rewrite retargets its jobs.)
2. Cherry-picks: git copies no notes for them and runs no post-rewrite, but it runs post-commit
   with CHERRY_PICK_HEAD naming the original; the hook says so (`made-by cherry-pick <sha>`) and
   the daemon copies the original's links, and its queued jobs, to the copy.
3. `relink` for commits that no rewrite of ours produced (a forge's squash or rebase merge):
   patch-id, the combined diff of a noted range, and commit ids or subjects in the squash message.

Links are copied as the note's own lines, never re-rendered, so fields this module does not know
about travel unchanged, and copying is idempotent (a line already there is not added again).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import click

from tracekeeperd import git, gitconfig, notes
from tracekeeperd.config import normalize_notes_ref
from tracekeeperd.errors import GitError, TracekeeperError
from tracekeeperd.gitconfig import ConfigChange, Scope
from tracekeeperd.notes import all_notes, merge_lines, trace_lines

from .errors import ClientError

#: `<commit> <patch-id>` (or `-` for an empty diff): a commit's patch-id never changes.
PATCH_ID_CACHE = "hf-traces-patch-ids"
#: Multi-valued `<key> <value>` records of exactly what `configure` added, for `unconfigure`.
RECORD_KEY = "tracekeeper.rewriteAdded"
DEFAULT_LIMIT = 200

#: What `configure` wants besides the rewriteRef. git's default for both `notes.rewrite.*` is
#: already true; setting them says so explicitly. `cat_sort_uniq` rather than `concatenate`: a
#: squash of two commits of one session would otherwise repeat the `hf-trace:` line (and leave a
#: blank line), and a note the daemon already wrote on the new commit would be duplicated.
SETTINGS: tuple[tuple[str, str], ...] = (
    ("notes.rewrite.amend", "true"),
    ("notes.rewrite.rebase", "true"),
    ("notes.rewriteMode", "cat_sort_uniq"),
)


class RewriteError(ClientError):
    """A repository or revision that relink/configure cannot work with; the message is one line."""


# --- git config ----------------------------------------------------------------------------


def _recorded(repo: Path, scope: Scope) -> gitconfig.Recorded:
    return gitconfig.Recorded(repo, RECORD_KEY, scope)


def _values(repo: Path, key: str, scope: Scope | None = None) -> list[str]:
    """Every value of `key` (all scopes unless `scope`); git exits 1 when there is none."""
    return _recorded(repo, scope or "local").values(key, any_scope=scope is None)


_TRUE = {"true", "yes", "on", "1"}


def _same(key: str, a: str, b: str) -> bool:
    if key.startswith("notes.rewrite."):
        return (a.strip().lower() in _TRUE) == (b.strip().lower() in _TRUE)
    return a.strip().lower() == b.strip().lower()


def _covered(ref: str, patterns: Iterable[str]) -> bool:
    """git's rewriteRef values may be globs (`refs/notes/*`); one matching ours is enough."""
    return any(pattern == ref or fnmatch.fnmatchcase(ref, pattern) for pattern in patterns)


def configure(repo: Path, notes_ref: str, *, scope: Scope = "local") -> list[ConfigChange]:
    """Make amend and rebase copy our notes; record what was added so `unconfigure` undoes exactly that.

    Idempotent. A setting the user already chose is never overridden: a `notes.rewriteMode` of
    theirs (git has one mode for every rewritten ref) or an explicit `notes.rewrite.amend=false`
    stays, and the change says so (`kept`, with the cost in `detail`, for `tracekeeper doctor`);
    the rewrite log and `relink` still recover the links then. Values added are recorded under
    `tracekeeper.rewriteAdded` as `<key> <value>`, like sync.py's `tracekeeper.added`.
    """
    ref = normalize_notes_ref(notes_ref)
    recorded = _recorded(repo, scope)
    changes: list[ConfigChange] = []
    if _covered(ref, _values(repo, "notes.rewriteRef")):
        changes.append(ConfigChange("notes.rewriteRef", ref, "present"))
    else:
        changes.append(recorded.add("notes.rewriteRef", ref))
    for key, value in SETTINGS:
        current = _values(repo, key)
        if not current:
            changes.append(recorded.add(key, value))
        elif _same(key, current[-1], value):
            changes.append(ConfigChange(key, current[-1], "present"))
        else:
            cost = (
                "amended or rebased commits lose their links until `tracekeeper relink`"
                if key.startswith("notes.rewrite.") or current[-1] in ("ignore", "overwrite")
                else "a squash of two commits of one session repeats the URL line"
            )
            changes.append(ConfigChange(key, current[-1], "kept", f"{key} is {current[-1]!r} (yours, kept): {cost}"))
    return changes


def unconfigure(repo: Path, notes_ref: str, *, scope: Scope = "local") -> list[ConfigChange]:
    """Remove what `configure` added for `notes_ref`: its rewriteRef, and the shared settings once
    no other ref of ours needs them. Values the user set are never touched, even identical ones."""
    ref = normalize_notes_ref(notes_ref)
    recorded = _recorded(repo, scope)
    others = [v for k, v in recorded.records() if k == "notes.rewriteRef" and v != ref]

    def ours(key: str, value: str) -> bool:
        return value == ref if key == "notes.rewriteRef" else not others

    return recorded.undo(ours)


def configured(repo: Path, notes_ref: str) -> bool:
    """Whether amend and rebase copy our notes with the effective config (for `doctor`)."""
    ref = normalize_notes_ref(notes_ref)
    if not _covered(ref, _values(repo, "notes.rewriteRef")):
        return False
    for key in ("notes.rewrite.amend", "notes.rewrite.rebase"):
        current = _values(repo, key)
        if current and current[-1].strip().lower() not in _TRUE:
            return False
    mode = _values(repo, "notes.rewriteMode")
    return not mode or mode[-1].strip().lower() in ("concatenate", "cat_sort_uniq")


# --- the rewrite log -----------------------------------------------------------------------


# --- commits, in bulk ----------------------------------------------------------------------


def _messages(git_dir: Path, shas: Sequence[str]) -> dict[str, str]:
    if not shas:
        return {}
    proc = git.run(
        git_dir,
        ["log", "--no-walk=unsorted", "--stdin", "--format=%x1e%H%x1f%B"],
        input="\n".join(shas).encode() + b"\n",
    )
    out: dict[str, str] = {}
    for record_ in proc.stdout.decode(errors="replace").split("\x1e")[1:]:
        sha, _, body = record_.partition("\x1f")
        out[sha.strip()] = body
    return out


def _patch_ids_of(git_dir: Path, diff: bytes) -> list[tuple[str, str]]:
    proc = git.run(git_dir, ["patch-id", "--stable"], input=diff)
    return [(p[1], p[0]) for line in proc.stdout.decode().splitlines() if len(p := line.split()) == 2]


class PatchIds:
    """`git patch-id --stable` of commits (cached on disk: a commit's patch never changes) and ranges."""

    def __init__(self, git_dir: Path) -> None:
        self.git_dir = git_dir
        self.path = git.common_dir(git_dir) / PATCH_ID_CACHE
        self.cache: dict[str, str | None] = {}
        self.dirty: dict[str, str | None] = {}
        if self.path.is_file():
            for line in self.path.read_text(errors="replace").splitlines():
                parts = line.split()
                if len(parts) == 2:
                    self.cache[parts[0]] = None if parts[1] == "-" else parts[1]

    def of(self, shas: Iterable[str]) -> dict[str, str | None]:
        wanted = list(dict.fromkeys(shas))
        missing = [s for s in wanted if s not in self.cache]
        if missing:
            # --root: a first commit has a patch too; merges print no patch and get none.
            diff = git.run(
                self.git_dir,
                ["diff-tree", "--stdin", "-p", "-r", "--root", "--no-color", "--no-ext-diff", "--no-textconv"],
                input="\n".join(missing).encode() + b"\n",
                timeout=120,
            ).stdout
            found = dict(_patch_ids_of(self.git_dir, diff))
            for sha in missing:
                self.cache[sha] = self.dirty[sha] = found.get(sha)
        return {s: self.cache[s] for s in wanted}

    def of_range(self, base: str, tip: str) -> str | None:
        diff = git.run(
            self.git_dir, ["diff-tree", "-p", "-r", "--no-color", "--no-ext-diff", "--no-textconv", base, tip]
        ).stdout
        ids = _patch_ids_of(self.git_dir, b"commit " + tip.encode() + b"\n" + diff)
        return ids[0][1] if ids else None

    def save(self) -> None:
        if not self.dirty:
            return
        try:
            with self.path.open("a") as fh:
                fh.write("".join(f"{sha} {pid or '-'}\n" for sha, pid in self.dirty.items()))
        except OSError:
            pass  # only a cache
        self.dirty.clear()


# --- relink --------------------------------------------------------------------------------


class Relinked(NamedTuple):
    """`new` got (or, with --dry-run, would get) the links of `old`; `how` says what matched."""

    new: str
    old: str
    how: str


class _Book:
    """The notes of the ref in memory: what relink copies from, and what it will add."""

    def __init__(self, git_dir: Path, ref: str) -> None:
        self.git_dir, self.ref = git_dir, ref
        self.text = all_notes(git_dir, ref)
        self.ours = {sha: lines for sha, text in self.text.items() if (lines := trace_lines(text))}
        #: {commit: lines to merge into its note}: applied to the note as it is when written.
        self.pending: dict[str, list[str]] = {}

    def copy(self, old: str, new: str) -> bool:
        incoming = self.ours.get(old)
        if not incoming or old == new:
            return False
        merged = merge_lines(self.text.get(new, ""), incoming)
        if merged is None:
            return False
        self.text[new] = merged
        self.ours[new] = trace_lines(merged)
        self.pending.setdefault(new, []).extend(line for line in incoming if line not in self.pending.get(new, []))
        return True

    def flush(self) -> None:
        """One notes commit for every commit relinked (compare-and-swap: nobody's lines lost)."""
        if self.pending:
            notes.merge(self.git_dir, self.ref, self.pending)
        self.pending.clear()


_PICKED = re.compile(r"\(cherry picked from commit ([0-9a-f]{40})\)")
_HEXISH = re.compile(r"\b[0-9a-f]{7,40}\b")
_BULLET = re.compile(r"^\s*[*-]\s+(.+?)\s*$")
_REVERTS = re.compile(r"This reverts commit [0-9a-f]+")


def _rev_list(git_dir: Path, args: Sequence[str], stdin: Sequence[str] | None = None) -> list[str]:
    extra = ["--stdin"] if stdin is not None else []
    data = ("\n".join(stdin) + "\n").encode() if stdin is not None else None
    proc = git.run(git_dir, ["rev-list", *args, *extra], input=data, timeout=120)
    return proc.stdout.decode().split()


def _tips(git_dir: Path, rev_range: str) -> list[str]:
    """The positive revisions of a range (`a..b` -> b), where the commits to relink end."""
    out = git.output(git_dir, ["rev-parse", rev_range, "--"])  # `--`: a typo is an error, not a path
    return [line for line in out.splitlines() if line and line != "--" and not line.startswith("^")]


def _merge_fetched(repo: Path, ref: str) -> None:
    """The notes a plain `git pull` fetched into tracking refs, merged first: they are what
    most often holds the links of the commits a forge rebased or squashed."""
    from . import sync

    try:
        sync.merge_fetched(repo, ref)
    except (sync.SyncError, GitError) as exc:
        raise RewriteError(f"cannot merge the fetched notes first: {exc}") from None


def relink(
    repo: Path,
    notes_ref: str,
    rev_range: str | None = None,
    *,
    limit: int | None = DEFAULT_LIMIT,
    dry_run: bool = False,
) -> list[Relinked]:
    """Give commits without links the links of the noted commits they were made from.

    `rev_range` is what `git rev-list` takes (`main`, `origin/main~20..origin/main`); default
    HEAD, newest `limit` commits. The rewrite log is replayed first (exact); then for each
    commit without links, the first of these that finds noted commits wins:

    - `(cherry picked from commit <sha>)` in the message (`cherry-pick -x`);
    - the same `git patch-id --stable` as noted commits (cherry-pick or rebase outside our hooks,
      a forge's rebase merge, or the squash of a one-commit branch);
    - the patch-id of a noted branch's combined diff, fork point to tip (a forge's squash merge):
      every noted commit of that branch lends its links;
    - full or abbreviated ids of noted commits in the message (`git merge --squash` lists them);
    - bullet lines of the message (GitHub's default squash message) that are the subjects of
      noted commits not on this branch, one commit each.
    """
    try:
        git_dir = git.find_git_dir(repo)
        ref = normalize_notes_ref(notes_ref)
    except TracekeeperError as exc:
        raise RewriteError(str(exc)) from None
    if not dry_run:
        _merge_fetched(repo, ref)
    rev = rev_range or "HEAD"
    try:
        tips = _tips(git_dir, rev)
    except GitError:
        raise RewriteError(f"{rev!r} is not a revision or range in {repo.resolve()}") from None
    book = _Book(git_dir, ref)
    found: list[Relinked] = []

    count = ["--max-count", str(limit)] if limit else []
    commits = _rev_list(git_dir, ["--no-merges", *count, rev]) if tips else []
    candidates = [sha for sha in commits if sha not in book.ours]
    if candidates and book.ours:
        found.extend(_match(git_dir, book, candidates, tips))
    if not dry_run:
        book.flush()
    return found


def _match(git_dir: Path, book: _Book, candidates: list[str], tips: list[str]) -> list[Relinked]:
    noted_all = list(book.ours)
    noted = sorted(git.existing_commits(git_dir, noted_all))
    messages = _messages(git_dir, candidates)
    pids = PatchIds(git_dir)
    candidate_pids = pids.of(candidates)
    by_pid: dict[str, list[str]] = {}
    for sha, pid in pids.of(noted).items():
        if pid:
            by_pid.setdefault(pid, []).append(sha)
    off_branch: set[str] | None = None
    ranges: dict[str, list[tuple[str, list[str]]]] | None = None
    subjects: dict[str, list[str]] | None = None

    def outside() -> set[str]:
        """Noted commits whose changes are not on the branch: what a squash could be made of."""
        nonlocal off_branch
        if off_branch is None:
            negative = [f"^{t}" for t in tips]
            off_branch = set(_rev_list(git_dir, negative, stdin=noted)) & set(noted) if noted else set()
        return off_branch

    def squash_ranges() -> dict[str, list[tuple[str, list[str]]]]:
        nonlocal ranges
        if ranges is None:
            refs = git.output(git_dir, ["for-each-ref", "--format=%(objectname)", "refs/heads", "refs/remotes"])
            heads = set(refs.split())
            unmerged = set(_rev_list(git_dir, [f"^{t}" for t in tips], stdin=sorted(heads))) & heads if heads else set()
            ranges = _squash_ranges(
                git_dir, pids, off_branch=outside(), ref_tips=unmerged, tip=tips[0], noted=set(noted)
            )
        return ranges

    def subject_index() -> dict[str, list[str]]:
        nonlocal subjects
        if subjects is None:
            subjects = _subjects(git_dir, sorted(outside()))
        return subjects

    found: list[Relinked] = []
    for sha in reversed(candidates):  # oldest first, so output reads like history
        message = messages.get(sha, "")
        sources: list[tuple[str, str]] = []
        picked = [s for s in _PICKED.findall(message) if s in book.ours]
        if picked:
            sources = [(s, "cherry-pick -x") for s in picked]
        pid = candidate_pids.get(sha)
        if not sources and pid and pid in by_pid:
            sources = [(s, "patch-id") for s in by_pid[pid] if s != sha]
        if not sources and pid and pid in squash_ranges():
            sources = [(s, how) for how, members in squash_ranges()[pid] for s in members]
        if not sources:
            # Ids of commits already on the branch are references ("fixes the bug of abc1234"), not
            # a squash; a noted commit this clone never had can only have come from elsewhere.
            named = _ids_in(_REVERTS.sub("", message), noted_all, sha)
            on_branch = set(noted) - outside() if named else set()
            sources = [(s, "squash message (commit ids)") for s in named if s not in on_branch]
        if not sources:
            sources = [(s, "squash message (subjects)") for s in _by_subject(message, subject_index())]
        for source, how in sources:
            if book.copy(source, sha):
                found.append(Relinked(sha, source, how))
    pids.save()
    return found


def _squash_ranges(
    git_dir: Path, pids: PatchIds, *, off_branch: set[str], ref_tips: set[str], tip: str, noted: set[str]
) -> dict[str, list[tuple[str, list[str]]]]:
    """{patch-id of fork..tip: [(how, noted commits of that range)]} for every branch tip we know."""
    candidates = set(ref_tips)
    if off_branch:
        independent = git.output(git_dir, ["merge-base", "--independent", *sorted(off_branch)]).split()
        candidates.update(independent)
    out: dict[str, list[tuple[str, list[str]]]] = {}
    for branch_tip in sorted(candidates):
        proc = git.run(git_dir, ["merge-base", tip, branch_tip], check=False)
        base = proc.stdout.decode().strip()
        if proc.returncode != 0 or not base:
            continue
        members = [s for s in reversed(_rev_list(git_dir, [branch_tip, f"^{base}"])) if s in noted]
        if not members:
            continue
        pid = pids.of_range(base, branch_tip)
        if pid:
            out.setdefault(pid, []).append((f"squash of {base[:12]}..{branch_tip[:12]}", members))
    return out


def _ids_in(message: str, noted: list[str], self_sha: str) -> list[str]:
    """Noted commits named in a message by a full id, or an abbreviated one that is unambiguous."""
    out: list[str] = []
    for word in _HEXISH.findall(message.lower()):
        hits = [s for s in noted if s.startswith(word)]
        if len(hits) == 1 and hits[0] != self_sha and hits[0] not in out:
            out.append(hits[0])
    return out


def _subjects(git_dir: Path, shas: list[str]) -> dict[str, list[str]]:
    if not shas:
        return {}
    proc = git.run(
        git_dir, ["log", "--no-walk=unsorted", "--stdin", "--format=%H%x1f%s"], input="\n".join(shas).encode() + b"\n"
    )
    out: dict[str, list[str]] = {}
    for line in proc.stdout.decode(errors="replace").splitlines():
        sha, _, subject = line.partition("\x1f")
        out.setdefault(subject.strip(), []).append(sha)
    return out


def _by_subject(message: str, subjects: dict[str, list[str]]) -> list[str]:
    out: list[str] = []
    for line in message.splitlines()[1:]:
        match = _BULLET.match(line)
        hits = subjects.get(match.group(1), []) if match else []
        if len(hits) == 1 and hits[0] not in out:
            out.append(hits[0])
    return out


# --- the command ---------------------------------------------------------------------------


def _describe(found: list[Relinked]) -> Iterator[dict[str, Any]]:
    for item in found:
        yield {"commit": item.new, "from": item.old, "how": item.how}


@click.command("relink", short_help="Give rewritten or squash-merged commits their trace links.")
@click.argument("rev_range", required=False)
@click.option(
    "-C", "repo", type=click.Path(exists=True, file_okay=False, path_type=Path), default=".", help="Repository."
)
@click.option("-n", "--max-count", "limit", type=int, default=DEFAULT_LIMIT, show_default=True, help="Newest commits.")
@click.option("--dry-run", is_flag=True, help="Say what would be linked; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
def relink_command(rev_range: str | None, repo: Path, limit: int, dry_run: bool, as_json: bool) -> None:
    """Copy trace links to commits of RANGE (default: HEAD) that have none, from the noted
    commits they were made from: rewritten by git (the rewrite log), cherry-picked, rebased or
    squash-merged on a forge (patch-id, the message). Safe to run again: lines are never duplicated.

    \b
    Examples:
      $ git pull && tracekeeper relink          # after your PR was squash-merged
      $ tracekeeper relink --dry-run origin/main~50..origin/main
    """
    from tracekeeperd.config import load

    from .output import emit_json

    found = relink(repo, load().notes_ref, rev_range, limit=limit or None, dry_run=dry_run)
    if as_json:
        emit_json({"dry_run": dry_run, "relinked": list(_describe(found))})
        return
    verb = "would link" if dry_run else "linked"
    if not found:
        click.echo("nothing to relink: every commit that matches a noted one has its links")
        return
    for item in found:
        click.echo(f"{verb} {item.new[:12]} <- {item.old[:12]}  ({item.how})")
    commits = len({item.new for item in found})
    click.echo(f"{commits} commit(s) {'would be ' if dry_run else ''}relinked")
