"""Trace links through amend, interactive rebase, cherry-pick and a forge's squash merge.

Real repositories and real git. Notes are written with `tracekeeperd.notes.add_link` (what the
daemon's worker calls) where the daemon is not the point, and by the real daemon where it is.
Every case asserts the exact trace lines each commit ends up with.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tracekeeper import rewrite
from tracekeeperd import notes

from .harness import Env, Repo, make_repo, note_links, running_daemon, wait_for

REF = "refs/notes/hf-traces"
S1 = "019c8a70-dda7-7f33-98ea-f30553347322"
S2 = "55604662-cf2a-4331-851a-ec234028f8ca"

#: The CLI with this module's commands added (the lead registers them in cli.py; until then,
#: and after, this runs the same click group `tracekeeper` runs).
CLI = (
    "import sys\n"
    "from tracekeeper import cli as c\n"
    "from tracekeeper.rewrite import relink_command\n"
    "from tracekeeper.trail import forget_command, log_command\n"
    "for command in (relink_command, log_command, forget_command):\n"
    "    if command.name not in c.cli.commands:\n"
    "        c.cli.add_command(command)\n"
    "sys.exit(c.main())\n"
)


def tk(env: Env, *args: str, cwd: Path | None = None, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CLI, *args],
        env=env.vars,
        cwd=cwd or env.root,
        capture_output=True,
        text=True,
        input=input,
        timeout=120,
        check=False,
    )


def link(session: str, first: int, last: int, agent: str = "codex") -> notes.TraceLink:
    return notes.TraceLink(
        url=f"file:///store/app-1234abcd/sessions/{agent}-{session}.jsonl",
        agent=agent,
        session_id=session,
        first_line=first,
        last_line=last,
        bytes=last * 100,
        sha256=f"{first:02d}{last:02d}".ljust(64, "0"),
    )


def add(repo: Repo, sha: str, *links: notes.TraceLink) -> None:
    for one in links:
        notes.add_link(repo.git_dir, REF, sha, one)


def expected(*links: notes.TraceLink) -> list[str]:
    """The exact trace lines of a note holding `links`: one URL line per session, one meta each."""
    lines: list[str] = []
    for one in links:
        for line in one.lines():
            if line not in lines:
                lines.append(line)
    return sorted(lines)


def ours(repo: Repo, sha: str) -> list[str]:
    return sorted(rewrite.trace_lines(repo.note(sha)))


def sha_of(repo: Repo, rev: str) -> str:
    return repo.git("rev-parse", rev)


def setup(repo: Repo, *, hooks: bool = True) -> None:
    """What `tracekeeper install` sets up for rewrites in git's config (the hooks are tested with
    the daemon in test_hook.py and test_rewrite_queued.py)."""
    del hooks
    rewrite.configure(repo.path, REF)


def todo_editor(repo: Repo, steps: list[tuple[str, str]]) -> dict[str, str]:
    """GIT_SEQUENCE_EDITOR that writes this exact todo list (action, commit)."""
    todo = repo.path.parent / "todo.txt"
    todo.write_text("".join(f"{action} {sha}\n" for action, sha in steps))
    script = repo.path.parent / "sequence-editor.sh"
    script.write_text(f"#!/bin/sh\ncat '{todo}' > \"$1\"\n")
    script.chmod(0o755)
    return {"GIT_SEQUENCE_EDITOR": str(script)}


# --- configure ------------------------------------------------------------------------------


def config(repo: Repo, key: str) -> list[str]:
    return repo.git("config", "--local", "--get-all", key, check=False).splitlines()


def test_configure_adds_only_what_is_missing_and_unconfigure_removes_exactly_that(env: Env) -> None:
    repo = make_repo(env)
    repo.git("config", "--add", "notes.rewriteRef", "refs/notes/commits")
    repo.git("config", "notes.rewriteMode", "concatenate")
    changes = {c.key: c for c in rewrite.configure(repo.path, "hf-traces")}
    assert changes["notes.rewriteRef"].action == "added"
    assert changes["notes.rewrite.amend"].action == "added"
    assert changes["notes.rewrite.rebase"].action == "added"
    assert changes["notes.rewriteMode"].action == "kept"
    assert "concatenate" in (changes["notes.rewriteMode"].detail or "")
    assert config(repo, "notes.rewriteRef") == ["refs/notes/commits", REF]
    assert config(repo, "notes.rewriteMode") == ["concatenate"]
    assert rewrite.configured(repo.path, REF)

    again = rewrite.configure(repo.path, REF)
    assert {c.action for c in again} <= {"present", "kept"}
    assert config(repo, "notes.rewriteRef") == ["refs/notes/commits", REF]

    removed = {c.key: c.action for c in rewrite.unconfigure(repo.path, REF)}
    assert removed == {
        "notes.rewriteRef": "removed",
        "notes.rewrite.amend": "removed",
        "notes.rewrite.rebase": "removed",
    }
    assert config(repo, "notes.rewriteRef") == ["refs/notes/commits"]
    assert config(repo, "notes.rewriteMode") == ["concatenate"]
    assert config(repo, "notes.rewrite.amend") == []
    assert config(repo, rewrite.RECORD_KEY) == []
    assert not rewrite.configured(repo.path, REF)


def test_configure_sets_cat_sort_uniq_and_respects_a_glob_and_a_users_false(env: Env) -> None:
    repo = make_repo(env)
    repo.git("config", "notes.rewriteRef", "refs/notes/*")
    repo.git("config", "notes.rewrite.amend", "false")
    changes = {c.key: c for c in rewrite.configure(repo.path, REF)}
    assert changes["notes.rewriteRef"].action == "present"
    assert changes["notes.rewrite.amend"].action == "kept"
    assert changes["notes.rewriteMode"].action == "added"
    assert config(repo, "notes.rewriteMode") == ["cat_sort_uniq"]
    assert not rewrite.configured(repo.path, REF)  # amend would not copy: doctor says so
    rewrite.unconfigure(repo.path, REF)
    assert config(repo, "notes.rewriteRef") == ["refs/notes/*"]
    assert config(repo, "notes.rewrite.amend") == ["false"]
    assert config(repo, "notes.rewriteMode") == []


def test_unconfigure_keeps_shared_settings_while_another_ref_of_ours_needs_them(env: Env) -> None:
    repo = make_repo(env)
    rewrite.configure(repo.path, REF)
    rewrite.configure(repo.path, "agent-traces")
    rewrite.unconfigure(repo.path, REF)
    assert config(repo, "notes.rewriteRef") == ["refs/notes/agent-traces"]
    assert config(repo, "notes.rewriteMode") == ["cat_sort_uniq"]
    rewrite.unconfigure(repo.path, "agent-traces")
    assert config(repo, "notes.rewriteRef") == []
    assert config(repo, "notes.rewriteMode") == []


# --- amend -----------------------------------------------------------------------------------


def test_amend_carries_the_links_to_the_new_commit(env: Env) -> None:
    repo = make_repo(env)
    setup(repo)
    repo.commit("base", file="base.txt")
    old = repo.commit("work", file="a.txt")
    add(repo, old, link(S1, 1, 5))
    repo.git("commit", "--amend", "-q", "-m", "work, amended")
    new = sha_of(repo, "HEAD")
    assert new != old
    assert ours(repo, new) == expected(link(S1, 1, 5))
    assert ours(repo, old) == expected(link(S1, 1, 5))


def test_amend_with_the_real_daemon_leaves_exactly_the_old_link(env: Env) -> None:
    repo = make_repo(env).install()
    rewrite.configure(repo.path, REF)
    repo.start_session(4)
    with running_daemon(env):
        old = repo.commit("agent work")
        wait_for(lambda: repo.note(old), what="note on the commit")
        repo.git("commit", "--amend", "-q", "-m", "agent work, amended")
        new = sha_of(repo, "HEAD")
        wait_for(lambda: env.status("--all")["queue"]["done"] == 2, what="the amended commit's job")
    (meta,) = note_links(repo.note(old))
    assert meta["lines"] == [1, 4]
    assert ours(repo, new) == sorted(rewrite.trace_lines(repo.note(old)))


# --- interactive rebase --------------------------------------------------------------------


def test_interactive_rebase_pick_squash_reword_fixup_drop(env: Env) -> None:
    repo = make_repo(env)
    setup(repo)
    base = repo.commit("base", file="base.txt")
    a = repo.commit("A", file="a.txt")
    b = repo.commit("B", file="b.txt")
    c = repo.commit("C", file="c.txt")
    d = repo.commit("D", file="d.txt")
    e = repo.commit("E", file="e.txt")
    f = repo.commit("F", file="f.txt")
    add(repo, a, link(S1, 1, 5))
    add(repo, b, link(S1, 6, 9))
    add(repo, c, link(S2, 1, 4))
    add(repo, d, link(S1, 10, 12))
    add(repo, e, link(S2, 5, 8))
    # F has no note: a commit nobody's agent made stays without one.
    editor = todo_editor(repo, [("pick", a), ("squash", b), ("reword", c), ("fixup", d), ("drop", e), ("pick", f)])
    editor["GIT_EDITOR"] = "sed -i 1s/^/reworded:\\ /"
    repo.git("rebase", "-q", "-i", base, extra_env=editor)

    x1, x2, x3 = repo.git("rev-list", "--reverse", f"{base}..HEAD").split()
    assert repo.git("log", "-1", "--format=%s", x2).startswith("reworded: ")
    assert ours(repo, x1) == expected(link(S1, 1, 5), link(S1, 6, 9))
    assert ours(repo, x2) == expected(link(S2, 1, 4), link(S1, 10, 12))
    assert ours(repo, x3) == []
    note = repo.note(x1)
    assert note.count("hf-trace: ") == 1 and "\n\n" not in note  # cat_sort_uniq: one URL line
    assert rewrite.relink(repo.path, REF) == []  # nothing left for the heuristics either


def test_rebase_onto_a_moved_base_keeps_every_link(env: Env) -> None:
    repo = make_repo(env)
    setup(repo)
    repo.commit("base", file="base.txt")
    repo.git("checkout", "-q", "-b", "topic")
    t1 = repo.commit("T1", file="t1.txt")
    t2 = repo.commit("T2", file="t2.txt")
    add(repo, t1, link(S1, 1, 3))
    add(repo, t2, link(S1, 4, 6), link(S2, 1, 2))
    repo.git("checkout", "-q", "main")
    repo.commit("main moves", file="m.txt")
    repo.git("checkout", "-q", "topic")
    repo.git("rebase", "-q", "main")
    n1, n2 = repo.git("rev-list", "--reverse", "main..HEAD").split()
    assert n1 != t1 and n2 != t2
    assert ours(repo, n1) == expected(link(S1, 1, 3))
    assert ours(repo, n2) == expected(link(S1, 4, 6), link(S2, 1, 2))


# --- cherry-pick -----------------------------------------------------------------------------


def _side_commit(repo: Repo, *links: notes.TraceLink) -> str:
    repo.commit("base", file="base.txt")
    repo.git("checkout", "-q", "-b", "side")
    picked = repo.commit("on side", file="side.txt")
    add(repo, picked, *links)
    repo.git("checkout", "-q", "main")
    repo.commit("main", file="main.txt")
    return picked


def test_cherry_pick_without_hooks_is_found_by_relink(env: Env) -> None:
    repo = make_repo(env)
    setup(repo, hooks=False)
    source = _side_commit(repo, link(S1, 1, 4))
    repo.git("cherry-pick", source)
    plain = sha_of(repo, "HEAD")
    repo.commit("between", file="between.txt")
    repo.git("cherry-pick", "-x", "--allow-empty", "--keep-redundant-commits", source)
    with_x = sha_of(repo, "HEAD")
    found = rewrite.relink(repo.path, REF, dry_run=True)
    assert found == [rewrite.Relinked(plain, source, "patch-id"), rewrite.Relinked(with_x, source, "cherry-pick -x")]
    assert ours(repo, plain) == []  # dry run
    assert rewrite.relink(repo.path, REF) == found
    assert ours(repo, plain) == expected(link(S1, 1, 4))
    assert ours(repo, with_x) == expected(link(S1, 1, 4))
    assert ours(repo, sha_of(repo, "HEAD~1")) == []  # "between" matched nothing
    assert rewrite.relink(repo.path, REF) == []


# --- a forge's squash merge ------------------------------------------------------------------


def _feature_branch(repo: Repo) -> tuple[str, list[str]]:
    """main with a feature branch of three noted commits; main moves on meanwhile."""
    base = repo.commit("base", file="base.txt")
    repo.git("checkout", "-q", "-b", "feature")
    f1 = repo.commit("Parse the header", file="parser.py")
    f2 = repo.commit("Handle empty input", file="parser.py")
    f3 = repo.commit("Document the parser", file="README.md")
    add(repo, f1, link(S1, 1, 5))
    add(repo, f2, link(S2, 1, 3))
    add(repo, f3, link(S1, 6, 9))
    repo.git("checkout", "-q", "main")
    repo.commit("Unrelated fix on main", file="other.py")
    return base, [f1, f2, f3]


def _forge_squash(repo: Repo, message: str | None) -> str:
    """What a forge's "squash and merge" leaves: one commit on main, the branch deleted."""
    repo.git("merge", "--squash", "-q", "feature")
    if message is None:
        repo.git("commit", "-q", "--no-edit")  # git's own SQUASH_MSG lists the squashed commits
    else:
        repo.git("commit", "-q", "-m", message)
    repo.git("branch", "-D", "feature")
    return sha_of(repo, "HEAD")


FEATURE_LINKS = (link(S1, 1, 5), link(S2, 1, 3), link(S1, 6, 9))


def test_relink_finds_a_squash_merge_by_the_combined_patch(env: Env) -> None:
    repo = make_repo(env)
    setup(repo)
    base, originals = _feature_branch(repo)
    squash = _forge_squash(repo, "Parser (#12)")
    assert ours(repo, squash) == []
    dry = tk(env, "relink", "--dry-run", "--json", cwd=repo.path)
    assert dry.returncode == 0, dry.stderr
    data = json.loads(dry.stdout)
    assert data["dry_run"] is True
    assert [(r["commit"], r["from"]) for r in data["relinked"]] == [(squash, sha) for sha in originals]
    assert all(r["how"].startswith(f"squash of {base[:12]}..{originals[-1][:12]}") for r in data["relinked"])
    assert ours(repo, squash) == []
    done = tk(env, "relink", cwd=repo.path)
    assert done.returncode == 0, done.stderr
    assert "1 commit(s) relinked" in done.stdout
    assert ours(repo, squash) == expected(*FEATURE_LINKS)
    for sha in repo.git("rev-list", "HEAD~1").split():
        assert ours(repo, sha) == []  # nothing else on main got a link
    assert "nothing to relink" in tk(env, "relink", cwd=repo.path).stdout


def test_relink_reads_commit_ids_from_the_squash_message_when_the_originals_are_gone(env: Env) -> None:
    repo = make_repo(env)
    setup(repo)
    _, originals = _feature_branch(repo)
    squash = _forge_squash(repo, None)
    repo.git("reflog", "expire", "--expire=now", "--all")
    repo.git("gc", "-q", "--prune=now")
    for sha in originals:  # a teammate's clone: the notes arrived, the commits never did
        assert subprocess.run(["git", "-C", str(repo.path), "cat-file", "-e", sha], check=False).returncode != 0
    found = rewrite.relink(repo.path, REF)
    # SQUASH_MSG lists them newest first; the links are the same whatever the order.
    assert found == [rewrite.Relinked(squash, sha, "squash message (commit ids)") for sha in reversed(originals)]
    assert ours(repo, squash) == expected(*FEATURE_LINKS)


def test_relink_matches_subjects_of_a_github_style_squash_message(env: Env) -> None:
    repo = make_repo(env)
    setup(repo)
    _, originals = _feature_branch(repo)
    repo.git("merge", "--squash", "-q", "feature")
    (repo.path / "review.txt").write_text("a reviewer's suggestion, applied while merging\n")
    repo.git("add", "review.txt")
    message = (
        "Parser (#12)\n\n* Parse the header\n\n* Handle empty input\n\n* Document the parser\n\nCo-authored-by: B <b@x>"
    )
    repo.git("commit", "-q", "-m", message)
    repo.git("branch", "-D", "feature")
    squash = sha_of(repo, "HEAD")
    found = rewrite.relink(repo.path, REF)
    assert found == [rewrite.Relinked(squash, sha, "squash message (subjects)") for sha in originals]
    assert ours(repo, squash) == expected(*FEATURE_LINKS)


def test_relink_finds_a_forge_rebase_merge_by_patch_id(env: Env) -> None:
    repo = make_repo(env)
    setup(repo, hooks=False)
    _, originals = _feature_branch(repo)
    # A forge rebases without our config or hooks: new SHAs, no notes.
    repo.git("-c", "notes.rewrite.rebase=false", "rebase", "-q", "main", "feature")
    rebased = repo.git("rev-list", "--reverse", "main..feature").split()
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--ff-only", "feature")
    repo.git("branch", "-D", "feature")
    assert [ours(repo, sha) for sha in rebased] == [[], [], []]
    found = rewrite.relink(repo.path, REF)
    assert found == [rewrite.Relinked(new, old, "patch-id") for new, old in zip(rebased, originals, strict=True)]
    for new, one in zip(rebased, FEATURE_LINKS, strict=True):
        assert ours(repo, new) == expected(one)


def test_relink_honours_the_range_and_reports_bad_ones(env: Env) -> None:
    repo = make_repo(env)
    setup(repo, hooks=False)
    source = _side_commit(repo, link(S1, 1, 4))
    repo.git("cherry-pick", source)
    assert rewrite.relink(repo.path, REF, "HEAD~1", dry_run=True) == []
    assert len(rewrite.relink(repo.path, REF, "HEAD~1..HEAD", dry_run=True)) == 1
    bad = tk(env, "relink", "no-such-branch", cwd=repo.path)
    assert bad.returncode == 1
    assert bad.stderr == f"Error: 'no-such-branch' is not a revision or range in {repo.path}\n"


def test_relink_leaves_reverts_and_commits_that_merely_mention_a_noted_one(env: Env) -> None:
    repo = make_repo(env)
    setup(repo, hooks=False)
    repo.commit("base", file="base.txt")
    noted = repo.commit("agent work", file="a.txt")
    add(repo, noted, link(S1, 1, 4))
    repo.git("revert", "--no-edit", noted)
    repo.commit(f"Follow-up to {noted[:10]}", file="b.txt")
    assert rewrite.relink(repo.path, REF) == []
    assert [ours(repo, sha) for sha in repo.git("rev-list", f"{noted}..HEAD").split()] == [[], []]


def test_relink_never_resurrects_a_forgotten_link(env: Env) -> None:
    repo = make_repo(env)
    setup(repo, hooks=False)
    source = _side_commit(repo, link(S1, 1, 4))
    tomb = notes.TOMBSTONE_PREFIX + json.dumps({"session": S1, "url": link(S1, 1, 4).url, "v": 1})
    repo.git("notes", f"--ref={REF}", "add", "-f", "-m", tomb, source)
    repo.git("cherry-pick", source)
    copy = sha_of(repo, "HEAD")
    rewrite.relink(repo.path, REF)
    assert ours(repo, copy) == [tomb]


@pytest.mark.parametrize(
    ("existing", "incoming", "result"),
    [
        ("", ["hf-trace: u"], "hf-trace: u\n"),
        ("mine\nhf-trace: u\n", ["hf-trace: u"], None),
        ("mine\n", ["hf-trace: u", 'hf-trace-forgotten: {"url":"u"}'], 'mine\nhf-trace-forgotten: {"url":"u"}\n'),
    ],
)
def test_merge_lines(existing: str, incoming: list[str], result: str | None) -> None:
    assert rewrite.merge_lines(existing, incoming) == result


def test_unconfigure_reads_records_written_before_the_shared_record(env: Env) -> None:
    """Repositories configured by earlier versions keep their `tracekeeper.rewriteAdded` and
    `tracekeeper.added` lines (`<key> <value>`); undoing them must still be exact."""
    from tracekeeper import sync
    from tracekeeperd.gitconfig import ConfigChange

    repo = make_repo(env)
    repo.git("config", "--add", "notes.rewriteRef", REF)
    repo.git("config", "--add", "notes.rewriteRef", REF)  # the user's identical line stays
    repo.git("config", "--add", rewrite.RECORD_KEY, f"notes.rewriteRef {REF}")
    repo.git("config", "--add", "notes.hf-traces.mergeStrategy", "cat_sort_uniq")
    repo.git("config", "--add", sync.RECORD_KEY, "notes.hf-traces.mergeStrategy cat_sort_uniq")
    repo.git("config", "--add", sync.RECORD_KEY, "remote.gone.fetch +refs/notes/x*:refs/notes/remotes/gone/x*")

    assert rewrite.unconfigure(repo.path, REF) == [ConfigChange("notes.rewriteRef", REF, "removed")]
    assert config(repo, "notes.rewriteRef") == [REF]
    assert sync.unconfigure(repo.path) == [
        ConfigChange("notes.hf-traces.mergeStrategy", "cat_sort_uniq", "removed"),
        ConfigChange("remote.gone.fetch", "+refs/notes/x*:refs/notes/remotes/gone/x*", "gone"),
    ]
    assert config(repo, "notes.hf-traces.mergeStrategy") == []
    assert config(repo, rewrite.RECORD_KEY) == config(repo, sync.RECORD_KEY) == []


def test_sync_and_rewrite_report_config_changes_with_one_record_type() -> None:
    from tracekeeper import sync
    from tracekeeperd import gitconfig

    assert sync.ConfigChange is rewrite.ConfigChange is gitconfig.ConfigChange
