"""The one note write path against real git: compare-and-swap, batches, fanout, lost updates.

`git notes add/append` build their notes tree from what they read when they start and move the
ref without checking its old value (git/git builtin/notes.c `append_edit` reads the note before
the editor runs; notes-utils.c `commit_notes` calls `refs_update_ref` with no old oid). These
tests run git's own commands against ours, never a stand-in for them.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tracekeeperd import git, notes
from tracekeeperd.errors import TransientError

from .harness import Env, running_daemon, session_repo, wait_for

REF = "refs/notes/hf-traces"


class Repo:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.git_dir = work / ".git"
        self.env = git.clean_env()

    def git(self, *args: str, input: str | None = None, check: bool = True) -> str:
        proc = subprocess.run(
            ["git", *args], cwd=self.work, env=self.env, input=input, capture_output=True, text=True, check=False
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
        return proc.stdout

    def commits(self, count: int) -> list[str]:
        """`count` new commits in one git process (fast-import), oldest first."""
        stream = []
        for i in range(1, count + 1):
            stream.append(f"commit refs/heads/many\nmark :{i}\ncommitter T <t@example.com> {1700000000 + i} +0000\n")
            stream.append(f"data {len(str(i))}\n{i}\n")
            stream.append(f"from :{i - 1}\n" if i > 1 else "")
        self.git("fast-import", "--quiet", input="".join(stream))
        return self.git("rev-list", "--reverse", "refs/heads/many").split()

    def note(self, sha: str, ref: str = REF) -> str:
        return self.git("notes", f"--ref={ref}", "show", sha, check=False)

    def note_paths(self, ref: str = REF) -> list[str]:
        return sorted(self.git("ls-tree", "-r", "--name-only", ref).split())


def new_repo(work: Path) -> Repo:
    """A fresh repository at `work` (created) with a committer identity of its own."""
    work.mkdir()
    r = Repo(work)
    r.git("init", "-q")
    r.git("config", "user.name", "Test")
    r.git("config", "user.email", "test@example.com")
    return r


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    return new_repo(tmp_path / "repo")


def git_first_on_path(bin_dir: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    """Put a `git` first on PATH that runs the sh `body` (its arguments are "$@"), then execs
    the real git: the tests' spy or fault on git processes the daemon starts by name."""
    real = shutil.which("git")
    assert real is not None
    bin_dir.mkdir()
    wrapper = bin_dir / "git"
    wrapper.write_text(f'#!/bin/sh\n{body}exec "{real}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def alive(pid: int) -> bool:
    """Running, not a zombie (a zombie is a process nobody reaped: a leak too, but visible)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def link_line(tag: str) -> str:
    return f"{notes.LINK_PREFIX}file:///traces/{tag}.jsonl"


# --- both writers against each other --------------------------------------------------


def test_user_appends_and_daemon_writes_race_200_rounds_and_lose_nothing(repo: Repo, tmp_path: Path) -> None:
    """The issue's race, many times over: a user's `git notes append` loop (git's own command,
    no compare-and-swap) runs for as long as our writer makes its 200 writes, on the same and
    on different commits."""
    shas = repo.commits(4)
    stop = tmp_path / "stop"
    script = (
        'i=0; while [ ! -e "$STOP" ]; do i=$((i+1)); eval "sha=\\${$(( i % 4 + 1 ))}"; '
        'if git notes --ref="$REF" append -m "user-$i" "$sha" 2>/dev/null; then echo "$sha user-$i"; fi; done'
    )
    user = subprocess.Popen(
        ["sh", "-c", script, "user", *shas],
        cwd=repo.work,
        env={**repo.env, "STOP": str(stop), "REF": REF},
        stdout=subprocess.PIPE,
        text=True,
    )
    ours: dict[str, list[str]] = {sha: [] for sha in shas}
    races = 0
    try:
        for i in range(1, 201):
            batch = {shas[i % 4]: [link_line(f"a{i}")], shas[(i + 1) % 4]: [link_line(f"b{i}")]}
            for _ in range(100):  # the worker retries a TransientError (a ref that kept moving) later
                try:
                    races += notes.add(repo.git_dir, REF, batch).races
                    break
                except TransientError:
                    races += 1
            else:
                raise AssertionError("the note was never written")
            for sha, lines in batch.items():
                ours[sha].extend(lines)
    finally:
        stop.touch()
        out, _ = user.communicate(timeout=120)
    theirs: dict[str, list[str]] = {sha: [] for sha in shas}
    for line in out.splitlines():
        sha, text = line.split(" ", 1)
        theirs[sha].append(text)
    assert sum(len(v) for v in theirs.values()) >= 50, "the user's loop ran all along"
    assert races > 0, "the two writers really did race"
    # The daemon's next write; it also puts back what a stale `git notes append` dropped.
    notes.add(repo.git_dir, REF, {shas[0]: [link_line("last")]})
    ours[shas[0]].append(link_line("last"))
    for sha in shas:
        lines = repo.note(sha).splitlines()
        assert [x for x in theirs[sha] if x not in lines] == [], f"user lines lost on {sha[:8]}"
        assert [x for x in ours[sha] if x not in lines] == [], f"our lines lost on {sha[:8]}"
        assert all(lines.count(x) == 1 for x in ours[sha]), "no line of ours twice"


def _editor(tmp: Path, text: str = "user line\\n") -> tuple[Path, Path, Path]:
    """A GIT_EDITOR that says when git is waiting on it, then waits to be told to finish: a
    person editing a note while the daemon writes, without sleeps (named pipes block). It
    leaves `text` (printf syntax) as the note."""
    ready, go = tmp / "ready", tmp / "go"
    os.mkfifo(ready)
    os.mkfifo(go)
    editor = tmp / "editor.sh"
    editor.write_text(f'#!/bin/sh\necho ready > "{ready}"\nread line < "{go}"\nprintf "{text}" > "$1"\n')
    editor.chmod(editor.stat().st_mode | stat.S_IXUSR)
    return editor, ready, go


def test_a_line_lost_to_a_stale_git_notes_append_comes_back_with_the_next_write(repo: Repo, tmp_path: Path) -> None:
    noted, other = repo.commits(2)
    assert notes.add_lines(repo.git_dir, REF, noted, ["Reviewed-by: someone", link_line("before")])
    editor, ready, go = _editor(tmp_path)
    user = subprocess.Popen(
        ["git", "notes", f"--ref={REF}", "append", noted],
        cwd=repo.work,
        env={**repo.env, "GIT_EDITOR": str(editor)},
        stderr=subprocess.PIPE,
    )
    assert ready.read_text() == "ready\n"  # git has read the note and waits for the editor
    assert notes.add_lines(repo.git_dir, REF, noted, [link_line("during")])  # the daemon's job: done
    go.write_text("go\n")
    assert user.wait(timeout=30) == 0
    # git wrote its stale tree: this is git's lost update, not ours.
    assert link_line("during") not in repo.note(noted).splitlines()

    notes.add_lines(repo.git_dir, REF, other, [link_line("next job")])

    lines = repo.note(noted).splitlines()
    assert link_line("during") in lines, "the daemon's line is back"
    assert lines[:3] == ["Reviewed-by: someone", link_line("before"), ""]
    assert "user line" in lines, "and the user's line is kept"
    assert repo.note(other) == link_line("next job") + "\n"


def _stale_user_write(repo: Repo, tree_of: str | None, sha: str, text: str, parent: str | None) -> None:
    """What a `git notes append` whose read went stale leaves behind, made with the plumbing git
    itself uses (git/git builtin/notes.c `append_edit`, notes-utils.c `create_notes_commit` and
    `commit_notes`): the notes tree it read when it started (`tree_of`; None = the ref did not
    exist yet) plus its own note, committed on `parent` (the ref's value when it re-read it just
    before committing; None = still missing, so git makes a root commit), and moved there with
    `update-ref` without an old value: whatever the ref pointed at by then is overwritten."""
    entries = repo.git("ls-tree", tree_of) if tree_of else ""
    blob = repo.git("hash-object", "-w", "--stdin", input=text).strip()
    kept = [line for line in entries.splitlines() if not line.endswith("\t" + sha)]
    tree = repo.git("mktree", input="".join(f"{line}\n" for line in [*kept, f"100644 blob {blob}\t{sha}"])).strip()
    commit = repo.git(
        "commit-tree", tree, *(["-p", parent] if parent else []), "-m", "Notes added by 'git notes append'"
    )
    repo.git("update-ref", REF, commit.strip())


def test_our_first_line_overwritten_by_a_users_root_notes_commit_comes_back(repo: Repo) -> None:
    """CI's loss: the user's append read the ref before our first write made it, and looked for
    its parent before that write landed too, so it made a root commit over ours. The tip's
    history holds no commit of ours, but the line is ours and must come back."""
    noted, theirs, later = repo.commits(3)
    notes.add(repo.git_dir, REF, {noted: [link_line("a1")]})
    _stale_user_write(repo, None, theirs, "user-1\n", parent=None)
    assert repo.note(noted) == "", "git's lost update"

    done = notes.add(repo.git_dir, REF, {later: [link_line("a2")]})

    assert done.restored == {noted: [link_line("a1")]}
    assert repo.note(noted) == link_line("a1") + "\n"
    assert repo.note(theirs) == "user-1\n", "and the user's note is kept"
    assert repo.note(later) == link_line("a2") + "\n"


def test_a_stale_append_on_an_older_commit_of_ours_does_not_hide_our_newest_one(repo: Repo) -> None:
    """The same loss with an existing ref: the user's git read the tree and its parent while our
    older commit was the tip, and landed after our newer one. Walking back from its tip finds a
    commit of ours, but not the newest: what only the newest added must still come back."""
    first, second, theirs, later = repo.commits(4)
    notes.add(repo.git_dir, REF, {first: [link_line("a1")]})
    older = repo.git("rev-parse", REF).strip()
    notes.add(repo.git_dir, REF, {second: [link_line("a2")]})
    _stale_user_write(repo, older, theirs, "user-1\n", parent=older)
    assert repo.note(second) == "", "git's lost update"

    done = notes.add(repo.git_dir, REF, {later: [link_line("a3")]})

    assert done.restored == {second: [link_line("a2")]}
    assert repo.note(first) == link_line("a1") + "\n"
    assert repo.note(second) == link_line("a2") + "\n"
    assert repo.note(theirs) == "user-1\n"


def test_a_line_dropped_further_back_than_the_look_back_depth_still_comes_back(repo: Repo) -> None:
    """A stale write, then more notes commits by others than `REPAIR_DEPTH` before our next
    write: the commit of ours is out of reach of the walk back from the tip."""
    noted, theirs, later = repo.commits(3)
    notes.add(repo.git_dir, REF, {noted: [link_line("a1")]})
    _stale_user_write(repo, None, theirs, "user-0\n", parent=repo.git("rev-parse", REF).strip())
    for i in range(1, notes.REPAIR_DEPTH + 2):
        tip = repo.git("rev-parse", REF).strip()
        _stale_user_write(repo, tip, theirs, f"user-{i}\n", parent=tip)
    assert repo.note(noted) == ""

    done = notes.add(repo.git_dir, REF, {later: [link_line("a2")]})

    assert done.restored == {noted: [link_line("a1")]}
    assert repo.note(noted) == link_line("a1") + "\n"
    assert repo.note(theirs) == f"user-{notes.REPAIR_DEPTH + 1}\n"


def test_the_record_of_our_last_write_is_private_and_moves_with_the_notes_ref(repo: Repo) -> None:
    """Where the writer keeps its newest commit: a ref outside refs/notes/ (so `git notes` and
    `tracekeeper push`, which pushes only the notes ref, never see it), always equal to the notes
    ref right after our write."""
    (sha,) = repo.commits(1)
    notes.add(repo.git_dir, REF, {sha: [link_line("a1")]})
    private = notes.written_ref(REF)
    assert not private.startswith("refs/notes/")
    assert repo.git("rev-parse", private).strip() == repo.git("rev-parse", REF).strip()
    assert repo.git("notes", f"--ref={REF}", "list").split() != []
    assert "tracekeeper" not in repo.git("for-each-ref", "refs/notes/")


def test_a_notes_ref_deleted_whole_stays_deleted_though_our_record_remembers_it(repo: Repo) -> None:
    """`git update-ref -d` of the notes ref is no stale write (git notes never deletes it): the
    record of our last write must not bring the deleted notes back."""
    old, new = repo.commits(2)
    notes.add(repo.git_dir, REF, {old: [link_line("a1")]})
    repo.git("update-ref", "-d", REF)
    done = notes.add(repo.git_dir, REF, {new: [link_line("a2")]})
    assert done.restored == {}
    assert repo.note(old) == ""
    assert repo.git("rev-parse", notes.written_ref(REF)).strip() == repo.git("rev-parse", REF).strip()


def test_a_notes_ref_deleted_whole_then_written_by_the_user_first_stays_deleted(repo: Repo) -> None:
    """As above, but the user (or `git pull` fetching notes, `tracekeeper pull`) writes the new
    ref before the daemon does: its first commit is a root commit, like a stale append's. The
    deleted notes must not come back with the daemon's next write all the same."""
    old, theirs, new = repo.commits(3)
    notes.add(repo.git_dir, REF, {old: [link_line("a1")]})
    repo.git("update-ref", "-d", REF)
    repo.git("notes", f"--ref={REF}", "add", "-m", "fresh start", theirs)
    done = notes.add(repo.git_dir, REF, {new: [link_line("a2")]})
    assert done.restored == {}
    assert repo.note(old) == ""
    assert repo.note(theirs) == "fresh start\n"


def test_a_pulled_note_nested_too_deep_for_json_does_not_stop_every_later_write(repo: Repo) -> None:
    """A teammate's note (fetched by `pull`) holds a line `json.loads` cannot recurse through.
    When a later commit not ours changes that note again (the next pull), the writer reads the
    old note to see what it dropped: that read must not raise, or no note is written in this
    repository again (the commit the writer would compare with never moves past it)."""
    theirs, new = repo.commits(2)
    notes.add(repo.git_dir, REF, {new: [link_line("a1")]})
    hostile = notes.META_PREFIX + "[" * 5000 + "]" * 5000
    repo.git("notes", f"--ref={REF}", "add", "-m", hostile, theirs)  # what the first pull brought
    notes.add(repo.git_dir, REF, {new: [link_line("a2")]})
    repo.git("notes", f"--ref={REF}", "append", "-m", "teammate's second line", theirs)  # the next pull
    done = notes.add(repo.git_dir, REF, {new: [link_line("a3")]})
    assert done.changed == [new]
    assert repo.note(new).splitlines() == [link_line("a1"), link_line("a2"), link_line("a3")]


def test_a_swap_loses_when_another_tracekeeper_writer_moved_our_record(repo: Repo) -> None:
    """The record moves under the same compare-and-swap as the notes ref, in one transaction:
    if either moved since we read them, neither moves."""
    (sha,) = repo.commits(1)
    notes.add(repo.git_dir, REF, {sha: [link_line("a1")]})
    tip = repo.git("rev-parse", REF).strip()
    record = notes.written_ref(REF)
    tree = repo.git("rev-parse", f"{tip}^{{tree}}").strip()
    elsewhere = repo.git("commit-tree", tree, "-p", tip, "-m", notes.COMMIT_MESSAGE).strip()
    repo.git("update-ref", record, elsewhere)
    with pytest.raises(notes._Race):
        notes._swap(repo.git_dir, REF, elsewhere, tip, tip)
    assert repo.git("rev-parse", REF).strip() == tip, "the notes ref did not move either"
    assert repo.git("rev-parse", record).strip() == elsewhere


def test_the_ref_moving_between_our_read_and_our_swap_costs_nobody_a_line(
    repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race made certain: git's own append lands right before our first update-ref."""
    (sha,) = repo.commits(1)
    notes.add(repo.git_dir, REF, {sha: [link_line("one")]})
    real_swap = notes._swap
    calls: list[str | None] = []

    def swap_after_the_user(
        git_dir: Path, ref: str, new: str, old: str | None, written: str | None, **kwargs: notes.Plumbing | None
    ) -> None:
        if not calls:
            repo.git("notes", f"--ref={REF}", "append", "-m", "theirs", sha)
        calls.append(old)
        real_swap(git_dir, ref, new, old, written, **kwargs)

    monkeypatch.setattr(notes, "_swap", swap_after_the_user)
    done = notes.add(repo.git_dir, REF, {sha: [link_line("two")]})
    assert done.races == 1 and len(calls) == 2 and calls[0] != calls[1], "the first swap failed, the second won"
    assert repo.note(sha).splitlines() == [link_line("one"), "", "theirs", link_line("two")]
    assert repo.git("log", "-1", "--format=%s", REF).strip() == notes.COMMIT_MESSAGE


# --- batches -------------------------------------------------------------------------


def _count_git(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every git process the notes code starts (short-lived or piped), by subcommand."""
    started: list[str] = []
    real_run, real_pipe = git.run, git.Pipe.__init__

    def run(git_dir: Path | str, args: list[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
        started.append(next(a for a in args if not a.startswith("-") and "=" not in a))
        return real_run(git_dir, args, **kwargs)  # type: ignore[arg-type]

    def pipe(self: git.Pipe, git_dir: Path | str, args: list[str], env: dict[str, str] | None = None) -> None:
        started.append(args[0])
        real_pipe(self, git_dir, args, env)

    monkeypatch.setattr(git, "run", run)
    monkeypatch.setattr(git.Pipe, "__init__", pipe)
    return started


def test_a_batch_of_commits_is_one_notes_commit_with_as_many_git_processes_as_one(
    repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    shas = repo.commits(41)
    repo.git("notes", f"--ref={REF}", "add", "-m", "a user's note", shas[0])
    started = _count_git(monkeypatch)
    notes.add(repo.git_dir, REF, {shas[1]: [link_line("single")]})
    single = list(started)
    started.clear()
    done = notes.add(repo.git_dir, REF, {sha: [link_line(sha[:8])] for sha in shas})
    assert sorted(done.changed) == sorted(shas)
    assert single == ["cat-file", "hash-object", "mktree", "commit-tree", "update-ref"]
    assert started == single, "as many git processes for 41 notes as for one"
    assert repo.git("rev-list", "--count", REF).strip() == "3", "the user's commit, one single, one for the batch"
    assert repo.note(shas[0]) == f"a user's note\n{link_line(shas[0][:8])}\n"
    for sha in shas[2:]:
        assert repo.note(sha) == link_line(sha[:8]) + "\n"
    started.clear()
    again = notes.add(repo.git_dir, REF, {sha: [link_line(sha[:8])] for sha in shas})
    assert again.commit is None and again.changed == []
    assert started == ["cat-file"], "nothing to write: a look, no commit"


def test_notes_commit_identity_follows_git_config(repo: Repo) -> None:
    (sha,) = repo.commits(1)
    notes.add(repo.git_dir, REF, {sha: [link_line("x")]})
    assert repo.git("log", "-1", "--format=%an <%ae>|%cn <%ce>", REF).strip() == (
        "Test <test@example.com>|Test <test@example.com>"
    )


# --- fanout: the layout git reads and writes ------------------------------------------


def _git_adds(repo: Repo, ref: str, shas: list[str], text: str) -> None:
    """Notes added by git itself in one notes commit: one note, then `git notes copy --stdin`."""
    repo.git("notes", f"--ref={ref}", "add", "-f", "-m", text, shas[0])
    if len(shas) > 1:
        pairs = "".join(f"{shas[0]} {sha}\n" for sha in shas[1:])
        repo.git("notes", f"--ref={ref}", "copy", "-f", "--stdin", input=pairs)


@pytest.mark.parametrize(("before", "added"), [(40, 60), (300, 150)], ids=["flat-to-fanout", "fanout"])
def test_our_notes_tree_has_the_layout_git_gives_the_same_notes(repo: Repo, before: int, added: int) -> None:
    """Start from a tree git wrote (flat with 40 notes, fanned out with 300), add notes to old
    and new commits, and compare with git adding the same notes: same paths, git reads ours."""
    shas = repo.commits(before + added)
    _git_adds(repo, REF, shas[:before], "base")
    twin = "refs/notes/twin"
    repo.git("update-ref", twin, REF)
    before_paths = repo.note_paths()
    assert any("/" in p for p in before_paths) == (before > 60), "the starting layout is git's"
    touched = shas[before - added // 3 : before + added - added // 3]
    notes.add(repo.git_dir, REF, {sha: [link_line(sha[:8])] for sha in touched})
    for sha in touched:  # git, one note at a time, as a user would
        repo.git("notes", f"--ref={twin}", "append", "-m", link_line(sha[:8]), sha)
    assert repo.note_paths() == repo.note_paths(twin)
    assert any("/" in p for p in repo.note_paths()), "fanned out"
    listed = repo.git("notes", f"--ref={REF}", "list").split()[1::2]
    assert sorted(listed) == sorted(set(shas[:before]) | set(touched)), "every object once"
    old, new = touched[0], touched[-1]
    assert repo.note(old) == f"base\n{link_line(old[:8])}\n"
    assert repo.note(new) == link_line(new[:8]) + "\n"
    logged = repo.git("log", f"--notes={REF}", "-1", "--format=%N", new)
    assert logged.strip() == link_line(new[:8])
    # And git keeps reading and writing the tree after us.
    repo.git("notes", f"--ref={REF}", "append", "-m", "user", new)
    assert repo.note(new) == f"{link_line(new[:8])}\n\nuser\n"
    assert notes.all_notes(repo.git_dir, REF)[old] == f"base\n{link_line(old[:8])}\n"


def test_a_note_stored_twice_at_two_fanout_levels_is_read_as_git_reads_it_and_stored_once(repo: Repo) -> None:
    """A tree another tool wrote with one note both flat and under `xx/`: git concatenates
    them (notes.c combine_notes_concatenate); our write keeps that text, in one place."""
    sha, other = repo.commits(2)
    flat = repo.git("hash-object", "-w", "--stdin", input="flat\n").strip()
    deep = repo.git("hash-object", "-w", "--stdin", input="deep\n").strip()
    sub = repo.git("mktree", input=f"100644 blob {deep}\t{sha[2:]}\n").strip()
    root = repo.git("mktree", input=f"100644 blob {flat}\t{sha}\n040000 tree {sub}\t{sha[:2]}\n").strip()
    repo.git("update-ref", REF, repo.git("commit-tree", root, "-m", "by hand").strip())
    assert repo.note(sha) == "deep\n\nflat\n"
    notes.add(repo.git_dir, REF, {sha: [link_line("x")], other: [link_line("y")]})
    assert repo.note(sha) == f"deep\n\nflat\n{link_line('x')}\n"
    assert [p for p in repo.note_paths() if p.replace("/", "") == sha] == [f"{sha[:2]}/{sha[2:]}"]
    assert repo.note(other) == link_line("y") + "\n"


# --- what the repair does and does not do --------------------------------------------


def test_a_note_the_user_removed_with_git_notes_remove_stays_removed(repo: Repo) -> None:
    sha, other = repo.commits(2)
    notes.add(repo.git_dir, REF, {sha: [link_line("x")]})
    repo.git("notes", f"--ref={REF}", "remove", sha)
    done = notes.add(repo.git_dir, REF, {other: [link_line("y")]})
    assert done.restored == {}
    assert repo.note(sha) == ""


def test_a_stale_git_notes_edit_that_removes_one_note_does_not_take_our_newer_notes_with_it(
    repo: Repo, tmp_path: Path
) -> None:
    """`git notes edit` emptied removes that note, but writes the whole tree it read before the
    editor ran ("Notes removed by 'git notes edit'"): a note the daemon added meanwhile on
    another commit vanishes with it. Only the edited note was removed on purpose."""
    edited, linked, later = repo.commits(3)
    repo.git("notes", f"--ref={REF}", "add", "-m", "a user's todo", edited)
    notes.add(repo.git_dir, REF, {edited: [link_line("kept")]})
    editor, ready, go = _editor(tmp_path, text="")
    user = subprocess.Popen(
        ["git", "notes", f"--ref={REF}", "edit", edited],
        cwd=repo.work,
        env={**repo.env, "GIT_EDITOR": str(editor)},
        stderr=subprocess.PIPE,
    )
    assert ready.read_text() == "ready\n"
    notes.add(repo.git_dir, REF, {linked: [link_line("during")]})
    go.write_text("go\n")
    assert user.wait(timeout=30) == 0
    assert repo.git("log", "-1", "--format=%s", REF).strip() == "Notes removed by 'git notes edit'"
    assert repo.note(linked) == "", "git's lost update"

    notes.add(repo.git_dir, REF, {later: [link_line("next job")]})

    assert repo.note(linked) == link_line("during") + "\n", "the daemon's note is back"
    assert repo.note(edited) == "", "the note the user emptied stays removed"
    assert repo.note(later) == link_line("next job") + "\n"


def test_a_stale_write_that_undoes_a_tombstone_cannot_bring_the_dead_link_back(repo: Repo) -> None:
    """A lost update can drop a tombstone and restore the link it replaced; putting the
    tombstone back buries the link again."""
    (sha,) = repo.commits(1)
    live = notes.TraceLink("file:///t/dead.jsonl", "codex", "s", 1, 2, 3, "0" * 64)
    notes.add(repo.git_dir, REF, {sha: ["mine", *live.lines()]})
    stale_tip = repo.git("rev-parse", REF).strip()
    stone = notes.Tombstone(live.url, "codex", "s", "2026-01-01T00:00:00Z", "me")
    notes.write(repo.git_dir, REF, {sha: lambda text: notes.bury(text, {live.url: stone})})
    # What a `git notes append` that read `stale_tip` writes: its tree, our commit as parent.
    stale = repo.git("rev-parse", f"{stale_tip}^{{tree}}").strip()
    tip = repo.git("rev-parse", REF).strip()
    repo.git(
        "update-ref", REF, repo.git("commit-tree", stale, "-p", tip, "-m", "Notes added by 'git notes append'").strip()
    )
    assert live.lines()[0] in repo.note(sha).splitlines()
    done = notes.repair(repo.git_dir, REF)
    assert done.restored == {sha: [stone.line()]}
    assert repo.note(sha) == f"mine\n{stone.line()}\n"


def test_a_note_in_another_encoding_keeps_its_bytes(repo: Repo) -> None:
    (sha,) = repo.commits(1)
    raw = "caf\xe9 au lait\r\n".encode("latin-1")
    blob = (
        subprocess.run(
            ["git", "hash-object", "-w", "--stdin"], cwd=repo.work, input=raw, capture_output=True, check=True
        )
        .stdout.decode()
        .strip()
    )
    repo.git("notes", f"--ref={REF}", "add", "-C", blob, sha)
    notes.add(repo.git_dir, REF, {sha: [link_line("x")]})
    shown = subprocess.run(
        ["git", "notes", f"--ref={REF}", "show", sha], cwd=repo.work, capture_output=True, check=True
    ).stdout
    assert shown == raw + link_line("x").encode() + b"\n"


def test_the_daemon_puts_back_its_line_after_a_users_stale_notes_write_without_a_new_commit(env: Env) -> None:
    """`git notes append` started before our write ends by writing back the note it read (no
    compare-and-swap in git): our line is gone. The daemon notices on its next write, and for
    repositories it wrote to recently it looks on its own, so nobody waits for another commit."""
    env.vars["TRACEKEEPER_FOLLOW_DEBOUNCE"] = "0.3"  # the daemon's housekeeping tick
    repo, _ = session_repo(env, 3)
    with running_daemon(env):
        sha = repo.commit("x")
        ours = wait_for(lambda: repo.note(sha), what="the note")
        # What the stale append leaves: the note it read (empty) plus the user's line.
        repo.git("notes", "--ref", "hf-traces", "add", "-f", "-m", "reviewed-by: bob", sha)
        assert "hf-trace:" not in repo.note(sha)
        back = wait_for(lambda: "hf-trace:" in repo.note(sha) and repo.note(sha), what="our line put back")
    assert "reviewed-by: bob" in back
    for line in ours.splitlines():
        assert line in back
