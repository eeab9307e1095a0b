"""Long-lived git plumbing per repository (tracekeeperd/plumbing.py) under the notes writer.

A burst writes one notes commit per repository per batch; with a `plumbing.Pool`, the
processes that read objects (`cat-file --batch`), write blobs, trees and commits
(`hash-object --stdin-paths`) and swap the refs (`update-ref --stdin`) are started once per
busy repository, not once per write. These
tests count git process starts with a wrapper `git` first on PATH (the real one does the work),
and hold the writes to the same compare-and-swap as without the pool.
"""

from __future__ import annotations

import re
import stat
import threading
from pathlib import Path

import pytest

from tracekeeperd import notes, plumbing
from tracekeeperd.errors import GitError

from .test_notes_write import REF, Repo, alive, git_first_on_path, link_line, new_repo


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    return new_repo(tmp_path / "repo")


@pytest.fixture
def started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A log with one line per git process started through PATH: its subcommand."""
    log = tmp_path / "git-starts.log"
    log.write_text("")
    # The first argument that is not an option is the subcommand (`git --git-dir=X cat-file`).
    git_first_on_path(
        tmp_path / "bin",
        monkeypatch,
        'for a in "$@"; do case "$a" in -c) ;; -*) ;; *=*) ;; *) echo "$a" >> "$TK_GIT_LOG"; break;; esac; done\n',
    )
    monkeypatch.setenv("TK_GIT_LOG", str(log))
    return log


def _take(log: Path) -> list[str]:
    lines = log.read_text().split()
    log.write_text("")
    return lines


def test_a_burst_of_writes_in_one_repository_starts_its_plumbing_once(repo: Repo, started: Path) -> None:
    shas = repo.commits(30)
    pool = plumbing.Pool()
    try:
        for i, sha in enumerate(shas):
            with pool.lease(repo.git_dir) as pipes:
                notes.add(repo.git_dir, REF, {sha: [link_line(f"n{i}")]}, plumbing=pipes)
            if i == 0:
                # blobs, then trees (hash-object -t tree), each by a kept hash-object
                assert _take(started) == ["cat-file", "hash-object", "hash-object", "commit-tree", "update-ref"]
        # The blobs go to the kept `hash-object --stdin-paths`; the commits, once the first one
        # (by commit-tree) showed what git writes, to a kept `hash-object -t commit`: started
        # once, by the second write, whatever the number of writes after it.
        assert _take(started) == ["hash-object"]
        with pool.lease(repo.git_dir) as pipes:
            assert notes.repair(repo.git_dir, REF, plumbing=pipes).commit is None
        assert _take(started) == [], "a look with nothing to repair starts no process at all"
    finally:
        pool.close()
    for i, sha in enumerate(shas):
        assert repo.note(sha) == link_line(f"n{i}") + "\n"
    assert repo.git("rev-list", "--count", REF).strip() == str(len(shas))
    assert repo.git("rev-parse", notes.written_ref(REF)).strip() == repo.git("rev-parse", REF).strip()
    _assert_commits_as_commit_tree_makes_them(repo, len(shas))


def _assert_commits_as_commit_tree_makes_them(repo: Repo, count: int) -> None:
    """Every notes commit passes `git fsck --strict` and reads like the one commit-tree made:
    the same header fields in git's order, the identity git would use, our subject."""
    repo.git("fsck", "--strict", "--no-dangling")
    ident = repo.git("var", "GIT_COMMITTER_IDENT").rsplit(" ", 2)[0]
    commits = repo.git("rev-list", REF).split()
    assert len(commits) == count
    for commit in commits:
        raw = repo.git("cat-file", "commit", commit)
        head, _, message = raw.partition("\n\n")
        keys = [line.split(" ", 1)[0] for line in head.splitlines()]
        assert keys in (["tree", "author", "committer"], ["tree", "parent", "author", "committer"])
        for line in head.splitlines()[-2:]:
            who, stamp, zone = line.split(" ", 1)[1].rsplit(" ", 2)
            assert who == ident and stamp.isdigit() and re.fullmatch(r"[+-]\d{4}", zone)
        assert message == notes.COMMIT_MESSAGE + "\n"


def test_the_kept_update_ref_still_refuses_a_moved_ref_and_the_next_swap_works(repo: Repo) -> None:
    """The long-lived `update-ref --stdin` is as strict as one per swap: a ref (or our record)
    moved since we read it refuses the whole transaction; git then exits, and the next swap
    starts a new one."""
    (sha,) = repo.commits(1)
    pool = plumbing.Pool()
    try:
        with pool.lease(repo.git_dir) as pipes:
            notes.add(repo.git_dir, REF, {sha: [link_line("a1")]}, plumbing=pipes)
        tip = repo.git("rev-parse", REF).strip()
        record = notes.written_ref(REF)
        tree = repo.git("rev-parse", f"{tip}^{{tree}}").strip()
        elsewhere = repo.git("commit-tree", tree, "-p", tip, "-m", notes.COMMIT_MESSAGE).strip()
        repo.git("update-ref", record, elsewhere)
        with pool.lease(repo.git_dir) as pipes, pytest.raises(notes._Race):
            notes._swap(repo.git_dir, REF, elsewhere, tip, tip, plumbing=pipes)
        assert repo.git("rev-parse", REF).strip() == tip, "the notes ref did not move"
        assert repo.git("rev-parse", record).strip() == elsewhere
        repo.git("update-ref", record, tip)
        # A user's write lands between our read and our swap: the swap fails, the redo wins.
        repo.git("notes", f"--ref={REF}", "append", "-m", "theirs", sha)
        with pool.lease(repo.git_dir) as pipes:
            with pytest.raises(notes._Race):
                notes._swap(repo.git_dir, REF, elsewhere, tip, tip, plumbing=pipes)
            done = notes.add(repo.git_dir, REF, {sha: [link_line("a2")]}, plumbing=pipes)
        assert done.commit == repo.git("rev-parse", REF).strip() == repo.git("rev-parse", record).strip()
        assert repo.note(sha).splitlines() == [link_line("a1"), "", "theirs", link_line("a2")]
    finally:
        pool.close()


def test_kept_processes_are_closed_when_the_repository_goes_idle_and_when_the_pool_closes(
    repo: Repo, tmp_path: Path
) -> None:
    (sha,) = repo.commits(1)
    clock = [100.0]
    pool = plumbing.Pool(idle=30.0, clock=lambda: clock[0])
    with pool.lease(repo.git_dir) as pipes:
        notes.add(repo.git_dir, REF, {sha: [link_line("a1")]}, plumbing=pipes)
        first = pipes.pids()
    # cat-file, hash-object (blobs), hash-object -t tree, update-ref; -t commit from the 2nd write
    assert len(first) == 4 and all(alive(pid) for pid in first)
    clock[0] += 29.0
    assert pool.close_idle() == 0, "used 29 s ago: kept"
    assert all(alive(pid) for pid in first)
    clock[0] += 2.0
    assert pool.close_idle() == 1
    assert not any(alive(pid) for pid in first), "idle for longer than 30 s: closed and reaped"
    other = new_repo(tmp_path / "other")
    (sha2,) = other.commits(1)
    for r, s in ((repo, sha), (other, sha2)):
        with pool.lease(r.git_dir) as pipes:
            notes.add(r.git_dir, REF, {s: [link_line("a2")]}, plumbing=pipes)
    held = [pid for r in (repo, other) for pid in pool.pids(r.git_dir)]
    assert len(held) == 8 and all(alive(pid) for pid in held)
    pool.close()
    assert not any(alive(pid) for pid in held), "the pool's close (the daemon's stop) ends them all"
    with pytest.raises(GitError), pool.lease(repo.git_dir):
        pass  # closed: nothing new is started after the stop


def test_a_failed_write_does_not_leave_a_half_read_process_for_the_next(repo: Repo) -> None:
    """Whatever went wrong inside a lease, its processes may be mid-answer: they are closed,
    and the next write starts fresh ones rather than reading someone else's reply."""
    (sha,) = repo.commits(1)
    pool = plumbing.Pool()
    try:
        with pool.lease(repo.git_dir) as pipes:
            notes.add(repo.git_dir, REF, {sha: [link_line("a1")]}, plumbing=pipes)
            before = pipes.pids()
        with pytest.raises(RuntimeError), pool.lease(repo.git_dir) as pipes:
            cat = pipes.pipe("cat-file", ["cat-file", "--batch"])
            cat.stdin.write(b"HEAD\n")
            cat.stdin.flush()  # the answer is never read
            raise RuntimeError("a bug between question and answer")
        assert not any(alive(pid) for pid in before)
        with pool.lease(repo.git_dir) as pipes:
            notes.add(repo.git_dir, REF, {sha: [link_line("a2")]}, plumbing=pipes)
        assert repo.note(sha).splitlines() == [link_line("a1"), link_line("a2")]
    finally:
        pool.close()


def test_note_texts_go_to_git_through_one_kept_scratch_directory(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`hash-object --stdin-paths` reads each new note from a file: a kept repository's writes
    reuse one private directory for them (no directory made and removed per write), which goes
    with the repository's processes."""
    import tempfile

    scratch_root = tmp_path / "tmp"
    scratch_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch_root))
    shas = repo.commits(6)
    pool = plumbing.Pool()
    try:
        seen: set[str] = set()
        for i in range(3):
            with pool.lease(repo.git_dir) as pipes:
                notes.add(repo.git_dir, REF, {sha: [link_line(f"{i}-{sha[:6]}")] for sha in shas[i:]}, plumbing=pipes)
            seen |= {p.name for p in scratch_root.iterdir()}
        assert len(seen) == 1, "one scratch directory for all three writes"
        (kept,) = scratch_root.iterdir()
        assert stat.S_IMODE(kept.stat().st_mode) == 0o700
    finally:
        pool.close()
    assert list(scratch_root.iterdir()) == [], "removed with the processes"
    for i, sha in enumerate(shas):
        assert repo.note(sha).splitlines() == [link_line(f"{j}-{sha[:6]}") for j in range(min(i, 2) + 1)]


def test_the_pool_keeps_no_more_repositories_than_it_has_room_for(repo: Repo, tmp_path: Path) -> None:
    """Each kept repository holds up to 5 processes and 15 file descriptors: past `max_kept` (by
    default what the descriptor limit leaves room for), a repository's processes are closed
    after its write instead of kept, and the ones kept stay kept (no churn in a round-robin)."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert plumbing.Pool().max_kept == max(plumbing.MIN_KEPT, (soft - plumbing.FD_RESERVE) // plumbing.FDS_PER_REPO)
    other = new_repo(tmp_path / "other")
    (sha,), (sha2,) = repo.commits(1), other.commits(1)
    pool = plumbing.Pool(max_kept=1)
    try:
        for round_ in range(2):
            for r, s in ((repo, sha), (other, sha2)):
                with pool.lease(r.git_dir) as pipes:
                    notes.add(r.git_dir, REF, {s: [link_line(f"x{round_}")]}, plumbing=pipes)
                    pids = pipes.pids()
                if r is other:
                    assert not any(alive(pid) for pid in pids), "no room: closed after its write"
            kept = pool.pids(repo.git_dir)
            # the commits' own hash-object joins from the repository's second write on
            assert len(kept) == (4 if round_ == 0 else 5) and all(alive(pid) for pid in kept)
            assert pool.pids(other.git_dir) == []
    finally:
        pool.close()
    assert repo.note(sha).splitlines() == [link_line("x0"), link_line("x1")]
    assert other.note(sha2).splitlines() == [link_line("x0"), link_line("x1")]


def test_kept_notes_commits_in_a_sha256_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, started: Path
) -> None:
    """The kept writers take the repository's object format from git itself: a sha256
    repository's notes commits (made by the kept `hash-object -t commit` after the first)
    pass `git fsck --strict` and read back."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    work = tmp_path / "sha256"
    work.mkdir()
    repo = Repo(work)
    repo.git("init", "-q", "--object-format=sha256")
    repo.git("config", "user.name", "Test")
    repo.git("config", "user.email", "test@example.com")
    shas = repo.commits(5)
    assert len(shas[0]) == 64
    _take(started)
    pool = plumbing.Pool()
    try:
        for i, sha in enumerate(shas):
            with pool.lease(repo.git_dir) as pipes:
                notes.add(repo.git_dir, REF, {sha: [link_line(f"s{i}")]}, plumbing=pipes)
    finally:
        pool.close()
    assert "commit-tree" not in _take(started)[5:], "only the first commit is commit-tree's"
    for i, sha in enumerate(shas):
        assert repo.note(sha) == link_line(f"s{i}") + "\n"
    _assert_commits_as_commit_tree_makes_them(repo, len(shas))


def test_a_commit_that_commit_tree_writes_with_more_is_never_imitated(repo: Repo, started: Path) -> None:
    """What commit-tree adds from the configuration (an `encoding` header from
    i18n.commitEncoding, a signature from commit.gpgSign) is not ours to reproduce: when the
    first commit has any header beyond tree, parent, author and committer, every commit stays
    commit-tree's."""
    repo.git("config", "i18n.commitEncoding", "ISO-8859-1")
    shas = repo.commits(3)
    _take(started)
    pool = plumbing.Pool()
    try:
        for i, sha in enumerate(shas):
            with pool.lease(repo.git_dir) as pipes:
                notes.add(repo.git_dir, REF, {sha: [link_line(f"e{i}")]}, plumbing=pipes)
    finally:
        pool.close()
    assert _take(started).count("commit-tree") == len(shas)
    for commit in repo.git("rev-list", REF).split():
        assert "\nencoding ISO-8859-1\n" in repo.git("cat-file", "commit", commit)
    repo.git("fsck", "--strict", "--no-dangling")


def test_a_kept_repository_reads_back_none_of_the_trees_it_wrote(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trees are named by their content, so the ones a kept repository's last write made (the
    next write's starting point) are kept parsed with its processes rather than read back and
    parsed again, whole, on every write. The trees come out the same as without the kept
    processes, through git's fanout (100 notes: the root fans out on the way)."""
    asked: list[str] = []
    real = notes._Session.object

    def spy(self: notes._Session, name: str) -> tuple[str, str, bytes] | None:
        found = real(self, name)
        if found is not None and found[1] == "tree":
            asked.append(name)
        return found

    monkeypatch.setattr(notes._Session, "object", spy)
    plain = new_repo(tmp_path / "plain")
    shas = repo.commits(100)
    assert plain.commits(100) == shas
    pool = plumbing.Pool()
    try:
        for i, sha in enumerate(shas):
            with pool.lease(repo.git_dir) as pipes:
                notes.add(repo.git_dir, REF, {sha: [link_line(f"t{i}")]}, plumbing=pipes)
            if i == 0:
                asked.clear()
            notes.add(plain.git_dir, REF, {sha: [link_line(f"t{i}")]})
            assert repo.git("rev-parse", f"{REF}^{{tree}}") == plain.git("rev-parse", f"{REF}^{{tree}}")
        plain_reads = len(asked)
    finally:
        pool.close()
    assert plain_reads >= len(shas) - 1, "without kept processes every write but the first reads its trees"
    pool = plumbing.Pool()
    try:
        for round_ in "uv":
            asked.clear()
            for i, sha in enumerate(shas[:10]):
                with pool.lease(repo.git_dir) as pipes:
                    notes.add(repo.git_dir, REF, {sha: [link_line(f"{round_}{i}")]}, plumbing=pipes)
        assert asked == [], "the second round's trees were all made or read by the first"
    finally:
        pool.close()
    assert any("/" in path for path in repo.note_paths()), "fanned out"
    repo.git("fsck", "--strict", "--no-dangling")
    assert repo.note(shas[5]).splitlines() == [link_line("t5"), link_line("u5"), link_line("v5")]


def test_a_kept_repository_writes_its_trees_without_mktree_in_gits_own_order(repo: Repo, started: Path) -> None:
    """`mktree` looks up the object of every entry it is given (builtin/mktree.c `mktree_line`,
    even with --missing), so remaking a notes root of 256 fanout directories cost it most of a
    write's CPU. A kept repository writes its trees with a kept `hash-object -t tree` instead,
    from the tree's bytes as git lays them out: entries in git's order (a directory sorts as if
    its name ended in "/": tree.c `base_name_compare`), modes in octal without leading zeros.
    The trees are the ones `git mktree` makes of the same entries, and pass `git fsck --strict`."""
    (sha,) = repo.commits(1)
    blob = repo.git("hash-object", "-w", "--stdin", input="foreign\n").strip()
    inner = repo.git("mktree", input=f"100644 blob {blob}\tx\n").strip()
    foreign = "".join(f"100644 blob {blob}\t{name}\n" for name in ("a", "a.b", "a0", "ab0", "ab.c", "ab-"))
    tree = repo.git("mktree", input=foreign + f"040000 tree {inner}\tab\n").strip()
    commit = repo.git("commit-tree", tree, "-m", "foreign files").strip()
    repo.git("update-ref", REF, commit)
    _take(started)
    pool = plumbing.Pool()
    try:
        for i in range(2):
            with pool.lease(repo.git_dir) as pipes:
                notes.add(repo.git_dir, REF, {sha: [link_line(f"k{i}")]}, plumbing=pipes)
    finally:
        pool.close()
    assert "mktree" not in _take(started)
    listed = repo.git("ls-tree", f"{REF}^{{tree}}")
    assert repo.git("mktree", input=listed).strip() == repo.git("rev-parse", f"{REF}^{{tree}}").strip()
    names = [line.split("\t", 1)[1] for line in listed.splitlines()]
    assert sorted(names) == sorted(["a", "a.b", "a0", "ab-", "ab.c", "ab", "ab0", sha])
    assert names.index("ab-") < names.index("ab.c") < names.index("ab") < names.index("ab0"), "ab as ab/"
    repo.git("fsck", "--strict", "--no-dangling")
    assert repo.note(sha).splitlines() == [link_line("k0"), link_line("k1")]


def test_a_notes_tree_entry_with_a_mode_git_cannot_read_is_a_git_error_with_or_without_kept_processes(
    repo: Repo, tmp_path: Path
) -> None:
    """A damaged (or hostile, pulled) notes tree whose entry mode is not octal: mktree refuses
    it (a GitError the worker defers on); the kept tree writer, which lays trees out itself,
    refuses it the same way rather than crashing on the mode."""
    (sha,) = repo.commits(1)
    blob = repo.git("hash-object", "-w", "--stdin", input="x\n").strip()
    raw = tmp_path / "tree"
    raw.write_bytes(b"1x0644 foreign\0" + bytes.fromhex(blob))
    tree = repo.git("hash-object", "-w", "--literally", "-t", "tree", str(raw)).strip()
    repo.git("update-ref", REF, repo.git("commit-tree", tree, "-m", "damaged").strip())
    with pytest.raises(GitError):
        notes.add(repo.git_dir, REF, {sha: [link_line("d")]})
    pool = plumbing.Pool()
    try:
        with pytest.raises(GitError), pool.lease(repo.git_dir) as pipes:
            notes.add(repo.git_dir, REF, {sha: [link_line("d")]}, plumbing=pipes)
    finally:
        pool.close()


def test_writes_with_kept_processes_start_no_thread_per_write(repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write's deadline (a hung git is killed) is kept by one watchdog thread for all writes,
    not a timer thread started per write: a burst writes thousands of notes commits."""
    starts: list[str] = []
    real_start = threading.Thread.start

    def counting_start(self: threading.Thread) -> None:  # a spy: every thread still starts
        starts.append(self.name)
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    # A fresh watchdog, so its own thread's one start is counted here whatever ran before.
    monkeypatch.setattr(
        plumbing, "WATCHDOG", plumbing.Watchdog() if hasattr(plumbing, "Watchdog") else None, raising=False
    )
    shas = repo.commits(20)
    pool = plumbing.Pool()
    try:
        for i, sha in enumerate(shas):
            with pool.lease(repo.git_dir) as pipes:
                notes.add(repo.git_dir, REF, {sha: [link_line(f"n{i}")]}, plumbing=pipes)
    finally:
        pool.close()
    assert len(starts) <= 1, f"{len(starts)} threads started for {len(shas)} writes"
    for i, sha in enumerate(shas):
        assert repo.note(sha) == link_line(f"n{i}") + "\n"


def test_a_hung_kept_git_is_killed_at_the_writes_deadline(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outside system here is a git that never answers: a `git` first on PATH whose
    `cat-file` sleeps instead (every other subcommand is the real git). The write must end
    with a GitError when its deadline passes, and the next write start afresh."""
    sha = repo.commits(1)[0]
    flag = tmp_path / "hang"
    flag.write_text("")
    git_first_on_path(
        tmp_path / "hung-bin",
        monkeypatch,
        f'for a in "$@"; do if [ "$a" = cat-file ] && [ -e {flag} ]; then exec sleep 600; fi; done\n',
    )
    pool = plumbing.Pool()
    try:
        with pytest.raises(GitError), pool.lease(repo.git_dir) as pipes:
            notes.write(
                repo.git_dir, REF, {sha: notes._with(notes.add_missing, [link_line("a")])}, timeout=0.5, plumbing=pipes
            )
        assert pool.pids(repo.git_dir) == [], "a lease that failed keeps none of its processes"
        flag.unlink()
        with pool.lease(repo.git_dir) as pipes:
            notes.add(repo.git_dir, REF, {sha: [link_line("a")]}, plumbing=pipes)
    finally:
        pool.close()
    assert repo.note(sha) == link_line("a") + "\n"


def test_two_leases_of_one_repository_at_once_leave_no_process_outside_the_pool(repo: Repo) -> None:
    """The worker writes a batch's repositories side by side (worker.NOTE_THREADS); a lease of
    a repository already lent starts a second set of processes. Only one set can be kept: the
    other is closed when its lease ends, never dropped from the pool while still running."""
    sha1, sha2 = repo.commits(2)
    pool = plumbing.Pool()
    try:
        with pool.lease(repo.git_dir) as first:
            notes.add(repo.git_dir, REF, {sha1: [link_line("a")]}, plumbing=first)
            with pool.lease(repo.git_dir) as second:
                notes.add(repo.git_dir, REF, {sha2: [link_line("b")]}, plumbing=second)
                started = first.pids() + second.pids()
        kept = pool.pids(repo.git_dir)
        assert kept and set(kept) <= set(started)
        assert not any(alive(pid) for pid in set(started) - set(kept)), "a set of processes nobody will close"
    finally:
        pool.close()
    assert not any(alive(pid) for pid in started)
    assert repo.note(sha1) == link_line("a") + "\n" and repo.note(sha2) == link_line("b") + "\n"
