"""tracekeeper's hooks next to the hooks people already have, through real `git commit`s.

Each hook manager is set up the way it sets repositories up itself: with the real tool when
one is found (on PATH, or under $TRACEKEEPER_TEST_TOOLS: `node_modules/husky`,
`node_modules/.bin/lefthook`, `pcvenv/bin/pre-commit`), and otherwise with a replica of the
files it writes (Husky's runner and stubs, lefthook's runner plus a stand-in `lefthook`
binary that merges lefthook.yml and lefthook-local.yml, the pre-commit framework's hook
script). Every case commits and asserts both that the manager's own hook ran (a marker file)
and that ours did (exactly one spool file for the commit; the daemon is not needed for that),
then uninstalls and compares the files byte for byte with what was there before.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from .harness import Env, Repo, make_repo

TOOLS = Path(os.environ.get("TRACEKEEPER_TEST_TOOLS", "/nonexistent"))
HOOK_NAMES = ("pre-commit", "prepare-commit-msg", "commit-msg", "post-commit", "post-rewrite", "pre-push")


# --- helpers --------------------------------------------------------------------------------


def tk(env: Env, command: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `tracekeeper install|uninstall` as a user does: through cli.main, which turns the
    library's exceptions into one `Error:` line (errors_table)."""
    return env.cli(command, *args, check=check)


def spooled(env: Env, sha: str) -> list[Path]:
    return sorted(env.spool.glob(f"{sha}.*.commit")) if env.spool.is_dir() else []


def commit(repo: Repo, message: str, *, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    with (repo.path / "work.txt").open("a") as fh:
        fh.write(message + "\n")
    repo.git("add", "work.txt")
    return subprocess.run(
        ["git", "commit", "-q", "-m", message],
        cwd=repo.path,
        env={**repo.env.vars, **(extra_env or {})},
        capture_output=True,
        text=True,
        check=False,
    )


def committed(repo: Repo, message: str) -> str:
    """Commit and check that tracekeeper's hook ran exactly once for it."""
    result = commit(repo, message)
    assert result.returncode == 0, result.stderr + result.stdout
    sha = repo.git("rev-parse", "HEAD")
    assert len(spooled(repo.env, sha)) == 1, f"tracekeeper's hook ran {len(spooled(repo.env, sha))} times"
    return sha


def snapshot(root: Path, *rels: str) -> dict[str, tuple[int, bytes | str]]:
    """Mode and bytes of every file (symlink target for links) under the given paths."""
    out: dict[str, tuple[int, bytes | str]] = {}
    for rel in rels:
        start = root / rel
        paths = [start] if not start.is_dir() or start.is_symlink() else sorted(start.rglob("*"))
        for path in paths:
            if path.is_symlink():
                out[str(path.relative_to(root))] = (0, os.readlink(path))
            elif path.is_file():
                out[str(path.relative_to(root))] = (path.stat().st_mode & 0o777, path.read_bytes())
    return out


def write(path: Path, text: str, mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def marker_hook(name: str, lang: str = "sh") -> str:
    """A user's hook in some language that leaves `<name>.ran` behind."""
    if lang == "python":
        return f"#!/usr/bin/env python3\nimport pathlib\nwith open('{name}.ran', 'a') as f:\n    f.write('ran\\n')\n"
    return f"#!/bin/sh\necho ran >> {name}.ran\n"


def ran(repo: Repo, name: str) -> int:
    path = repo.path / f"{name}.ran"
    return len(path.read_text().splitlines()) if path.exists() else 0


def real_tool(*candidates: Path | str) -> str | None:
    for candidate in candidates:
        if isinstance(candidate, Path):
            if candidate.exists() and os.access(candidate, os.X_OK):
                return str(candidate)
        else:
            found = shutil.which(candidate)
            if found:
                return found
    return None


@pytest.fixture
def repo(env: Env) -> Repo:
    r = make_repo(env)
    (r.path / "README").write_text("app\n")
    r.git("add", "README")
    r.git("commit", "-q", "-m", "base")
    return r


# --- Husky ----------------------------------------------------------------------------------

#: Husky v9's runner `.husky/_/h` (what `husky` copies there): finds `.husky/<hook>` and runs it
#: with `sh -e`, passing the arguments, and reports a failure.
HUSKY9_RUNNER = """#!/usr/bin/env sh
[ "$HUSKY" = "2" ] && set -x
n=$(basename "$0")
s=$(dirname "$(dirname "$0")")/$n
[ ! -f "$s" ] && exit 0
[ "${HUSKY-}" = "0" ] && exit 0
export PATH="node_modules/.bin:$PATH"
sh -e "$s" "$@"
c=$?
[ $c != 0 ] && echo "husky - $n script failed (code $c)"
exit $c
"""
#: Husky v5-8's `.husky/_/husky.sh`: sourced by each hook file, it re-runs the file under
#: `sh -e` once and exits with its status.
HUSKY8_SH = """#!/usr/bin/env sh
if [ -z "$husky_skip_init" ]; then
  hook_name="$(basename -- "$0")"
  if [ "$HUSKY" = "0" ]; then
    exit 0
  fi
  readonly husky_skip_init=1
  export husky_skip_init
  sh -e "$0" "$@"
  exitCode="$?"
  if [ $exitCode != 0 ]; then
    echo "husky - $hook_name hook exited with code $exitCode (error)"
  fi
  exit $exitCode
fi
"""


def husky9_real(repo: Repo) -> bool:
    node, package = shutil.which("node"), TOOLS / "node_modules" / "husky" / "index.js"
    if node is None or not package.exists():
        return False
    script = f"import({json.dumps(package.as_uri())}).then(m => {{ const r = m.default(); if (r) throw new Error(r) }})"
    subprocess.run([node, "-e", script], cwd=repo.path, env=repo.env.vars, check=True, capture_output=True)
    return True


def husky9_replica(repo: Repo) -> bool:
    runner = repo.path / ".husky" / "_"
    write(runner / "h", HUSKY9_RUNNER, 0o644)
    write(runner / ".gitignore", "*", 0o644)
    for hook in HOOK_NAMES:
        write(runner / hook, '#!/usr/bin/env sh\n. "$(dirname "$0")/h"')
    repo.git("config", "core.hooksPath", ".husky/_")
    return True


@pytest.mark.parametrize("setup", [husky9_replica, husky9_real], ids=["replica", "real"])
def test_husky_v9_gets_a_call_line_in_its_hook_file_and_loses_it_on_uninstall(
    env: Env, repo: Repo, setup: Callable[[Repo], bool]
) -> None:
    if not setup(repo):
        pytest.skip("husky (node_modules/husky under $TRACEKEEPER_TEST_TOOLS) not available")
    write(repo.path / ".husky" / "post-commit", "echo ran >> husky.ran\n", 0o644)  # what `husky init` writes
    repo.git("add", ".husky/post-commit")
    repo.git("commit", "-q", "-m", "husky")
    (repo.path / "husky.ran").unlink()
    before = snapshot(repo.path, ".husky", ".git/hooks", ".git/info", ".git/config")
    out = tk(env, "install", "-C", str(repo.path)).stdout
    assert "(husky)" in out
    assert (repo.path / ".husky" / "_" / "post-commit").read_bytes() == before[".husky/_/post-commit"][1]
    lines = (repo.path / ".husky" / "post-commit").read_text().splitlines()
    assert lines[1] == "echo ran >> husky.ran" and "tracekeeper-hook-call" in lines[0]
    committed(repo, "one")
    assert ran(repo, "husky") == 1
    # Husky rewrites `.husky/_` on every `npm install`: the call line is not in there.
    setup(repo)
    committed(repo, "two")
    assert ran(repo, "husky") == 2
    assert tk(env, "install", "-C", str(repo.path)).stdout.startswith("unchanged ")
    tk(env, "uninstall", "-C", str(repo.path))
    assert snapshot(repo.path, ".husky", ".git/hooks", ".git/info", ".git/config") == before
    assert not (repo.git_dir / "tracekeeper").exists()
    assert repo.git("status", "--porcelain", "--", ".husky") == ""


def test_husky_v9_without_a_hook_file_gets_one_kept_out_of_git_status(env: Env, repo: Repo) -> None:
    husky9_replica(repo)
    before = snapshot(repo.path, ".husky", ".git/info")
    status = repo.git("status", "--porcelain")
    out = tk(env, "install", "-C", str(repo.path)).stdout
    assert "created it to call tracekeeper's post-commit (husky)" in out and "info/exclude" in out
    assert repo.git("status", "--porcelain") == status
    committed(repo, "one")
    tk(env, "uninstall", "-C", str(repo.path))
    assert snapshot(repo.path, ".husky", ".git/info") == before


def test_husky_v5_to_v8_runs_our_hook_once_despite_its_re_exec(env: Env, repo: Repo) -> None:
    write(repo.path / ".husky" / "_" / "husky.sh", HUSKY8_SH, 0o644)
    write(repo.path / ".husky" / "_" / ".gitignore", "*", 0o644)
    write(
        repo.path / ".husky" / "post-commit",
        '#!/usr/bin/env sh\n. "$(dirname -- "$0")/_/husky.sh"\n\necho ran >> husky.ran\n',
    )
    repo.git("config", "core.hooksPath", ".husky")
    before = snapshot(repo.path, ".husky", ".git/hooks", ".git/config")
    tk(env, "install", "-C", str(repo.path))
    lines = (repo.path / ".husky" / "post-commit").read_text().splitlines()
    assert "husky.sh" in lines[1] and "tracekeeper-hook-call" in lines[2]  # after the re-exec line
    committed(repo, "one")  # once, not twice
    assert ran(repo, "husky") == 1
    tk(env, "uninstall", "-C", str(repo.path))
    assert snapshot(repo.path, ".husky", ".git/hooks", ".git/config") == before


def test_a_tracked_hooks_dir_that_is_not_shell_is_refused_with_the_line_to_add(env: Env, repo: Repo) -> None:
    hook = write(repo.path / ".githooks" / "post-commit", marker_hook("team", "python"))
    repo.git("config", "core.hooksPath", ".githooks")
    result = tk(env, "install", "-C", str(repo.path), check=False)
    assert result.returncode == 1
    assert result.stderr.startswith(f"Error: {hook} is not a shell script") and "tracekeeper-hook-call" in result.stderr
    assert hook.read_text() == marker_hook("team", "python")


def test_a_tracked_shell_hooks_dir_gets_a_line_not_a_rename(env: Env, repo: Repo) -> None:
    write(repo.path / ".githooks" / "post-commit", "#!/bin/sh\necho ran >> team.ran")  # no final newline
    repo.git("config", "core.hooksPath", ".githooks")
    repo.git("add", ".githooks")
    repo.git("commit", "-q", "-m", "team hooks")
    (repo.path / "team.ran").unlink()
    before = snapshot(repo.path, ".githooks")
    tk(env, "install", "-C", str(repo.path))
    assert not (repo.path / ".githooks" / "post-commit.pre-tracekeeper").exists()
    committed(repo, "one")
    assert ran(repo, "team") == 1
    tk(env, "uninstall", "-C", str(repo.path))
    assert snapshot(repo.path, ".githooks") == before


# --- lefthook -------------------------------------------------------------------------------

#: A stand-in for the lefthook binary: `install` writes lefthook's runner for every hook in
#: lefthook.yml + lefthook-local.yml, renaming a hook that is not its own to `<hook>.old` (which
#: it never runs); `run <hook> [args]` runs the merged commands with `sh -c` in the work tree,
#: `{N}` being git's arguments and stdin given only with `use_stdin: true`.
FAKE_LEFTHOOK = """import os, subprocess, sys, yaml
from pathlib import Path
top = Path(subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True).stdout.strip())
hooks = Path(subprocess.run(["git", "rev-parse", "--git-path", "hooks"], capture_output=True, text=True).stdout.strip())
config = {}
for name in ("lefthook.yml", "lefthook-local.yml"):
    doc = yaml.safe_load((top / name).read_text()) if (top / name).exists() else None
    for hook, body in (doc or {}).items():
        if isinstance(body, dict):
            config.setdefault(hook, {}).setdefault("commands", {}).update(body.get("commands", {}))
if sys.argv[1] == "install":
    for hook in config:
        path = hooks / hook
        if path.exists() and "lefthook" not in path.read_text():
            os.replace(path, path.with_name(hook + ".old"))
        path.write_text(RUNNER.replace("HOOK", hook))
        path.chmod(0o755)
elif sys.argv[1] == "run":
    status, args = 0, sys.argv[3:]
    stdin = sys.stdin.read()
    for name, command in config.get(sys.argv[2], {}).get("commands", {}).items():
        run = command["run"].replace("{0}", " ".join(args))
        for i, arg in enumerate(args, 1):
            run = run.replace("{%d}" % i, arg)
        given = stdin if command.get("use_stdin") else ""
        status |= subprocess.run(["sh", "-c", run], cwd=top, input=given, text=True).returncode
    sys.exit(status)
"""
LEFTHOOK_RUNNER = """#!/bin/sh

if [ "$LEFTHOOK" = "0" ]; then
  exit 0
fi

call_lefthook()
{{
  "{lefthook}" "$@"
}}

call_lefthook run "HOOK" "$@"
"""


def lefthook_replica(env: Env) -> str:
    binary = env.root / "bin" / "lefthook"
    runner = LEFTHOOK_RUNNER.format(lefthook=binary)
    write(binary, f"#!{sys.executable}\nRUNNER = {runner!r}\n" + FAKE_LEFTHOOK)
    return str(binary)


def lefthook_real(env: Env) -> str:
    found = real_tool(TOOLS / "node_modules" / ".bin" / "lefthook", "lefthook")
    if found is None:
        pytest.skip("lefthook not available")
    return found


def lefthook(repo: Repo, binary: str, *args: str) -> None:
    proc = subprocess.run(
        [binary, *args], cwd=repo.path, env=repo.env.vars, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout


def lefthook_marking(env: Env, repo: Repo, tool: Callable[[Env], str], hook: str) -> str:
    """`tool`'s lefthook installed with a lefthook.yml whose `hook` command appends a line to
    lefthook.ran (counted by `ran`); the lefthook binary."""
    binary = tool(env)
    (repo.path / "lefthook.yml").write_text(f"{hook}:\n  commands:\n    marker:\n      run: echo ran >> lefthook.ran\n")
    lefthook(repo, binary, "install")
    return binary


@pytest.mark.parametrize("tool", [lefthook_replica, lefthook_real], ids=["replica", "real"])
def test_lefthook_gets_a_local_command_that_survives_lefthook_install(
    env: Env, repo: Repo, tool: Callable[[Env], str]
) -> None:
    binary = lefthook_marking(env, repo, tool, "post-commit")
    before = snapshot(repo.path, ".git/hooks", ".git/info/exclude", "lefthook.yml")
    out = tk(env, "install", "-C", str(repo.path)).stdout
    assert f"installed {repo.path}/lefthook-local.yml" in out
    # lefthook runs no post-rewrite or pre-push here, so those two of ours are plain hook files.
    ours = (".git/hooks/post-rewrite", ".git/hooks/pre-push")
    assert {k: v for k, v in snapshot(repo.path, ".git/hooks").items() if k not in ours} == {
        k: v for k, v in before.items() if k.startswith(".git/hooks")
    }
    committed(repo, "one")
    assert ran(repo, "lefthook") == 1
    lefthook(repo, binary, "install")  # what `npm install` does, again and again
    committed(repo, "two")
    assert ran(repo, "lefthook") == 2
    tk(env, "uninstall", "-C", str(repo.path))
    assert not (repo.path / "lefthook-local.yml").exists()
    # The second `lefthook install` added its own runners for our other two hooks: lefthook's now.
    after = snapshot(repo.path, ".git/hooks", ".git/info/exclude", "lefthook.yml")
    assert {k: v for k, v in after.items() if k not in ours} == before
    assert all(b"lefthook" in after[k][1] for k in ours if k in after)


@pytest.mark.parametrize("tool", [lefthook_replica, lefthook_real], ids=["replica", "real"])
def test_lefthook_without_a_post_commit_hook_yet_runs_us_exactly_once_before_and_after(
    env: Env, repo: Repo, tool: Callable[[Env], str]
) -> None:
    binary = tool(env)
    (repo.path / "lefthook.yml").write_text("pre-commit:\n  commands:\n    ok:\n      run: 'true'\n")
    lefthook(repo, binary, "install")
    write(repo.path / "lefthook-local.yml", "# mine\nremotes: []", 0o644)  # the user's, no final newline
    before = snapshot(repo.path, ".git/hooks", "lefthook-local.yml")
    out = tk(env, "install", "-C", str(repo.path)).stdout
    assert "added a post-commit command for lefthook" in out
    assert "installed " + str(repo.git_dir / "hooks" / "post-commit") in out  # until lefthook has its own
    committed(repo, "one")
    lefthook(repo, binary, "install")  # now lefthook installs post-commit and renames ours to .old
    assert (repo.git_dir / "hooks" / "post-commit.old").exists()
    committed(repo, "two")  # through lefthook-local.yml, once
    assert "repaired" in tk(env, "install", "-C", str(repo.path)).stdout
    assert not (repo.git_dir / "hooks" / "post-commit.old").exists()
    committed(repo, "three")
    tk(env, "uninstall", "-C", str(repo.path))
    after = snapshot(repo.path, ".git/hooks", "lefthook-local.yml")
    assert after["lefthook-local.yml"] == before["lefthook-local.yml"]
    assert ".git/hooks/post-commit" in after  # lefthook's runner now, which stays


def test_lefthook_local_file_with_its_own_post_commit_falls_back_to_chaining(env: Env, repo: Repo) -> None:
    (repo.path / "lefthook-local.yml").write_text("post-commit:\n  commands:\n    mine:\n      run: 'true'\n")
    lefthook_marking(env, repo, lefthook_replica, "post-commit")
    out = tk(env, "install", "-C", str(repo.path)).stdout
    assert "chaining the previous hook" in out
    committed(repo, "one")
    assert ran(repo, "lefthook") == 1


@pytest.mark.parametrize("tool", [lefthook_replica, lefthook_real], ids=["replica", "real"])
def test_other_hooks_placed_through_lefthook_get_their_arguments_and_stdin(
    env: Env, repo: Repo, tool: Callable[[Env], str]
) -> None:
    lefthook_marking(env, repo, tool, "post-rewrite")
    _place(env, repo, "post-rewrite")
    old = repo.git("rev-parse", "HEAD")
    repo.git("commit", "-q", "--amend", "-m", "one, amended")
    new = repo.git("rev-parse", "HEAD")
    (rewrite,) = env.spool.glob(f"{old}.*.rewrite")
    assert "command amend\n" in rewrite.read_text() and f"{old} {new}" in rewrite.read_text()
    assert ran(repo, "lefthook") == 1


def test_other_hooks_placed_through_husky_get_their_arguments_and_stdin(env: Env, repo: Repo) -> None:
    husky9_replica(repo)
    old = repo.git("rev-parse", "HEAD")
    _place(env, repo, "post-rewrite")
    assert "tracekeeper-hook-call" in (repo.path / ".husky" / "post-rewrite").read_text()
    repo.git("commit", "-q", "--amend", "-m", "base, amended")
    new = repo.git("rev-parse", "HEAD")
    (rewrite,) = env.spool.glob(f"{old}.*.rewrite")
    assert f"{old} {new}" in rewrite.read_text()
    tk(env, "uninstall", "-C", str(repo.path))  # every hook of ours, whoever placed it
    assert not (repo.path / ".husky" / "post-rewrite").exists()


def _place(env: Env, repo: Repo, hook: str) -> None:
    """What the installer of another hook of ours does (sync's pre-push, rewrite's post-rewrite)."""
    _py(
        env,
        "from pathlib import Path; from tracekeeper.install import place, render; "
        "from tracekeeperd.paths import resolve; "
        f"place(Path({str(repo.path)!r}), {hook!r}, render({hook!r}, resolve()))",
    )


# --- the pre-commit framework ---------------------------------------------------------------

#: The pre-commit framework's hook script with `hook-impl` inlined: like the real one it runs
#: `<hook>.legacy` first ("migration mode"), then the configured hooks.
PRE_COMMIT_SCRIPT = """#!/usr/bin/env bash
# File generated by pre-commit: https://pre-commit.com
# ID: 138fd403232d2ddd5efb44317e38bf03
HERE="$(cd "$(dirname "$0")" && pwd)"
retv=0
if [ -x "$HERE/{hook}.legacy" ]; then
    "$HERE/{hook}.legacy" "$@" || retv=$?
fi
echo ran >> precommit.ran
exit $retv
"""
PRE_COMMIT_CONFIG = """repos:
- repo: local
  hooks:
  - id: marker
    name: marker
    entry: sh -c 'echo ran >> precommit.ran'
    language: system
    stages: [post-commit]
    always_run: true
    pass_filenames: false
"""


def pre_commit_replica(repo: Repo) -> None:
    hooks = repo.git_dir / "hooks"
    legacy = hooks / "post-commit.legacy"
    if (hooks / "post-commit").exists() and "pre-commit.com" not in (hooks / "post-commit").read_text():
        os.replace(hooks / "post-commit", legacy)  # what `pre-commit install` does with a hook it finds
    write(hooks / "post-commit", PRE_COMMIT_SCRIPT.format(hook="post-commit"))


def pre_commit_real(repo: Repo) -> None:
    binary = real_tool(TOOLS / "pcvenv" / "bin" / "pre-commit", "pre-commit")
    if binary is None:
        pytest.skip("pre-commit not available")
    subprocess.run(
        [binary, "install", "-t", "post-commit"], cwd=repo.path, env=repo.env.vars, check=True, capture_output=True
    )


@pytest.mark.parametrize("setup", [pre_commit_replica, pre_commit_real], ids=["replica", "real"])
def test_pre_commit_framework_runs_us_as_its_legacy_hook_and_a_reinstall_keeps_everything(
    env: Env, repo: Repo, setup: Callable[[Repo], None]
) -> None:
    (repo.path / ".pre-commit-config.yaml").write_text(PRE_COMMIT_CONFIG)
    repo.git("add", ".pre-commit-config.yaml")
    repo.git("commit", "-q", "-m", "pre-commit config")
    write(repo.git_dir / "hooks" / "post-commit", marker_hook("user"))  # a hook from before pre-commit
    setup(repo)
    before = snapshot(repo.path, ".git/hooks")
    out = tk(env, "install", "-C", str(repo.path)).stdout
    assert f"installed {repo.git_dir}/hooks/post-commit.legacy" in out
    assert (repo.git_dir / "hooks" / "post-commit").read_bytes() == before[".git/hooks/post-commit"][1]
    committed(repo, "one")
    assert (ran(repo, "precommit"), ran(repo, "user")) == (1, 1)
    setup(repo)  # `pre-commit install` again: its hook is its own, .legacy (ours) is left alone
    committed(repo, "two")
    assert (ran(repo, "precommit"), ran(repo, "user")) == (2, 2)
    tk(env, "uninstall", "-C", str(repo.path))
    assert snapshot(repo.path, ".git/hooks") == before


def test_pre_commit_installed_after_us_is_repaired_by_installing_again(env: Env, repo: Repo) -> None:
    write(repo.git_dir / "hooks" / "post-commit", marker_hook("user", "python"))
    tk(env, "install", "-C", str(repo.path))
    pre_commit_replica(repo)  # moves our hook to .legacy; the user's hook is now chained by nobody
    assert "repaired" in tk(env, "install", "-C", str(repo.path)).stdout
    committed(repo, "one")
    assert (ran(repo, "precommit"), ran(repo, "user")) == (1, 1)


# --- plain hooks of any language -----------------------------------------------------------


def test_a_python_pre_commit_hook_keeps_blocking_behind_the_guard(env: Env, repo: Repo) -> None:
    hook = (
        "#!/usr/bin/env python3\nimport os, sys\n"
        "if os.path.exists('BLOCK'):\n    print('no!', file=sys.stderr)\n    sys.exit(3)\n"
    )
    write(repo.git_dir / "hooks" / "pre-commit", hook)
    before = snapshot(repo.path, ".git/hooks")
    out = tk(env, "install", "-C", str(repo.path), "--guard").stdout
    assert "pre-commit (chaining the previous hook, kept as pre-commit.pre-tracekeeper)" in out
    (repo.path / "BLOCK").write_text("")
    blocked = commit(repo, "blocked")
    assert blocked.returncode != 0 and "no!" in blocked.stderr
    (repo.path / "BLOCK").unlink()
    committed(repo, "fine")
    tk(env, "uninstall", "-C", str(repo.path), "--guard")
    assert (repo.git_dir / "hooks" / "pre-commit").read_text() == hook
    assert spooled(env, committed(repo, "still linked"))
    tk(env, "uninstall", "-C", str(repo.path))
    assert snapshot(repo.path, ".git/hooks") == before


# --- the guard --------------------------------------------------------------------------------


def test_guard_warns_on_a_stale_active_file_and_blocks_only_when_strict(env: Env, repo: Repo) -> None:
    tk(env, "install", "-C", str(repo.path), "--guard")
    active = repo.activate(env.root / "gone" / "rollout.jsonl")
    warned = commit(repo, "stale")
    assert warned.returncode == 0
    assert warned.stderr.count("\n") == 1 and warned.stderr.startswith("tracekeeper: warning: ")
    assert str(env.root / "gone" / "rollout.jsonl") in warned.stderr
    assert "unchanged" in tk(env, "install", "-C", str(repo.path)).stdout  # keeps the guard
    tk(env, "install", "-C", str(repo.path), "--strict")
    blocked = commit(repo, "stale again")
    assert blocked.returncode == 1 and blocked.stderr.startswith("tracekeeper: commit blocked: ")
    bypass = subprocess.run(
        ["git", "commit", "-q", "--no-verify", "-m", "bypass"],
        cwd=repo.path,
        env=env.vars,
        capture_output=True,
        check=False,
    )
    assert bypass.returncode == 0
    transcript = env.transcript()
    transcript.write_text("{}\n")
    repo.activate(transcript)
    clean = commit(repo, "fresh session")
    assert clean.returncode == 0 and clean.stderr == ""
    active.unlink()
    assert commit(repo, "no session").returncode == 0
    tk(env, "install", "-C", str(repo.path), "--guard", "--no-strict")
    repo.activate(env.root / "gone" / "rollout.jsonl")
    assert commit(repo, "warn again").returncode == 0


def test_guard_reads_the_multi_session_file_tracekeeper_hook_writes(env: Env, repo: Repo) -> None:
    tk(env, "install", "-C", str(repo.path), "--guard", "--strict")
    present = env.transcript()
    present.write_text("{}\n")
    sessions: list[dict[str, object]] = [
        {"agent": "codex", "session_id": "a", "transcript_path": str(present), "seen_at": 1.0},
        {"agent": "claude", "session_id": "b", "transcript_path": None},
        {"agent": "claude", "session_id": "c", "transcript_path": "/no/such/dir/c.jsonl"},
    ]
    active = repo.git_dir / "hf-traces-active.json"
    active.write_text(json.dumps({"version": 1, "sessions": sessions}, indent=2))
    blocked = commit(repo, "one stale among three")
    assert blocked.returncode == 1 and "/no/such/dir/c.jsonl" in blocked.stderr
    active.write_text(
        json.dumps({"version": 1, "sessions": sessions[:2]})
    )  # one line, as the recipe's `cat >` writes it
    assert commit(repo, "all there").returncode == 0


# --- worktrees and submodules -----------------------------------------------------------------


def test_worktrees_share_the_hook_and_each_spools_its_own_git_dir(env: Env, repo: Repo) -> None:
    tk(env, "install", "-C", str(repo.path))
    tree = env.root / "src" / "wt"
    repo.git("worktree", "add", "-q", "-b", "side", str(tree))
    side = Repo(env, tree)
    assert tk(env, "install", "-C", str(tree)).stdout.startswith("unchanged ")
    sha = committed(side, "in the worktree")
    spool = spooled(env, sha)[0].read_text()
    assert f"git-dir {repo.git_dir}/worktrees/wt\n" in spool and f"work-tree {tree}\n" in spool
    committed(repo, "in the main tree")


def test_worktrees_with_husky_each_need_the_line_in_their_checkout(env: Env, repo: Repo) -> None:
    husky9_replica(repo)
    write(repo.path / ".husky" / "post-commit", "echo ran >> husky.ran\n", 0o644)
    repo.git("add", ".husky/post-commit")
    repo.git("commit", "-q", "-m", "husky")
    tk(env, "install", "-C", str(repo.path))
    repo.git("commit", "-q", "-am", "commit the call line")  # harmless for teammates without us
    tree = env.root / "src" / "wt"
    repo.git("worktree", "add", "-q", "-b", "side", str(tree))
    side = Repo(env, tree)
    husky9_replica(side)  # `.husky/_` is untracked: `npm install` makes it in each checkout
    committed(side, "in the worktree")
    assert ran(side, "husky") == 1


def test_submodules_install_into_their_own_git_dir_and_recursively(env: Env, repo: Repo) -> None:
    lib = make_repo(env, "lib")
    lib.commit("lib")
    repo.git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib.path), "sub")
    repo.git("commit", "-q", "-m", "add sub")
    sub = Repo(env, repo.path / "sub")
    module_hooks = repo.git_dir / "modules" / "sub" / "hooks"
    assert tk(env, "install", "-C", str(sub.path)).stdout.startswith(f"installed {module_hooks}/post-commit")
    assert not (repo.git_dir / "hooks" / "post-commit").exists()
    sha = committed(sub, "in the submodule")
    assert f"git-dir {repo.git_dir}/modules/sub\n" in spooled(env, sha)[0].read_text()
    tk(env, "uninstall", "-C", str(sub.path))
    out = tk(env, "install", "-C", str(repo.path), "--recurse-submodules").stdout
    assert f"installed {repo.git_dir}/hooks/post-commit" in out and f"installed {module_hooks}/post-commit" in out
    committed(sub, "again")
    committed(repo, "parent")
    tk(env, "uninstall", "-C", str(repo.path), "--recurse-submodules")
    assert not (module_hooks / "post-commit").exists() and not (repo.git_dir / "hooks" / "post-commit").exists()


# --- --global ------------------------------------------------------------------------------------


def _fresh(env: Env, name: str) -> Repo:
    return make_repo(env, name)


def test_global_install_reaches_new_repositories_and_uninstall_restores_the_config(env: Env) -> None:
    gitconfig = env.home / ".gitconfig"
    before = gitconfig.read_bytes()
    out = tk(env, "install", "--global").stdout
    assert "set as init.templateDir (global)" in out and "run `tracekeeper install` in each" in out
    fresh = _fresh(env, "fresh")
    assert "tracekeeper-hook: v1" in (fresh.git_dir / "hooks" / "post-commit").read_text()
    assert (fresh.git_dir / "info" / "exclude").exists()  # git's own template files are kept
    fresh.git("commit", "-q", "--allow-empty", "-m", "first")
    assert spooled(env, fresh.git("rev-parse", "HEAD"))
    assert tk(env, "install", "--global").stdout.count("unchanged") == 3  # post-commit, post-rewrite, pre-push
    tk(env, "uninstall", "--global")
    assert gitconfig.read_bytes() == before
    assert not (env.home / ".local" / "share" / "tracekeeper" / "git-template").exists()
    other = _fresh(env, "other")
    assert not (other.git_dir / "hooks" / "post-commit").exists()
    assert tk(env, "uninstall", "-C", str(fresh.path)).stdout.startswith("removed ")  # made meanwhile


def test_global_install_without_an_init_section_leaves_no_empty_one_behind(env: Env) -> None:
    gitconfig = env.home / ".gitconfig"
    gitconfig.write_text("[user]\n\tname = Test\n\temail = test@example.com\n")
    before = gitconfig.read_bytes()
    tk(env, "install", "--global", "--guard")
    fresh = _fresh(env, "fresh")
    assert (fresh.git_dir / "hooks" / "pre-commit").exists()
    tk(env, "uninstall", "--global")
    assert gitconfig.read_bytes() == before


def _global_config(env: Env, key: str) -> list[str]:
    proc = subprocess.run(
        ["git", "config", "--global", "--get-all", key], env=env.vars, capture_output=True, text=True, check=False
    )
    return proc.stdout.splitlines()


def test_global_install_records_its_git_config_in_the_one_config_record(env: Env) -> None:
    """init.templateDir is a git config change `install --global` undoes: it is recorded the way
    sync and rewrite record theirs (tracekeeperd/gitconfig.py), not in a JSON file of its own."""
    gitconfig = env.home / ".gitconfig"
    before = gitconfig.read_bytes()
    tk(env, "install", "--global")
    template = env.home / ".local" / "share" / "tracekeeper" / "git-template"
    assert _global_config(env, "init.templateDir") == [str(template)]
    assert _global_config(env, "tracekeeper.installed") == [f"init.templateDir {template}"]
    record = json.loads((env.state / "global-install.json").read_text())
    assert "init_section_existed" not in record and "gitconfig_existed" in record
    tk(env, "uninstall", "--global")
    assert gitconfig.read_bytes() == before


def test_a_global_install_record_from_before_the_one_config_record_is_migrated(env: Env) -> None:
    gitconfig = env.home / ".gitconfig"
    gitconfig.write_text("[user]\n\tname = Test\n\temail = test@example.com\n")
    before = gitconfig.read_bytes()
    tk(env, "install", "--global")
    # What an older tracekeeper left: the fact in global-install.json, no line in the config record.
    subprocess.run(["git", "config", "--global", "--unset-all", "tracekeeper.installed"], env=env.vars, check=True)
    record_path = env.state / "global-install.json"
    record = json.loads(record_path.read_text())
    record_path.write_text(json.dumps({**record, "init_section_existed": False}))
    tk(env, "install", "--global")  # migrates
    assert "init_section_existed" not in json.loads(record_path.read_text())
    assert len(_global_config(env, "tracekeeper.installed")) == 1
    tk(env, "uninstall", "--global")
    assert gitconfig.read_bytes() == before


def _global_install_chains(env: Env, marker: str, hooks_dir: str) -> None:
    """After `install --global`, a repo's first commit runs the user's own `marker` hook (from
    ~/`hooks_dir`) and ours; `uninstall --global` then leaves that directory and ~/.gitconfig as
    they were."""
    before = snapshot(env.home, hooks_dir, ".gitconfig")
    tk(env, "install", "--global")
    fresh = _fresh(env, "fresh")
    fresh.git("commit", "-q", "--allow-empty", "-m", "first")
    assert ran(fresh, marker) == 1 and spooled(env, fresh.git("rev-parse", "HEAD"))
    tk(env, "uninstall", "--global")
    assert snapshot(env.home, hooks_dir, ".gitconfig") == before


def test_global_install_chains_into_the_users_own_template_dir(env: Env) -> None:
    template = env.home / "my-template"
    write(template / "hooks" / "post-commit", marker_hook("template"))
    with (env.home / ".gitconfig").open("a") as fh:
        fh.write(f"[init]\n\ttemplateDir = {template}\n")
    _global_install_chains(env, "template", "my-template")


def test_global_install_with_a_global_hooks_path_chains_there(env: Env) -> None:
    shared = env.home / "githooks"
    write(shared / "post-commit", marker_hook("shared"))
    subprocess.run(["git", "config", "--global", "core.hooksPath", str(shared)], env=env.vars, check=True)
    _global_install_chains(env, "shared", "githooks")


# --- config-based hooks (git >= 2.54) ------------------------------------------------------------


def _py(env: Env, code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], env=env.vars, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_config_based_hooks_are_not_used_on_this_git(env: Env, repo: Repo) -> None:
    version = _py(env, "from tracekeeper.install import git_version; print(git_version())")
    if tuple(int(x) for x in version.strip("()\n").split(", ")) >= (2, 54):
        pytest.skip("this git has config-based hooks")
    tk(env, "install", "-C", str(repo.path), "--guard")
    assert repo.git("config", "--get-regexp", r"^hook\.", check=False) == ""
    assert (repo.git_dir / "hooks" / "post-commit").exists()


def test_config_based_hooks_on_git_2_54_touch_no_hook_file(env: Env, repo: Repo) -> None:
    """Only what can be checked on an older git: the keys written and removed, and no file."""
    write(repo.git_dir / "hooks" / "post-commit", marker_hook("user"))
    before = snapshot(repo.path, ".git/hooks", ".git/config")
    _py(
        env,
        "from pathlib import Path; from tracekeeper.install import install; from tracekeeperd.paths import resolve; "
        f"install(Path({str(repo.path)!r}), resolve(), guard=True, version=(2, 54, 0))",
    )
    script = repo.git_dir / "tracekeeper" / "hooks" / "post-commit"
    assert repo.git("config", "--get-all", "hook.tracekeeper.command") == str(script)
    assert repo.git("config", "--get-all", "hook.tracekeeper.event") == "post-commit"
    assert repo.git("config", "--get-all", "hook.tracekeeper-guard.event") == "pre-commit"
    # lefthook runs no post-rewrite or pre-push here, so those two of ours are plain hook files.
    ours = (".git/hooks/post-rewrite", ".git/hooks/pre-push")
    assert {k: v for k, v in snapshot(repo.path, ".git/hooks").items() if k not in ours} == {
        k: v for k, v in before.items() if k.startswith(".git/hooks")
    }
    tk(env, "uninstall", "-C", str(repo.path))
    assert snapshot(repo.path, ".git/hooks", ".git/config") == before
    assert not (repo.git_dir / "tracekeeper").exists()
    gitconfig = (env.home / ".gitconfig").read_bytes()
    _py(
        env,
        "from tracekeeper.install import install_global; from tracekeeperd.paths import resolve; "
        "install_global(resolve(), version=(2, 54, 0))",
    )
    assert (
        "hook.tracekeeper.event=post-commit"
        in subprocess.run(
            ["git", "config", "--global", "--list"], env=env.vars, capture_output=True, text=True, check=True
        ).stdout
    )
    tk(env, "uninstall", "--global")
    assert (env.home / ".gitconfig").read_bytes() == gitconfig
