"""Notes travel: real bare remotes on disk, real clones, real git push and fetch.

Every case ends by asserting the exact notes each commit carries on every clone involved, so
"converged" means the same lines everywhere, not just "no error".
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from tracekeeper import install, sync
from tracekeeper.cli import sync as sync_cli
from tracekeeper.sync import MergeOutcome, PushOutcome
from tracekeeperd import notesync
from tracekeeperd.notes import TraceLink, add_link

from .harness import Env, Repo, make_repo, wait_for

REF = "refs/notes/hf-traces"
TRACKING = "refs/notes/remotes/origin/hf-traces"


def link(name: str) -> TraceLink:
    return TraceLink(
        url=f"https://huggingface.co/buckets/team/agent-traces/tree/app-0a1b2c3d/sessions/codex-{name}.jsonl",
        agent="codex",
        session_id=name,
        first_line=1,
        last_line=9,
        bytes=512,
        sha256="ab" * 32,
    )


def lines(*names: str) -> set[str]:
    return {line for name in names for line in link(name).lines()}


def note(repo: Repo, sha: str, name: str) -> None:
    """Write a link the way the daemon does."""
    assert add_link(repo.git_dir, REF, sha, link(name))


def notes_of(repo: Repo, ref: str = REF) -> dict[str, set[str]]:
    found = {}
    for row in repo.git("notes", f"--ref={ref}", "list", check=False).splitlines():
        blob, commit = row.split()
        found[commit] = set(repo.git("cat-file", "-p", blob).splitlines())
    return found


def assert_notes(expected: dict[str, set[str]], *repos: Repo) -> None:
    for repo in repos:
        assert notes_of(repo) == expected, f"notes in {repo.path.name}"


def _clone(env: Env, remote: Path, name: str) -> Repo:
    path = env.root / "src" / name
    subprocess.run(["git", "clone", "-q", str(remote), str(path)], env=env.vars, check=True)
    return Repo(env, path)


@dataclass
class World:
    env: Env
    remote: Path
    a: Repo
    b: Repo
    base: str

    def clone(self, name: str) -> Repo:
        return _clone(self.env, self.remote, name)

    def remote_git(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run(
            ["git", f"--git-dir={self.remote}", *args], env=self.env.vars, capture_output=True, text=True, check=False
        )
        if check and proc.returncode != 0:
            raise AssertionError(proc.stderr)
        return proc.stdout.strip()

    def remote_notes(self) -> str:
        return self.remote_git("rev-parse", "-q", "--verify", REF, check=False)


@pytest.fixture
def world(env: Env, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """Clone `a` (made first) and clone `b` of one bare remote; this process uses the test's HOME."""
    for key, value in env.vars.items():
        monkeypatch.setenv(key, value)
    for key in ("TRACEKEEPER_NO_AUTO_PUSH", "HF_TRACE_NOTES_REF", "TRACEKEEPER_STATE_DIR", "GIT_DIR"):
        monkeypatch.delenv(key, raising=False)
    remote = env.root / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], env=env.vars, check=True)
    a = make_repo(env, "a")
    base = a.commit("base")
    a.git("remote", "add", "origin", "../../remote.git")  # relative, as git resolves it from the work tree
    a.git("push", "-q", "-u", "origin", "main")
    yield World(env, remote, a, _clone(env, remote, "b"), base)


def local_config(repo: Repo) -> bytes:
    return (repo.git_dir / "config").read_bytes()


# --- configure -----------------------------------------------------------------------------


def test_configure_does_not_change_what_git_push_pushes(world: World) -> None:
    a, b = world.a, world.b
    sha = a.commit("second")
    note(a, sha, "a1")
    dry_before = a.git("push", "--dry-run", "--porcelain")
    changes = sync.configure(a.path)
    assert {(c.key, c.action) for c in changes} == {
        ("remote.origin.fetch", "added"),
        ("notes.hf-traces.mergeStrategy", "added"),
    }
    assert a.git("config", "--get-all", "remote.origin.fetch").splitlines() == [
        "+refs/heads/*:refs/remotes/origin/*",
        "+refs/notes/hf-traces*:refs/notes/remotes/origin/hf-traces*",
    ]
    assert a.git("config", "--get-all", "remote.origin.push", check=False) == ""
    assert a.git("config", "notes.hf-traces.mergeStrategy") == "cat_sort_uniq"
    assert a.git("config", "--get", "notes.mergeStrategy", check=False) == ""  # the user's other notes: untouched
    assert a.git("push", "--dry-run", "--porcelain") == dry_before

    # A second run adds nothing.
    config = local_config(a)
    assert {c.action for c in sync.configure(a.path)} == {"present"}
    assert local_config(a) == config

    a.git("push", "-q")  # a plain push: the branch goes, as before; notes do not (no hook here)
    assert world.remote_git("rev-parse", "refs/heads/main") == sha
    assert world.remote_notes() == ""

    # A configured exact refspec would make `git fetch` die on a remote without notes: ours does not.
    a.git("fetch")
    sync.configure(b.path)
    b.git("pull", "-q")
    assert b.git("rev-parse", "HEAD") == sha
    assert_notes({sha: lines("a1")}, a)
    assert_notes({}, b)


def test_unconfigure_restores_the_config_byte_for_byte(world: World) -> None:
    a = world.a
    mirror = world.env.root / "mirror.git"
    subprocess.run(["git", "init", "-q", "--bare", str(mirror)], env=world.env.vars, check=True)
    a.git("remote", "add", "mirror", str(mirror))
    a.git("config", "notes.hf-traces.mergeStrategy", "union")  # the user's choice
    own = "+refs/notes/hf-traces*:refs/notes/remotes/mirror/hf-traces*"
    a.git("config", "--add", "remote.mirror.fetch", own)  # the user already had ours
    note(a, world.base, "a1")
    before = local_config(a)

    changes = sync.configure(a.path)
    assert {(c.key, c.action) for c in changes} == {
        ("remote.origin.fetch", "added"),
        ("remote.mirror.fetch", "present"),
        ("notes.hf-traces.mergeStrategy", "kept"),
    }
    assert a.git("config", "notes.hf-traces.mergeStrategy") == "union"
    sync.push_notes(a.path, "origin")
    sync.pull_notes(a.path, "mirror")
    assert a.git("for-each-ref", "--format=%(refname)", "refs/notes/remotes/").splitlines() == [TRACKING]
    assert local_config(a) != before

    removed = sync.unconfigure(a.path)
    assert [(c.key, c.action) for c in removed] == [("remote.origin.fetch", "removed")]
    assert local_config(a) == before
    assert a.git("for-each-ref", "--format=%(refname)", "refs/notes/").splitlines() == [REF]
    assert not (a.git_dir / sync.STATE_FILE).exists()
    assert sync.unconfigure(a.path) == []
    b = world.b
    sync.pull_notes(b.path, "origin")
    assert_notes({world.base: lines("a1")}, a, b)


def test_a_remote_added_after_install_is_reported_by_doctor_and_set_up_by_pull_and_push(world: World) -> None:
    from tracekeeper import doctor
    from tracekeeperd.paths import resolve

    a = world.a
    sync.configure(a.path)  # what `tracekeeper install` does
    ctx = doctor.Context(a.path, paths=resolve(world.env.vars), env=world.env.vars)
    assert doctor.check_notes_fetch(ctx).status is doctor.Status.OK
    for name in ("mirror", "backup"):
        bare = world.env.root / f"{name}.git"
        subprocess.run(["git", "init", "-q", "--bare", str(bare)], env=world.env.vars, check=True)
        a.git("remote", "add", name, str(bare))
    check = doctor.check_notes_fetch(doctor.Context(a.path, paths=resolve(world.env.vars), env=world.env.vars))
    assert check.status is doctor.Status.WARN
    assert check.message == "remotes backup, mirror do not fetch trace notes (added after `tracekeeper install`)"
    assert check.fix == "`tracekeeper pull --all` (it sets up every remote, then fetches)"
    mirror_spec = "+refs/notes/hf-traces*:refs/notes/remotes/mirror/hf-traces*"
    sync.pull_notes(a.path, "mirror")
    assert a.git("config", "--get-all", "remote.mirror.fetch").splitlines()[-1] == mirror_spec
    note(a, world.base, "a1")
    sync.push_notes(a.path, "backup")
    assert (
        "+refs/notes/hf-traces*:refs/notes/remotes/backup/hf-traces*"
        in a.git("config", "--get-all", "remote.backup.fetch").splitlines()
    )
    ctx = doctor.Context(a.path, paths=resolve(world.env.vars), env=world.env.vars)
    assert doctor.check_notes_fetch(ctx).status is doctor.Status.OK
    sync.unconfigure(a.path)  # what `uninstall` undoes includes what pull and push added
    assert mirror_spec not in a.git("config", "--get-all", "remote.mirror.fetch", check=False).splitlines()


def test_relink_after_a_plain_git_pull_uses_the_notes_that_pull_fetched(world: World) -> None:
    """`git pull` with the notes refspec fetches the notes into the tracking ref only: relink
    merges them in first, instead of saying "nothing to relink" until `tracekeeper pull`."""
    from tracekeeper import rewrite

    a, b = world.a, world.b
    sync.configure(a.path)
    sync.configure(b.path)
    a.git("checkout", "-q", "-b", "side")
    source = a.commit("on side", file="side.txt")
    note(a, source, "a1")
    a.git("checkout", "-q", "main")
    a.commit("on main", file="main.txt")
    a.git("cherry-pick", source)  # outside our hooks: the copy has no links yet
    picked = a.git("rev-parse", "HEAD")
    a.git("push", "-q", "origin", "main", "side")
    sync.push_notes(a.path, "origin")
    b.git("pull", "-q")  # plain: the configured refspecs, ours included
    assert b.git("rev-parse", "-q", "--verify", TRACKING, check=False), "git pull fetched the notes"
    assert notes_of(b) == {}, "but only into the tracking ref"
    found = rewrite.relink(b.path, REF)
    assert found == [rewrite.Relinked(picked, source, "patch-id")]
    assert notes_of(b)[picked] == lines("a1")


# --- push and pull -------------------------------------------------------------------------


def test_notes_pushed_and_pulled_and_a_plain_fetch_fills_the_tracking_ref(world: World) -> None:
    a, b = world.a, world.b
    sync.configure(a.path)
    sync.configure(b.path)
    first = sync.pull_notes(b.path, "origin")
    assert first.outcome is MergeOutcome.NO_REMOTE_NOTES and first.remote_oid is None

    note(a, world.base, "a1")
    pushed = sync.push_notes(a.path, "origin")
    assert pushed.outcome is PushOutcome.PUSHED and pushed.attempts == 1
    assert world.remote_notes() == a.git("rev-parse", REF)
    assert sync.push_notes(a.path, "origin").outcome is PushOutcome.UP_TO_DATE

    b.git("fetch", "-q")  # plain fetch: the tracking ref moves, the live ref is not created
    assert b.git("rev-parse", TRACKING) == world.remote_notes()
    assert b.git("rev-parse", "-q", "--verify", REF, check=False) == ""
    assert sync.pull_notes(b.path, "origin").outcome is MergeOutcome.CREATED

    sha = b.commit("from b")
    b.git("push", "-q")
    note(b, sha, "b1")
    assert sync.push_notes(b.path, "origin").outcome is PushOutcome.PUSHED
    a.git("pull", "-q")
    assert sync.pull_notes(a.path, "origin").outcome is MergeOutcome.FAST_FORWARD
    assert_notes({world.base: lines("a1"), sha: lines("b1")}, a, b)


def test_two_clones_noting_one_commit_keep_both_lines(world: World) -> None:
    a, b = world.a, world.b
    note(a, world.base, "a1")
    note(b, world.base, "b1")
    assert sync.push_notes(a.path, "origin").outcome is PushOutcome.PUSHED
    second = sync.push_notes(b.path, "origin")
    assert second.outcome is PushOutcome.PUSHED and second.pulled.outcome is MergeOutcome.MERGED
    assert sync.pull_notes(a.path, "origin").outcome is MergeOutcome.FAST_FORWARD
    assert_notes({world.base: lines("a1", "b1")}, a, b)
    assert world.remote_notes() == a.git("rev-parse", REF) == b.git("rev-parse", REF)


def test_a_fetch_never_overwrites_local_notes(world: World) -> None:
    a, b = world.a, world.b
    sync.configure(b.path)
    note(a, world.base, "a1")
    sync.push_notes(a.path, "origin")
    note(b, world.base, "b1")
    mine = b.git("rev-parse", REF)

    b.git("fetch", "-q")
    assert b.git("rev-parse", REF) == mine
    assert_notes({world.base: lines("b1")}, b)
    assert notes_of(b, TRACKING) == {world.base: lines("a1")}

    # Someone rewinds the remote's notes: a plain fetch still succeeds (forced, into the
    # tracking ref only) and still leaves local notes alone.
    orphan = a.git("commit-tree", "-m", "rewound", a.git("hash-object", "-w", "-t", "tree", "/dev/null"))
    a.git("push", "-q", "--force", "origin", f"{orphan}:{REF}")
    b.git("fetch", "-q")
    assert b.git("rev-parse", TRACKING) == orphan
    assert b.git("rev-parse", REF) == mine

    # The remote's notes ref deleted: the tracking ref is pruned with it; a pull is a no-op.
    a.git("push", "-q", "origin", f":{REF}")
    assert sync.pull_notes(b.path, "origin").outcome is MergeOutcome.NO_REMOTE_NOTES
    assert b.git("rev-parse", "-q", "--verify", TRACKING, check=False) == ""
    assert b.git("rev-parse", REF) == mine
    sync.push_notes(b.path, "origin")
    sync.push_notes(a.path, "origin")  # a merges b's notes into its own, with no common history
    sync.pull_notes(b.path, "origin")
    assert_notes({world.base: lines("a1", "b1")}, a, b)


def _shared_commit(world: World, message: str) -> str:
    sha = world.a.commit(message)
    world.a.git("push", "-q")
    world.b.git("pull", "-q")
    return sha


def _converge_after_concurrent_pushes(world: World, push_both: Callable[[Repo, Repo], None]) -> None:
    """Three rounds of: a commit both clones have, a note on it from each, then `push_both` pushing
    the two at once; after pulling, both clones hold every note of both."""
    a, b = world.a, world.b
    expected: dict[str, set[str]] = {}
    for round_ in range(3):
        sha = _shared_commit(world, f"round {round_}")
        note(a, sha, f"a{round_}")
        note(b, sha, f"b{round_}")
        expected[sha] = lines(f"a{round_}", f"b{round_}")
        push_both(a, b)
    for repo in (a, b):
        sync.pull_notes(repo.path, "origin")
    assert_notes(expected, a, b)


def test_concurrent_pushes_from_two_threads_converge(world: World) -> None:
    def push_both(a: Repo, b: Repo) -> None:
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def run(repo: Repo) -> None:
            barrier.wait()
            try:
                sync.push_notes(repo.path, "origin")
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(repo,)) for repo in (a, b)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert errors == []

    _converge_after_concurrent_pushes(world, push_both)
    assert world.remote_notes() == world.a.git("rev-parse", REF) == world.b.git("rev-parse", REF)


def test_concurrent_pushes_from_two_processes_converge(world: World) -> None:
    def push_both(a: Repo, b: Repo) -> None:
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "tracekeeper.sync", "push", "-C", str(repo.path), "origin"],
                env=world.env.vars,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for repo in (a, b)
        ]
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            assert out.startswith("notes pushed to origin: ")

    _converge_after_concurrent_pushes(world, push_both)


RACER = """
import sys
from pathlib import Path
from tracekeeper import sync
from tracekeeperd.git import find_git_dir
from tracekeeperd.notes import TraceLink, add_link

marker, clone, sha = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
if marker.exists():
    sys.exit(0)
marker.write_text("")
link = TraceLink(url=sys.argv[4], agent="codex", session_id="racer", first_line=1, last_line=9,
                 bytes=512, sha256="ab" * 32)
add_link(find_git_dir(clone), "refs/notes/hf-traces", sha, link)
sync.push_notes(clone, "origin")
"""


def _racer(world: World, clone: Repo, sha: str) -> str:
    """Shell that makes `clone` note `sha` and push it, once: another user's push, mid-flight."""
    script = world.env.root / "racer.py"
    script.write_text(RACER)
    args = [sys.executable, str(script), str(world.env.root / "raced"), str(clone.path), sha, link("racer").url]
    return " ".join(f"'{arg}'" for arg in args) + " </dev/null >/dev/null"


def _hook(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def test_a_push_landing_between_our_fetch_and_our_push_is_merged_and_retried(world: World) -> None:
    a, b = world.a, world.b
    note(a, world.base, "a1")
    sync.push_notes(a.path, "origin")
    note(b, world.base, "b1")
    # Right after b's fetch moves its tracking ref, a pushes again: b's first push is rejected.
    _hook(
        b.git_dir / "hooks" / "reference-transaction",
        f'[ "$1" = committed ] || exit 0\nwhile read -r old new ref; do\n'
        f'  [ "$ref" = {TRACKING} ] && {_racer(world, a, world.base)}\ndone\nexit 0\n',
    )
    result = sync.push_notes(b.path, "origin", sleep=lambda _: None)
    assert (world.env.root / "raced").exists()
    assert result.outcome is PushOutcome.PUSHED and result.attempts == 2
    sync.pull_notes(a.path, "origin")
    assert_notes({world.base: lines("a1", "b1", "racer")}, a, b)


def test_a_remote_side_ref_lock_race_is_retried(world: World) -> None:
    a, b = world.a, world.b
    note(a, world.base, "a1")
    sync.push_notes(a.path, "origin")
    note(b, world.base, "b1")
    # While the remote runs pre-receive for b's push, a's push lands: "failed to update ref".
    quarantine = "GIT_QUARANTINE_PATH GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES GIT_DIR"
    _hook(world.remote / "hooks" / "pre-receive", f"unset {quarantine}\n{_racer(world, a, world.base)}\nexit 0\n")
    result = sync.push_notes(b.path, "origin", sleep=lambda _: None)
    assert result.outcome is PushOutcome.PUSHED and result.attempts == 2
    sync.pull_notes(a.path, "origin")
    assert_notes({world.base: lines("a1", "b1", "racer")}, a, b)


def test_a_note_written_during_a_merge_is_kept(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """`git notes merge` updates its ref blindly; our compare-and-swap must not drop a daemon write."""
    a, b = world.a, world.b
    note(a, world.base, "a1")
    sync.push_notes(a.path, "origin")
    note(b, world.base, "b1")
    late = b.commit("late")
    real = sync._merge_commit
    calls: list[str] = []

    def merge_then_daemon_writes(where: sync.Where, ours: str, theirs_ref: str) -> str:
        merged = real(where, ours, theirs_ref)
        if not calls:
            note(b, late, "daemon")  # lands between our read of the ref and our update
        calls.append(merged)
        return merged

    monkeypatch.setattr(sync, "_merge_commit", merge_then_daemon_writes)
    assert sync.pull_notes(b.path, "origin").outcome is MergeOutcome.MERGED
    assert len(calls) == 2
    monkeypatch.undo()
    b.git("push", "-q")
    sync.push_notes(b.path, "origin")
    a.git("pull", "-q")
    sync.pull_notes(a.path, "origin")
    assert_notes({world.base: lines("a1", "b1"), late: lines("daemon")}, a, b)


# --- the pre-push hook ---------------------------------------------------------------------


USER_HOOK = """cat >> "{root}/user-hook.log"
echo "args: $*" >> "{root}/user-hook.log"
[ -e "{root}/block" ] && exit 1
exit 0
"""


def _install_pre_push(repo: Path) -> list[install.HookChange]:
    """The pre-push hook as `tracekeeper install` places it (the test's environment picks the paths)."""
    from tracekeeperd.paths import resolve

    return install.place(repo, "pre-push", install.render("pre-push", resolve()))


def _uninstall_pre_push(repo: Path) -> list[install.HookChange]:
    return install.uninstall(repo, hooks=["pre-push"])


def _sync_runs(env: Env) -> int:
    log = env.state / "sync.log"
    return sum(" -> origin: " in line for line in log.read_text().splitlines()) if log.exists() else 0


def test_pre_push_hook_pushes_notes_after_the_push_and_chains_the_users_hook(world: World) -> None:
    a, b, root = world.a, world.b, world.env.root
    hooks = a.git_dir / "hooks"
    _hook(hooks / "pre-push", USER_HOOK.format(root=root))
    user_hook = (hooks / "pre-push").read_bytes()
    sync.configure(a.path)
    [change] = _install_pre_push(a.path)
    assert change.action == "installed" and change.chained == hooks / "pre-push.pre-tracekeeper"
    assert [c.action for c in _install_pre_push(a.path)] == ["unchanged"]

    sha = a.commit("pushed")
    note(a, sha, "a1")
    old = world.remote_git("rev-parse", "refs/heads/main")
    proc = subprocess.run(
        ["git", "push", "origin", "main"], cwd=a.path, env=world.env.vars, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "tracekeeper" not in proc.stdout + proc.stderr
    seen = (root / "user-hook.log").read_text()
    url = a.git("remote", "get-url", "origin")
    assert seen == f"refs/heads/main {sha} refs/heads/main {old}\nargs: origin {url}\n"
    local = a.git("rev-parse", REF)
    wait_for(lambda: _sync_runs(world.env) == 1, timeout=60, what="the background notes push")
    assert world.remote_notes() == local
    assert a.git("rev-parse", TRACKING) == local
    assert "pushed" in (world.env.state / "sync.log").read_text()

    # pre-push runs for --dry-run too: the job sees the push changed nothing and stops there.
    dry = a.commit("dry run")
    note(a, dry, "dry")
    a.git("push", "-q", "--dry-run", "origin", "main")
    wait_for(lambda: _sync_runs(world.env) == 2, timeout=60, what="the dry run's log line")
    assert "skipped: the push did not update the remote" in (world.env.state / "sync.log").read_text()
    assert world.remote_notes() == local
    assert world.remote_git("rev-parse", "refs/heads/main") == sha

    # The user's hook still blocks a push, and then nothing is pushed in the background either.
    (root / "block").touch()
    blocked = a.commit("blocked")
    note(a, blocked, "a2")
    proc = subprocess.run(
        ["git", "push", "origin", "main"], cwd=a.path, env=world.env.vars, capture_output=True, text=True, check=False
    )
    assert proc.returncode != 0
    assert world.remote_git("rev-parse", "refs/heads/main") == sha
    assert world.remote_notes() == local

    sync.pull_notes(b.path, "origin")
    assert_notes({sha: lines("a1"), dry: lines("dry"), blocked: lines("a2")}, a)
    assert_notes({sha: lines("a1")}, b)

    assert [c.action for c in _uninstall_pre_push(a.path)] == ["restored"]
    assert (hooks / "pre-push").read_bytes() == user_hook
    assert not (hooks / "pre-push.pre-tracekeeper").exists()
    assert [c.action for c in _uninstall_pre_push(a.path)] == ["absent"]


def test_pre_push_hook_skips_notes_pushes_and_honours_the_opt_out(world: World) -> None:
    a, b, env = world.a, world.b, world.env
    _install_pre_push(a.path)
    hook = a.git_dir / "hooks" / "pre-push"
    assert [c.action for c in _uninstall_pre_push(a.path)] == ["removed"] and not hook.exists()
    _install_pre_push(a.path)

    # Called directly with a notes-only push on stdin: silent, exit 0, nothing started.
    old = world.remote_git("rev-parse", "refs/heads/main")
    direct = subprocess.run(
        [str(hook), "origin", str(world.remote)],
        input=f"{REF} {old} {REF} {'0' * 40}\n",
        cwd=a.path,
        env=env.vars,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (direct.returncode, direct.stdout, direct.stderr) == (0, "", "")

    first = a.commit("opted out")
    note(a, first, "a1")
    a.git("push", "-q", "origin", "main", extra_env={"TRACEKEEPER_NO_AUTO_PUSH": "1"})
    assert world.remote_git("rev-parse", "refs/heads/main") == first
    a.git("push", "-q", "origin", REF)  # the user pushes notes by hand: the hook starts nothing
    assert world.remote_notes() == a.git("rev-parse", REF)

    second = a.commit("auto")
    note(a, second, "a2")
    a.git("push", "-q", "origin", "main")
    local = a.git("rev-parse", REF)
    wait_for(lambda: _sync_runs(env) >= 1, timeout=60, what="the background notes push")
    assert world.remote_notes() == local
    assert _sync_runs(env) == 1  # the two earlier pushes started no job

    sync.pull_notes(b.path, "origin")
    assert_notes({first: lines("a1"), second: lines("a2")}, a, b)


# --- second machine, status, doctor --------------------------------------------------------


def test_bootstrap_gives_a_fresh_clone_the_existing_notes(world: World) -> None:
    a = world.a
    note(a, world.base, "a1")
    sync.push_notes(a.path, "origin")
    fresh = world.clone("fresh")
    assert_notes({}, fresh)  # git clone never fetches notes

    fresh.git("remote", "add", "gone", str(world.env.root / "nowhere.git"))
    result = sync.bootstrap(fresh.path)
    assert list(result.errors) == ["gone"]  # an unreachable remote does not stop the others
    assert [(p.remote, p.outcome) for p in result.pulled] == [("origin", MergeOutcome.CREATED)]
    assert {c.action for c in result.config} == {"added"}
    fresh.git("remote", "remove", "gone")
    assert_notes({world.base: lines("a1")}, a, fresh)

    # From now on a plain `git pull` brings the notes to the tracking ref, and status knows.
    sha = a.commit("later")
    a.git("push", "-q")
    note(a, sha, "a2")
    sync.push_notes(a.path, "origin")
    fresh.git("pull", "-q")
    assert fresh.git("rev-parse", TRACKING) == world.remote_notes()
    assert notesync.unpushed(fresh.path, REF, "origin") == 0
    answer = CliRunner().invoke(sync_cli.pull, ["-C", str(fresh.path), "--json"])
    assert answer.exit_code == 0, answer.output
    assert [(r["remote"], r["outcome"]) for r in json.loads(answer.output)] == [("origin", "fast-forward")]

    # The documented one-liner, for a clone with no notes of its own yet.
    other = world.clone("other")
    other.git("fetch", "-q", "origin", f"{REF}:{REF}")
    assert_notes({world.base: lines("a1"), sha: lines("a2")}, a, fresh, other)


def test_unpushed_counts_notes_the_remote_lacks(world: World) -> None:
    a, b = world.a, world.b
    assert notesync.unpushed(a.path, REF, "origin") is None  # never fetched
    sync.pull_notes(a.path, "origin")
    assert notesync.unpushed(a.path, REF, "origin") == 0  # fetched; the remote has no notes, nor do we
    second = a.commit("second")
    note(a, world.base, "a1")
    note(a, second, "a2")
    assert notesync.unpushed(a.path, REF, "origin") == 2
    sync.push_notes(a.path, "origin")
    assert notesync.unpushed(a.path, REF, "origin") == 0
    note(a, world.base, "a3")  # a changed note counts too
    third = a.commit("third")
    note(a, third, "a4")
    assert notesync.unpushed(a.path, REF, "origin") == 2

    mirror = world.env.root / "mirror.git"
    subprocess.run(["git", "init", "-q", "--bare", str(mirror)], env=world.env.vars, check=True)
    a.git("remote", "add", "mirror", str(mirror))
    status = {s.remote: s for s in notesync.notes_status(a.path)}
    assert status["origin"].unpushed == 2 and status["origin"].last_push is not None
    assert status["origin"].fetch_configured is False
    assert status["mirror"].unpushed is None and status["mirror"].last_fetch is None
    sync.pull_notes(a.path, "mirror")
    assert notesync.unpushed(a.path, REF, "mirror") == 3
    assert sync.default_remote(a.path) == "origin"

    # b is behind (a pushed) but has nothing of its own: nothing unpushed.
    sync.pull_notes(b.path, "origin")
    assert notesync.unpushed(b.path, REF, "origin") == 0
    assert_notes({world.base: lines("a1"), second: lines("a2")}, b)
    assert_notes({world.base: lines("a1", "a3"), second: lines("a2"), third: lines("a4")}, a)


def test_forced_notes_refspecs_are_flagged(world: World) -> None:
    a, b = world.a, world.b
    sync.configure(b.path)
    assert sync.forced_notes_refspecs(b.path) == []  # ours writes the tracking ref only
    b.git("remote", "add", "polite", str(world.remote))
    for spec in ("refs/notes/*:refs/notes/*", "+refs/notes/other:refs/notes/other"):
        b.git("config", "--add", "remote.polite.fetch", spec)
    assert sync.forced_notes_refspecs(b.path) == []
    b.git("config", "--add", "remote.origin.fetch", "+refs/notes/*:refs/notes/*")
    b.git("remote", "add", "backup", str(world.remote))
    b.git("config", "--add", "remote.backup.fetch", "+refs/*:refs/*")
    b.git("remote", "add", "exact", str(world.remote))
    b.git("config", "remote.exact.fetch", f"+{REF}:{REF}")
    forced = sync.forced_notes_refspecs(b.path)
    assert [(f.remote, f.refspec) for f in forced] == [
        ("origin", "+refs/notes/*:refs/notes/*"),
        ("backup", "+refs/*:refs/*"),
        ("exact", f"+{REF}:{REF}"),
    ]
    assert forced[0] == "+refs/notes/*:refs/notes/*"
    assert forced[0].fix == "git config --fixed-value --unset remote.origin.fetch '+refs/notes/*:refs/notes/*'"
    b.git(*shlex.split(forced[0].fix)[1:])
    assert [f.remote for f in sync.forced_notes_refspecs(b.path)] == ["backup", "exact"]
    b.git("config", "--add", "remote.origin.fetch", "+refs/notes/*:refs/notes/*")

    # Why it matters: such a refspec makes a plain fetch replace b's own notes.
    note(a, world.base, "a1")
    sync.push_notes(a.path, "origin")
    note(b, world.base, "b1")
    b.git("fetch", "-q", "origin")
    assert_notes({world.base: lines("a1")}, a, b)


@pytest.mark.parametrize(
    "damaged",
    [
        {REF: ["origin"]},
        {REF: {"origin": "yesterday"}},
        {REF: {"origin": {"fetched_at": "yesterday", "pushed_at": [1], "remote_oid": 7}}},
        ["not", "an", "object"],
    ],
)
def test_a_damaged_sync_state_file_is_read_as_unknown_and_rewritten(world: World, damaged: object) -> None:
    """The state file is ours but lives in the user's .git (an editor, a half-restored backup):
    a damaged entry must read as "never synced", not stop `status` or `pull` with a traceback."""
    a = world.a
    (a.git_dir / notesync.STATE_FILE).write_text(json.dumps(damaged))
    status = {s.remote: s for s in notesync.notes_status(a.path)}
    assert status["origin"].last_fetch is None and status["origin"].last_push is None
    sync.pull_notes(a.path, "origin")
    after = {s.remote: s for s in notesync.notes_status(a.path)}
    assert isinstance(after["origin"].last_fetch, float)
