"""`tracekeeper doctor`: check everything a user can get wrong, and say how to fix each.

Every check is a small function taking a `Context` and returning a `Check` (status, message,
fix), or None when it does not apply here, so tests call them one by one. A failure (✗) means
traces are not being captured or uploaded; a warning (!) means something is degraded or about to
go wrong. The exit status is 1 when any check failed, 0 otherwise (warnings do not fail).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple

import click

from tracekeeperd import git
from tracekeeperd.errors import GitError
from tracekeeperd.paths import Paths, resolve

from . import install as install_mod

#: The inotify limits below which watching the spool and the agents' session dirs may fail.
MIN_WATCHES = 65536
MIN_INSTANCES = 128
#: A session no agent hook has reported for this long is stale (the daemon stops linking an
#: idle session after 12 h: tracekeeperd.ingest.ABANDONED).
STALE_AFTER = 24 * 3600.0
#: A spool file older than this while the daemon runs means the daemon is not ingesting.
SPOOL_LAG = 60.0


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


SYMBOLS = {Status.OK: "✓", Status.WARN: "!", Status.FAIL: "✗"}


class Check(NamedTuple):
    status: Status
    message: str
    fix: str | None = None


@dataclass
class Context:
    """What the checks look at; tests build one pointing at their own temp dirs."""

    repo: Path
    paths: Paths = field(default_factory=resolve)
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    inotify: Path = Path("/proc/sys/fs/inotify")
    now: float = field(default_factory=time.time)
    _status: dict[str, Any] | None = None
    _status_error: str | None = None
    _asked: bool = False
    #: A daemon holds the socket but did not answer (stopped or hung).
    unresponsive: bool = False
    _repo_info: install_mod.Repo | None = None
    _repo_error: str | None = None
    _located: bool = False

    def daemon(self) -> dict[str, Any] | None:
        """The daemon's status (asked once), or None with `daemon_error` saying why."""
        if not self._asked:
            from .api import Client, DaemonError, DaemonNotResponding, DaemonUnavailable, not_responding

            self._asked = True
            try:
                self._status = Client(self.paths.socket, timeout=3.0).status()
            except DaemonNotResponding as exc:
                self.unresponsive = True
                self._status_error = not_responding(self.paths, exc)[1]
            except DaemonUnavailable as exc:
                self._status_error = str(exc)
            except DaemonError as exc:
                self._status_error = f"the daemon answered {exc.status}: {exc}"
        return self._status

    @property
    def daemon_error(self) -> str:
        self.daemon()
        return self._status_error or ""

    def git_repo(self) -> install_mod.Repo | None:
        if not self._located:
            self._located = True
            try:
                self._repo_info = install_mod.locate(self.repo)
            except install_mod.InstallError as exc:
                self._repo_error = str(exc)
        return self._repo_info

    @property
    def repo_error(self) -> str:
        self.git_repo()
        return self._repo_error or ""

    def git(self, *args: str) -> str:
        try:
            proc = git.run_text(None, args, cwd=self.repo, check=False)
        except GitError:
            return ""
        return proc.stdout.strip() if proc.returncode == 0 else ""


# --- the daemon and the store ------------------------------------------------------------


def check_config(ctx: Context) -> list[Check]:
    """The daemon's own validator (config.load): one failed check per problem it finds."""
    from tracekeeperd.config import load, problems_of
    from tracekeeperd.errors import ConfigError

    try:
        load(ctx.env)
    except ConfigError as exc:
        fix = f"fix {ctx.paths.config_file} or the environment variable named (docs/configuration.md)"
        return [Check(Status.FAIL, line, fix) for line in problems_of(exc)]
    where = ctx.paths.config_file if ctx.paths.config_file.exists() else "defaults (no config.toml)"
    return [Check(Status.OK, f"configuration valid: {where}")]


def check_daemon(ctx: Context) -> Check:
    status = ctx.daemon()
    if status is None and ctx.unresponsive:
        return Check(
            Status.FAIL,
            ctx.daemon_error,
            "resume it if it was stopped (`kill -CONT <pid>`); otherwise restart it "
            "(commits are spooled meanwhile, nothing is lost)",
        )
    if status is None:
        stale = " (a stale socket file is left there)" if ctx.paths.socket.exists() else ""
        return Check(
            Status.FAIL,
            f"{ctx.daemon_error}{stale}",
            "start it: `tracekeeperd &`, or `tracekeeper service install` to run it as a user service "
            "(commits are spooled meanwhile, nothing is lost)",
        )
    daemon = status.get("daemon", {})
    return Check(
        Status.OK, f"tracekeeperd {daemon.get('version')} running (pid {daemon.get('pid')}) on {daemon.get('socket')}"
    )


def check_store(ctx: Context) -> Check:
    status = ctx.daemon()
    if status is None:
        why = "is not responding" if ctx.unresponsive else "is not running"
        return Check(Status.WARN, f"store not checked: the daemon {why}")
    daemon = status["daemon"]
    store = daemon.get("store", {})
    location = store.get("location", "?")
    if daemon.get("offline_until"):
        return Check(
            Status.FAIL,
            f"store {location} unreachable: {daemon.get('offline_reason')}",
            "check the network and your token; uploads resume by themselves (`tracekeeper status`)",
        )
    if store.get("reachable") is False:
        return Check(Status.FAIL, f"store {location} unreachable: {store.get('detail') or 'no detail'}", None)
    if store.get("kind") == "hf" and store.get("private") is False:
        return Check(
            Status.FAIL,
            f"bucket {location} is PUBLIC; the daemon refuses to upload traces into it",
            "make it private (on the Hub: the bucket's settings), or set `store` to a private bucket",
        )
    if store.get("kind") == "hf" and store.get("private") is None:
        return Check(Status.WARN, f"bucket {location}: privacy not checked yet (it is before the first upload)")
    privacy = "private" if store.get("private") else "local"
    return Check(Status.OK, f"store {location} ({privacy})")


def check_queue(ctx: Context) -> Check:
    """Failed jobs are traces that will not be uploaded until someone acts: say so, and how."""
    status = ctx.daemon()
    if status is None:
        from .api import offline_status

        status = offline_status(ctx.paths)
    if status.get("error"):
        return Check(Status.FAIL, status["error"], None)
    queue = status["queue"]
    failed = [job for job in status.get("jobs", []) if job.get("state") == "failed"]
    if queue.get("failed"):
        newest = ""
        if failed:
            job = failed[0]
            newest = f"; the newest: {job['commit'][:12]} in {job['repo']}: {job.get('last_error') or '?'}"
        return Check(
            Status.FAIL,
            f"{queue['failed']} failed job(s), not uploaded{newest}",
            "fix the cause (`tracekeeper status` lists each), then `tracekeeper retry`; "
            "or give them up: `tracekeeper drop --failed`",
        )
    return Check(Status.OK, f"queue: {queue.get('pending', 0)} pending, {queue.get('done', 0)} done, none failed")


def _store_is_hf(ctx: Context) -> bool | None:
    status = ctx.daemon()
    if status is not None:
        kind = status["daemon"].get("store", {}).get("kind")
        return kind == "hf" if kind else None
    from tracekeeperd.config import load
    from tracekeeperd.errors import ConfigError

    try:
        config = load(ctx.env)
    except ConfigError:
        return None
    if config.store:
        return config.store.startswith("hf://")
    return True if config.bucket else None


def check_hf_token(ctx: Context) -> Check:
    from huggingface_hub import get_token

    hf = _store_is_hf(ctx)
    token = get_token()
    if hf is False:
        return Check(Status.OK, "no Hugging Face token needed (traces go to a local directory)")
    if token:
        return Check(Status.OK, "Hugging Face token present")
    if hf is None:
        return Check(
            Status.WARN,
            "no Hugging Face token: traces go to a local directory",
            "`hf auth login` (or export HF_TOKEN) to upload them to a private bucket, then restart tracekeeperd",
        )
    return Check(
        Status.FAIL,
        "the store is a Hugging Face bucket but no token is set",
        "`hf auth login`, or set HF_TOKEN where tracekeeperd runs",
    )


# --- this repository's hooks ---------------------------------------------------------------


def _describe_placement(placement: install_mod.Plan) -> str:
    if placement.mode is install_mod.Mode.FILE:
        return f"{placement.target}"
    if placement.mode is install_mod.Mode.LEGACY:
        return f"{placement.target} (run by the pre-commit framework's hook)"
    if placement.mode is install_mod.Mode.LINE:
        return f"a call in {placement.target} ({placement.manager})"
    if placement.mode is install_mod.Mode.LEFTHOOK:
        return f"a command in {placement.target} (lefthook)"
    return f"git config hook.{install_mod.config_name(placement.hook)}"


def _pre_commit_runnable(hook_file: Path) -> str | None:
    """Why the pre-commit framework's hook cannot start, if it cannot."""
    text = hook_file.read_text(errors="replace") if hook_file.exists() else ""
    match = re.search(r"^INSTALL_PYTHON=(.*)$", text, re.MULTILINE)
    python = match.group(1).strip().strip("'\"") if match else ""
    if python and os.access(python, os.X_OK):
        return None
    if shutil.which("pre-commit"):
        return None
    return f"its Python ({python or 'unknown'}) is gone and `pre-commit` is not on PATH"


def hook_problems(repo: install_mod.Repo, hook: str, paths: Paths, env: dict[str, str]) -> list[Check]:
    """Everything wrong with one of our hooks here, worst first; [] when all is well."""
    placement = install_mod.plan(repo, hook)
    problems: list[Check] = []
    hooks = repo.hooks
    if not install_mod.placement_ok(repo, placement):
        stray = [
            p
            for p in (hooks / hook, hooks / f"{hook}.legacy", hooks / f"{hook}.old", repo.common_dir / "hooks" / hook)
            if p != placement.target and install_mod.is_ours(p)
        ]
        if stray:
            why = f"tracekeeper's {hook} hook is at {stray[0]}, but git runs {_describe_placement(placement)}"
            if stray[0].name.endswith(".old"):
                why = f"lefthook renamed tracekeeper's {hook} hook to {stray[0].name} (it never runs those)"
            problems.append(Check(Status.FAIL, why, "`tracekeeper install` (it puts the hook where it runs)"))
        else:
            problems.append(
                Check(
                    Status.FAIL,
                    f"{hook} hook not installed (it belongs at {_describe_placement(placement)})",
                    "`tracekeeper install`",
                )
            )
        return problems
    if placement.mode is install_mod.Mode.LEGACY:
        cannot = _pre_commit_runnable(hooks / hook)
        if cannot:
            problems.append(
                Check(
                    Status.FAIL,
                    f"the pre-commit framework's {hook} hook cannot start ({cannot}), so neither it nor "
                    "tracekeeper's hook runs",
                    "reinstall pre-commit and run `pre-commit install`, or `pre-commit uninstall`",
                )
            )
    if placement.mode is install_mod.Mode.LEFTHOOK and placement.companion is None and env.get("LEFTHOOK") == "0":
        problems.append(Check(Status.WARN, "LEFTHOOK=0 is set: lefthook, and tracekeeper through it, is off"))
    if placement.manager == "husky" and env.get("HUSKY") == "0":
        problems.append(Check(Status.WARN, "HUSKY=0 is set: Husky runs no hooks, tracekeeper's included"))
    script = placement.target if placement.mode in (install_mod.Mode.FILE, install_mod.Mode.LEGACY) else None
    script = script or repo.script(hook)
    strict = install_mod.guard_strictness(script) if hook == install_mod.GUARD else None
    expected = install_mod.render(hook, paths, strict=bool(strict))
    if script.read_text(errors="replace") != expected:
        problems.append(
            Check(
                Status.WARN,
                f"{script} is from another tracekeeper version or other paths",
                "`tracekeeper install` (updates it)",
            )
        )
    chained = script.with_name(script.name + install_mod.CHAINED_SUFFIX)
    if (chained.exists() or chained.is_symlink()) and not os.access(chained, os.X_OK):
        problems.append(
            Check(
                Status.WARN,
                f"the hook tracekeeper chains, {chained}, is not executable, so it does not run "
                "(git skipped it before tracekeeper too)",
                f"`chmod +x {chained}` if it should run",
            )
        )
    for orphan in sorted(hooks.glob(f"{hook}*{install_mod.CHAINED_SUFFIX}")):
        owner = orphan.with_name(orphan.name.removesuffix(install_mod.CHAINED_SUFFIX))
        if not install_mod.is_ours(owner):
            problems.append(
                Check(
                    Status.WARN,
                    f"{orphan} is no longer chained by any tracekeeper hook, so it does not run",
                    "`tracekeeper install` (it re-chains it), or delete it",
                )
            )
    problems.sort(key=lambda c: c.status != Status.FAIL)
    return problems


def check_repo_hooks(ctx: Context) -> Check:
    repo = ctx.git_repo()
    if repo is None:
        return Check(Status.WARN, f"not in a git repository ({ctx.repo_error}): repository checks skipped")
    problems = hook_problems(repo, "post-commit", ctx.paths, ctx.env)
    if problems:
        return problems[0]
    placement = install_mod.plan(repo, "post-commit")
    extra = ""
    if placement.mode is install_mod.Mode.FILE:
        chained = placement.target.with_name(placement.target.name + install_mod.CHAINED_SUFFIX)
        if chained.exists() or chained.is_symlink():
            extra = f", chaining {chained.name}"
    if placement.mode is install_mod.Mode.LEFTHOOK and placement.companion is not None:
        extra = f", and {placement.companion.target} until lefthook installs its own post-commit hook"
    return Check(Status.OK, f"post-commit hook installed: {_describe_placement(placement)}{extra}")


def check_guard(ctx: Context) -> Check | None:
    repo = ctx.git_repo()
    if repo is None or not install_mod.guard_installed(repo):
        return None
    problems = hook_problems(repo, install_mod.GUARD, ctx.paths, ctx.env)
    if problems:
        return problems[0]
    placement = install_mod.plan(repo, install_mod.GUARD)
    script = placement.target if placement.mode in (install_mod.Mode.FILE, install_mod.Mode.LEGACY) else None
    strict = install_mod.guard_strictness(script or repo.script(install_mod.GUARD))
    return Check(
        Status.OK,
        f"pre-commit guard installed ({'blocks' if strict else 'warns'}): {_describe_placement(placement)}",
    )


def check_hooks_path(ctx: Context) -> Check | None:
    repo = ctx.git_repo()
    if repo is None:
        return None
    origin = ctx.git("config", "--show-scope", "--get", "core.hooksPath")
    if not repo.hooks_path:
        return Check(Status.OK, f"git runs hooks from {repo.hooks} (no core.hooksPath)")
    scope = origin.split("\t", 1)[0] if origin else "config"
    where = f"core.hooksPath={repo.hooks_path} ({scope})"
    if not repo.hooks.is_dir():
        return Check(
            Status.FAIL,
            f"{where} names {repo.hooks}, which does not exist: git runs no hooks at all",
            "`tracekeeper install` (creates it), or `git config --unset core.hooksPath`",
        )
    default = repo.common_dir / "hooks" / "post-commit"
    placement = install_mod.plan(repo, "post-commit")
    if not install_mod.placement_ok(repo, placement) and default != placement.target and install_mod.is_ours(default):
        return Check(
            Status.FAIL,
            f"{where}, but tracekeeper's hook is in {default.parent}, which git does not run",
            "`tracekeeper install` (installs where git looks)",
        )
    return Check(Status.OK, f"{where}: git runs hooks from {repo.hooks}")


# --- agents --------------------------------------------------------------------------------


def check_agents(ctx: Context) -> Check:
    from .agent_setup import AGENTS, inspect

    states = [inspect(spec) for spec in AGENTS.values()]
    errors = [s for s in states if s.error]
    if errors:
        return Check(Status.WARN, f"{errors[0].spec.name}: {errors[0].error}", f"fix or move {errors[0].config}")
    present = [s for s in states if s.present]
    hooked = [s for s in states if set(s.events) == set(s.spec.events)]
    missing = [s for s in present if set(s.events) != set(s.spec.events)]
    if missing:
        names = ", ".join(s.spec.name for s in missing)
        return Check(
            Status.WARN,
            f"no (or incomplete) tracekeeper hooks in {names}: their sessions are linked only by transcript discovery",
            "`tracekeeper agents install`",
        )
    if not hooked:
        return Check(Status.WARN, "no coding agent found on this machine (and none has tracekeeper's hooks)")
    notes = [f"{s.spec.name}: {s.note}" for s in hooked if s.note]
    if notes:
        return Check(Status.WARN, notes[0], "turn the agent's hooks back on in that file")
    return Check(Status.OK, "agent hooks installed: " + ", ".join(s.spec.name for s in hooked))


def check_codex_trust(ctx: Context) -> Check | None:
    """What Codex will do with our hooks: it runs one only while the trusted_hash stored for it
    is the hash of its current definition (agent_setup.codex_trust computes it as Codex does)."""
    from .agent_setup import AGENTS, CODEX_TRUST_HELP, codex_skipped, inspect

    state = inspect(AGENTS["codex"])
    if not state.events or state.trust is None:
        return None
    skipped = codex_skipped(state.trust, state.events)
    if skipped:
        return Check(Status.WARN, f"Codex will not run tracekeeper's hooks: {skipped}", CODEX_TRUST_HELP)
    return Check(Status.OK, "Codex trusts tracekeeper's hooks as they are now and runs them")


# --- notes refspecs --------------------------------------------------------------------------


def _notes_ref(ctx: Context) -> str:
    from tracekeeperd.config import DEFAULT_NOTES_REF, load
    from tracekeeperd.errors import ConfigError

    try:
        return load(ctx.env).notes_ref
    except ConfigError:
        return DEFAULT_NOTES_REF


def check_refspecs(ctx: Context) -> Check | None:
    if ctx.git_repo() is None:
        return None
    from . import sync

    notes_ref = _notes_ref(ctx)
    forced = sync.forced_notes_refspecs(ctx.repo, notes_ref)
    if forced:
        remote, spec = forced[0].remote, forced[0].refspec
        return Check(
            Status.FAIL,
            f"remote.{remote}.fetch has the forced refspec {spec}: every fetch overwrites local notes "
            f"({notes_ref}) with the remote's",
            f"`git config --fixed-value --unset remote.{remote}.fetch '{spec}'` "
            "(tracekeeper fetches notes into a tracking ref and merges them)",
        )
    return Check(Status.OK, f"no fetch refspec overwrites {notes_ref}")


def check_notes_fetch(ctx: Context) -> Check | None:
    """A remote added after `install` has no notes refspec: `git fetch` brings it no notes."""
    from . import sync

    if ctx.git_repo() is None:
        return None
    missing = sync.remotes_without_notes(ctx.repo, _notes_ref(ctx))
    if not missing:
        return Check(Status.OK, "every remote fetches trace notes")
    which = f"remotes {', '.join(missing)} do not" if len(missing) > 1 else f"remote {missing[0]} does not"
    return Check(
        Status.WARN,
        f"{which} fetch trace notes (added after `tracekeeper install`)",
        "`tracekeeper pull --all` (it sets up every remote, then fetches)",
    )


# --- machine limits, the active file, the spool ----------------------------------------------


def check_inotify(ctx: Context) -> Check | None:
    if not sys.platform.startswith("linux"):
        return None
    values: dict[str, int] = {}
    for name in ("max_user_watches", "max_user_instances"):
        try:
            values[name] = int((ctx.inotify / name).read_text().strip())
        except (OSError, ValueError):
            return Check(Status.WARN, f"cannot read {ctx.inotify / name}: inotify limits unknown")
    low = []
    if values["max_user_watches"] < MIN_WATCHES:
        low.append(f"fs.inotify.max_user_watches={values['max_user_watches']} (< {MIN_WATCHES})")
    if values["max_user_instances"] < MIN_INSTANCES:
        low.append(f"fs.inotify.max_user_instances={values['max_user_instances']} (< {MIN_INSTANCES})")
    if low:
        return Check(
            Status.WARN,
            "inotify limits are low, the daemon may miss spool and transcript changes: " + ", ".join(low),
            "`printf 'fs.inotify.max_user_watches=524288\\nfs.inotify.max_user_instances=512\\n' | "
            "sudo tee /etc/sysctl.d/60-tracekeeper.conf && sudo sysctl --system`",
        )
    return Check(
        Status.OK,
        f"inotify: {values['max_user_watches']} watches, {values['max_user_instances']} instances per user",
    )


def check_active_file(ctx: Context) -> Check | None:
    from tracekeeperd.active import ACTIVE_FILE, parse
    from tracekeeperd.errors import ActiveFileError

    repo = ctx.git_repo()
    if repo is None:
        return None
    raw_path = ctx.git("rev-parse", "--git-path", ACTIVE_FILE)
    if not raw_path:
        return None
    path = (ctx.repo / raw_path).resolve()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Check(Status.OK, f"no {ACTIVE_FILE} here (no agent session recorded since the last commit)")
    except OSError as exc:
        return Check(Status.FAIL, f"cannot read {path}: {exc.strerror}", f"fix its permissions, or delete {path}")
    try:
        sessions = parse(raw, base=repo.top or ctx.repo)
    except ActiveFileError as exc:
        return Check(Status.FAIL, f"{path} is not usable: {exc}", f"delete {path} (the next agent hook rewrites it)")
    missing = [s for s in sessions if not s.transcript.exists()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        return Check(
            Status.WARN,
            f"{path} names a transcript that does not exist: {missing[0].transcript}{more}",
            f"delete {path} if that session is over (`tracekeeper install --guard` warns at commit time)",
        )
    idle = [s for s in sessions if s.ended_at is None and s.seen_at is not None and ctx.now - s.seen_at > STALE_AFTER]
    if idle and len(idle) == len(sessions):
        hours = (ctx.now - max(s.seen_at or 0 for s in idle)) / 3600
        return Check(
            Status.WARN,
            f"{path} is stale: no agent hook has touched its sessions for {hours:.0f} h",
            f"delete {path} if those sessions are over",
        )
    return Check(Status.OK, f"{path}: {len(sessions)} session(s), transcripts present")


def check_spool(ctx: Context) -> Check:
    from tracekeeperd import spool

    waiting = spool.pending(ctx.paths.spool)
    bad_dir = ctx.paths.spool / spool.DEAD_LETTER
    bad = spool.dead_letters(ctx.paths.spool)
    running = ctx.daemon() is not None
    if waiting:
        try:
            oldest = ctx.now - waiting[0].stat().st_mtime
        except FileNotFoundError:
            oldest = 0.0
        if not running:
            return Check(
                Status.WARN,
                f"{len(waiting)} commit(s) waiting in {ctx.paths.spool} for the daemon",
                "start tracekeeperd: it ingests the spool when it starts",
            )
        if oldest > SPOOL_LAG:
            return Check(
                Status.WARN,
                f"{len(waiting)} commit(s) waiting in {ctx.paths.spool}, the oldest for {oldest / 60:.0f} min, "
                "although the daemon runs",
                "see the daemon's log (journalctl --user -u tracekeeperd, or its stderr) and `tracekeeper status`",
            )
    if bad:
        return Check(
            Status.FAIL,
            f"{len(bad)} commit file(s) set aside in {bad_dir}, so not linked; the newest because: "
            f"{spool.dead_letter_reason(bad[0])}",
            "fix the cause, then `tracekeeper retry` (puts them back in the spool); or "
            "`tracekeeper drop --failed` to give them up",
        )
    return Check(Status.OK, f"spool: {len(waiting)} commit(s) waiting, none set aside")


CHECKS: tuple[tuple[str, Callable[[Context], Check | list[Check] | None]], ...] = (
    ("config", check_config),
    ("daemon", check_daemon),
    ("store", check_store),
    ("queue", check_queue),
    ("hf-token", check_hf_token),
    ("repo-hooks", check_repo_hooks),
    ("guard", check_guard),
    ("hooks-path", check_hooks_path),
    ("agents", check_agents),
    ("codex-trust", check_codex_trust),
    ("refspecs", check_refspecs),
    ("notes-fetch", check_notes_fetch),
    ("inotify", check_inotify),
    ("active-file", check_active_file),
    ("spool", check_spool),
)


def run(ctx: Context) -> list[tuple[str, Check]]:
    """Every check that applies, in order; a check that crashes is reported as failed."""
    results: list[tuple[str, Check]] = []
    for name, fn in CHECKS:
        try:
            result = fn(ctx)
        except Exception as exc:  # one broken check must not hide the others
            result = Check(Status.FAIL, f"the check itself failed: {type(exc).__name__}: {exc}", None)
        for check in result if isinstance(result, list) else [result] if result is not None else []:
            results.append((name, check))
    return results


@click.command("doctor", short_help="Check the whole setup and say how to fix what is wrong.")
@click.option(
    "-C", "repo", type=click.Path(exists=True, file_okay=False, path_type=Path), default=".", help="Repository."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object: ok, and every check.")
def doctor(repo: Path, as_json: bool) -> None:
    """Check the daemon, the store, this repository's hooks, agent hooks, notes refspecs,
    inotify limits, hf-traces-active.json and the spool; print one line per check.

    ✓ fine, ! degraded (does not fail), ✗ broken. Exits 1 when something is broken.

    \b
    Examples:
      $ tracekeeper doctor
      $ tracekeeper doctor --json | jq '.checks[] | select(.status != "ok")'
    """
    results = run(Context(repo.resolve()))
    ok = all(check.status is not Status.FAIL for _, check in results)
    if as_json:
        doc = {
            "ok": ok,
            "checks": [
                {"name": name, "status": str(c.status), "message": c.message, "fix": c.fix} for name, c in results
            ],
        }
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        # A check quotes transcript paths and session ids (the active file is an agent's
        # payload) and daemon answers: control characters spelled out (--json escapes them).
        from .safetext import visible

        width = max(len(name) for name, _ in results)
        for name, check in results:
            fix = f" -> fix: {check.fix}" if check.fix and check.status is not Status.OK else ""
            click.echo(f"{SYMBOLS[check.status]} {name:<{width}}  {visible(check.message + fix)}")
        failed = sum(c.status is Status.FAIL for _, c in results)
        warned = sum(c.status is Status.WARN for _, c in results)
        click.echo(f"{failed} problem(s), {warned} warning(s)" if failed or warned else "all good")
    click.get_current_context().exit(0 if ok else 1)  # click.exceptions.Exit: main() returns the code
