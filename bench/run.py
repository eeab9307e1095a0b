"""Benchmarks for the core issue: cheap commits, fast notes, and a burst that stays correct.

Why a runner and not tests: timing on a shared 2-core machine is noisy, so every figure is set
against a baseline measured in the same run, interleaved so that drift hits both sides alike,
and nothing fails on a number. Each target line says "target met" or "target missed"; the exit
status is 0 regardless. Correctness problems (a note missing or duplicated after a burst) are
printed as FINDING lines, never hidden.

Everything is real, as in tests/: the installed POSIX sh hook, real git, the daemon as its own
process, and for the Hub the real huggingface_hub + hf_xet against tests/hubstub.py and its xet
CAS over HTTP. From the repository root:

    .venv/bin/python bench/run.py                    # full size: tens of minutes (500 MB and 1 GB sessions)
    .venv/bin/python bench/run.py --quick            # smaller counts: about 5 minutes on 2 cores
    .venv/bin/python bench/run.py --hook FILE        # also measure a candidate post-commit hook
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import shlex
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.harness import Daemon, Env, Repo, append_lines, make_env, make_repo  # noqa: E402
from tests.hubstub import running_hub  # noqa: E402
from tracekeeper.api import Client  # noqa: E402
from tracekeeperd import spool  # noqa: E402
from tracekeeperd.paths import resolve  # noqa: E402
from tracekeeperd.queue import Queue  # noqa: E402

NOTES_REF = "refs/notes/hf-traces"
TOKEN = "hf_alice_write"
NOOP_HOOK = "#!/bin/sh\nexit 0\n"
#: The least a post-commit hook that learns the commit and its repository can do: sh and one git
#: start (`git rev-parse`), the floor for part 1b.
FLOOR_HOOK = "#!/bin/sh\ngit rev-parse HEAD --absolute-git-dir --show-toplevel >/dev/null 2>&1\nexit 0\n"
#: Every timed commit. No tree work, so the hook's share of the time is not diluted.
COMMIT = ("commit", "-q", "--allow-empty", "-m")
#: Seconds the daemon may take to finish a commit's work (section 1) before the next commit is
#: timed anyway (and a FINDING says so).
SETTLE_TIMEOUT = 30.0


# --- small helpers ----------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: with 30-60 samples, interpolating would only invent precision."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def verdict(met: bool) -> str:
    return "target met" if met else "target missed"


def temp_env(**overrides: str) -> contextlib.AbstractContextManager[Env]:
    """harness.make_env as a context manager, so its temp tree is removed whatever happens."""
    return contextlib.contextmanager(make_env)(**overrides)


@contextlib.contextmanager
def daemon_running(env: Env) -> Iterator[Daemon]:
    """The daemon as a user runs it: at its default log level (tests run it at debug)."""
    daemon = Daemon(env, log_level=None).start()
    try:
        yield daemon
    finally:
        daemon.stop()


@dataclass(frozen=True)
class Hook:
    """The post-commit hook under test: the shipped one, or a candidate given with --hook."""

    label: str
    template: str | None = None  # None: `tracekeeper install`, exactly as a user gets it

    def install(self, repo: Repo) -> Repo:
        repo.install()
        if self.template is not None:
            # Same substitution as tracekeeper.install.render, for this repo's temp HOME.
            paths = resolve(repo.env.vars)
            text = self.template.replace("@SPOOL_DIR@", shlex.quote(str(paths.spool)))
            set_hook(repo, text.replace("@SOCKET@", shlex.quote(str(paths.socket))))
        return repo


def set_hook(repo: Repo, text: str) -> None:
    hook = repo.git_dir / "hooks" / "post-commit"
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text(text)
    hook.chmod(0o755)


def with_session(repo: Repo, transcript: Path, session_id: str, lines: int = 5) -> Repo:
    """Give `repo` an active agent session, as the agent's SessionStart hook would.

    The transcript opens as every Codex rollout does: a `session_meta` line carrying the
    session's id and cwd (openai/codex `codex-rs/core/src/rollout/recorder.rs` writes it
    first; ../shared/docs/agents.md, "cwd / id / start"). Without it the daemon's discovery
    never settles the file's identity and reads its head again on every growth: work no real
    session causes, which the figures would then count.
    """
    if not transcript.exists():
        transcript.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "timestamp": "2026-11-25T09:00:00.000Z",
            "type": "session_meta",
            "payload": {"id": session_id, "timestamp": "2026-11-25T09:00:00.000Z", "cwd": str(repo.path)},
        }
        transcript.write_text(json.dumps(meta) + "\n")
        append_lines(transcript, lines - 1)
    repo.activate(transcript, session_id=session_id)
    return repo


def grow(transcript: Path, count: int, start: int) -> None:
    """Append agent records stamped now, as a live agent writes them.

    Real stamps matter when the daemon ingests late (part 3b): it cuts a transcript at the
    commit time using them, so fixed old stamps would skip that work and flatter the figures.
    """
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    append_lines(transcript, count, start=start, stamp=stamp)


def session_uuid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def git_commit(repo: Repo, message: str) -> float:
    """Seconds `git commit` took, hook included: what the user (or the agent) waits for."""
    start = time.perf_counter()
    subprocess.run(["git", *COMMIT, message], cwd=repo.path, env=repo.env.vars, check=True)
    return time.perf_counter() - start


def note_ready(repo: Repo, sha: str) -> bool:
    """The check a user would make: `git notes show` succeeds."""
    proc = subprocess.run(
        ["git", "notes", f"--ref={NOTES_REF}", "show", sha],
        cwd=repo.path,
        env=repo.env.vars,
        capture_output=True,
        check=False,
    )
    return proc.returncode == 0


def wait_note(repo: Repo, sha: str, since: float, timeout: float, poll: float = 0.005) -> float | None:
    """Seconds from `since` (a perf_counter reading) until the note is readable; None on timeout."""
    while not note_ready(repo, sha):
        if time.perf_counter() - since > timeout:
            return None
        time.sleep(poll)  # the poll interval: the latency is read to `poll`
    return time.perf_counter() - since


def noted_commits(repo: Repo) -> set[str]:
    """Commits with a note on our ref: one git call per repository, cheap enough to poll."""
    out = repo.git("notes", f"--ref={NOTES_REF}", "list", check=False)
    return {parts[1] for parts in (line.split() for line in out.splitlines()) if len(parts) == 2}


def link_counts(repo: Repo) -> dict[str, int]:
    """`hf-trace:` lines in the note of every commit of the repository (0 without a note)."""
    out = repo.git("log", f"--notes={NOTES_REF}", "--format=%H%x01%N%x02")
    counts: dict[str, int] = {}
    for record in out.split("\x02"):
        sha, sep, body = record.strip().partition("\x01")
        if sep:
            counts[sha] = sum(1 for line in body.splitlines() if line.startswith("hf-trace: "))
    return counts


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) of a process in KiB, from /proc; empty where there is none."""
    values: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values


def cpu_seconds(pid: int) -> float:
    """CPU time of a process plus its reaped children (the git calls it makes), from /proc.

    Why: on 2 cores, whatever the daemon burns during a burst is taken from the commits.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    # After the ")": state is field 3, so utime, stime, cutime, cstime (14-17) are [11:15].
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int, *, own: bool = True) -> float:
    """`cpu_seconds` plus the CPU its live descendants have used so far, from /proc (with
    `own=False`: its children's alone, reaped and live).

    Why: the daemon keeps git processes running per busy repository (tracekeeperd/plumbing.py)
    and reaps them only when the repository goes idle, so during a burst their CPU is in no
    `cutime` yet; the difference of two readings still counts a child reaped in between once.
    """
    clk = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}  # pid -> (parent, own CPU + reaped children's)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        reaped = sum(int(v) for v in fields[13:15]) / clk  # cutime, cstime
        if int(entry.name) == pid:
            used = sum(int(v) for v in fields[11:13]) / clk if own else 0.0  # utime, stime
        else:
            # A kept git uses a few ms over its life: in clock ticks (10 ms), that reads 0.
            try:
                used = int((entry / "schedstat").read_text().split()[0]) / 1e9
            except (OSError, IndexError, ValueError):
                used = sum(int(v) for v in fields[11:13]) / clk
        stats[int(entry.name)] = (int(fields[1]), used + reaped)
    kids: dict[int, list[int]] = {}
    for child, (parent, _) in stats.items():
        kids.setdefault(parent, []).append(child)
    total, todo = stats.get(pid, (0, math.nan))[1], list(kids.get(pid, []))
    while todo:
        child = todo.pop()
        total += stats[child][1]
        todo.extend(kids.get(child, []))
    return total


#: Thread states that mean "working": running or runnable, or in uninterruptible (disk) sleep.
BUSY_STATES = frozenset("RD")


@dataclass(frozen=True)
class TreeUse:
    """One reading of a process and its live descendants (`tree_use`)."""

    #: CPU used so far, in seconds: every thread's run time (ns, from schedstat) plus the
    #: children each process has reaped (utime/stime, clock ticks); NaN when the process is gone.
    seconds: float
    #: Some thread of the tree was running, runnable, or waiting on the disk at the reading.
    busy: bool


def tree_use(pid: int) -> TreeUse:
    """CPU of `pid` and its live descendants at nanosecond resolution, and whether any of them works.

    Why not `cpu_seconds`: its 10 ms clock ticks read 0 for most single commits and for a
    quiet daemon, and it misses the git processes the daemon keeps running per repository
    (tracekeeperd/plumbing.py, reaped only after `plumbing.IDLE`). Why not `tree_cpu_seconds`:
    that walks all of /proc; this follows /proc/<pid>/task/<tid>/children, cheap enough to poll.
    A child reaped between two readings moves from "live" to its parent's reaped share, so the
    difference of two readings still counts it once (to the clock tick).
    """
    clk = os.sysconf("SC_CLK_TCK")
    total, busy, todo, seen = 0.0, False, [pid], 0
    while todo:
        proc = Path(f"/proc/{todo.pop()}")
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            tasks = list((proc / "task").iterdir())
        except OSError:
            continue  # ended between the parent's listing and now: its CPU is its parent's reaped share
        seen += 1
        total += sum(int(v) for v in fields[13:15]) / clk  # cutime, cstime
        for task in tasks:
            try:
                total += int((task / "schedstat").read_text().split()[0]) / 1e9
                busy |= (task / "stat").read_text().rsplit(")", 1)[1].split()[0] in BUSY_STATES
                todo.extend(int(child) for child in (task / "children").read_text().split())
            except (OSError, IndexError, ValueError):
                continue  # a thread that just ended
    return TreeUse(total if seen else math.nan, busy)


def wait_quiet(pid: int, timeout: float, *, step: float = 0.01, still: float = 0.0002) -> float | None:
    """Seconds until `pid` and its descendants are done working; None if not within `timeout`.

    Done: at two polls in a row `step` apart no thread of the tree works (`TreeUse.busy`) and
    the tree's CPU moved less than `still` since the poll before. An idle daemon uses about
    1 ms every 2 s (its timers), so a quiet reading is found within a few polls of the end of
    the work, and a measurement taken then is neither early nor padded by a fixed sleep.
    """
    since = time.perf_counter()
    last, still_polls = tree_use(pid), 0
    while still_polls < 2:
        if math.isnan(last.seconds) or time.perf_counter() - since > timeout:
            return None
        time.sleep(step)  # the poll interval
        now = tree_use(pid)
        moved = abs(now.seconds - last.seconds)
        still_polls = still_polls + 1 if not (now.busy or last.busy) and moved < still else 0
        last = now
    return time.perf_counter() - since


def queue_idle(env: Env) -> bool:
    """Every spool file taken and no job pending or uploading, read without asking the daemon
    (a request would cost it the CPU being measured): the queue file read-only, the spool listed."""
    if spool.pending(env.spool):
        return False
    queue = Queue.peek(env.state / "queue.sqlite3")
    if queue is None:
        return True
    try:
        counts = queue.counts()
    except sqlite3.Error:
        return False  # mid-migration or locked: ask again at the next poll
    finally:
        queue.close()
    return not counts.get("pending") and not counts.get("uploading")


def wait_settled(env: Env, pid: int, timeout: float) -> float | None:
    """Seconds until the daemon has taken every commit handed to it, finished every job and gone
    quiet (`wait_quiet`: its housekeeping after the batch too); None if not within `timeout`.

    Why the queue first: while a burst's commits are still arriving the daemon holds claiming
    (tracekeeperd/worker.py, `Arrivals.hold`) and uses no CPU, which alone would read as done.
    """
    since = time.perf_counter()
    while not queue_idle(env):
        if time.perf_counter() - since > timeout:
            return None
        time.sleep(0.005)  # the poll interval
    quiet = wait_quiet(pid, timeout - (time.perf_counter() - since))
    return None if quiet is None else time.perf_counter() - since


def daemon_status(env: Env) -> dict[str, Any]:
    """The daemon's own view (queue counts, failures), in-process: no CLI start-up per call."""
    try:
        return Client(env.socket, timeout=10).status(include_done=False)
    except Exception as exc:
        return {"error": str(exc)}


@dataclass
class Report:
    """Figures and findings; findings are repeated at the end so noise cannot bury them."""

    findings: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        print(line, flush=True)

    def finding(self, line: str) -> None:
        self.findings.append(line)
        print("FINDING: " + line, flush=True)


# --- 1. commit latency ------------------------------------------------------------------------


def bench_commit_latency(report: Report, rounds: int, hooks: list[Hook]) -> None:
    """Each hook against a no-op hook, daemon up and daemon down, with an active session.

    One repository per variant, all with hf-traces-active.json (so the hook copies it into the
    spool); the daemon-down repositories live in a second HOME whose daemon never runs. The
    variants are interleaved in a new random order every round. One more variant, outside the
    target, is a commit with no agent session (a human's commit), the most common kind.
    """
    report.add(f"\n## 1. commit latency: `git {' '.join(COMMIT)} <msg>`, {rounds} commits per variant")
    with temp_env() as up_env, temp_env() as down_env:
        variants: dict[str, Repo] = {}
        noop = make_repo(up_env, "noop")
        set_hook(noop, NOOP_HOOK)
        variants["no-op hook"] = noop
        for i, hook in enumerate(hooks):
            for env, state in ((up_env, "up"), (down_env, "down")):
                variants[f"{hook.label}, daemon {state}"] = hook.install(make_repo(env, f"h{i}{state}"))
        for repo in variants.values():
            with_session(repo, repo.env.transcript(), session_uuid(1))
        no_session = f"{hooks[0].label}, no session, up"
        variants[no_session] = hooks[0].install(make_repo(up_env, "nosession"))
        samples: dict[str, list[float]] = {name: [] for name in variants}
        unsettled = 0
        with daemon_running(up_env) as daemon:
            assert daemon.proc is not None
            for repo in variants.values():  # warm-up: page cache, git's files, the daemon's imports
                for i in range(3):
                    git_commit(repo, f"warm {i}")
            unsettled += wait_settled(up_env, daemon.proc.pid, SETTLE_TIMEOUT) is None
            for i in range(rounds):
                order = list(variants)
                random.shuffle(order)
                for name in order:
                    samples[name].append(git_commit(variants[name], f"c{i}"))
                    # The previous commit's background work (ingest, note) is over before the
                    # next commit, as between an agent's commits: none of it is timed.
                    unsettled += wait_settled(up_env, daemon.proc.pid, SETTLE_TIMEOUT) is None
            stray = sorted(p.name for env in (up_env, down_env) for p in env.spool.glob("*.tmp"))
        base = statistics.median(samples["no-op hook"])
        width = max(map(len, samples))
        for name, values in samples.items():
            median = statistics.median(values)
            line = f"{name:{width}s} median {ms(median):>8s}  p95 {ms(pct(values, 0.95)):>8s}"
            if name == no_session:
                line += f"  median ratio {median / base:.2f}  (no target)"
            elif name != "no-op hook":
                ratio = median / base
                line += f"  median ratio {ratio:.2f}  (target <= 1.5: {verdict(ratio <= 1.5)})"
            report.add(line)
        if unsettled:
            report.finding(
                f"commit latency: {unsettled} times the daemon was not idle {SETTLE_TIMEOUT:.0f} s after a commit,"
                " so the commit after it was timed while the daemon worked"
            )
        if stray:
            report.finding(
                f"{len(stray)} spool files were left as *.commit.tmp (never renamed into place, never"
                f" cleaned up), e.g. {stray[0]}; the no-session variant made {rounds + 3} commits"
            )


def bench_back_to_back(report: Report, rounds: int, hooks: list[Hook]) -> None:
    """Daemon down, commits back to back (no pause): the hook's whole cost lands on the commit.

    Against the no-op hook (the baseline, target <= 1.3x) and the floor hook (sh plus one
    `git rev-parse`, which the shipped hook cannot do without: shown for reference). The
    repositories each have an active session (so the shipped hook copies it into the spool)
    and are interleaved in a new random order every round.
    """
    report.add(f"\n## 1b. commit latency, daemon down, back to back: {rounds} commits per variant")
    with temp_env() as env:
        variants: dict[str, Repo] = {}
        noop = make_repo(env, "noop")
        set_hook(noop, NOOP_HOOK)
        variants["no-op hook"] = noop
        floor = make_repo(env, "floor")
        set_hook(floor, FLOOR_HOOK)
        variants["floor: sh + git rev-parse"] = floor
        for i, hook in enumerate(hooks):
            variants[f"{hook.label}, daemon down"] = hook.install(make_repo(env, f"hook{i}"))
        for repo in variants.values():
            with_session(repo, repo.env.transcript(), session_uuid(1))
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for repo in variants.values():
            for i in range(3):
                git_commit(repo, f"warm {i}")
        for i in range(rounds):
            order = list(variants)
            random.shuffle(order)
            for name in order:
                samples[name].append(git_commit(variants[name], f"c{i}"))
        base = statistics.median(samples["no-op hook"])
        width = max(map(len, samples))
        for name, values in samples.items():
            median = statistics.median(values)
            line = f"{name:{width}s} median {ms(median):>8s}  p95 {ms(pct(values, 0.95)):>8s}"
            if name == "no-op hook":
                line += "  (baseline)"
            elif name.startswith("floor"):
                line += f"  median ratio {median / base:.2f}  (reference, no target)"
            else:
                ratio = median / base
                line += f"  median ratio {ratio:.2f}  (target <= 1.3: {verdict(ratio <= 1.3)})"
            report.add(line)


# --- 2. commit -> note latency ----------------------------------------------------------------


def bench_note_latency(report: Report, commits: int, hook: Hook) -> None:
    """From `git commit` returning to `git notes show` succeeding: Hub stand-in vs local store.

    One commit at a time, each waited for, the two stores interleaved. The session grows by
    three lines before every commit, so every note covers new bytes and every upload is real.
    Each store's first commit is reported apart: it pays one-off costs (the Hub client's
    imports, creating the bucket) that a running daemon pays once.
    """
    report.add(f"\n## 2. commit -> note latency ({hook.label}): {commits} commits per store, session growing")
    with temp_env() as local_env, temp_env() as hf_env, running_hub(hf_env.root / "cas") as hub:
        hf_env.vars.update(HF_ENDPOINT=hub.endpoint, HF_TOKEN=TOKEN)
        stores = {
            "local store": hook.install(make_repo(local_env, "app")),
            "Hub stand-in": hook.install(make_repo(hf_env, "app")),
        }
        for repo in stores.values():
            with_session(repo, repo.env.transcript(), session_uuid(2))
        samples: dict[str, list[float]] = {name: [] for name in stores}
        first: dict[str, float | None] = {}
        missing = dict.fromkeys(stores, 0)
        line_no = 100
        with daemon_running(local_env), daemon_running(hf_env) as hf_daemon:
            assert hf_daemon.proc is not None
            hf_memory = {"start": memory_kib(hf_daemon.proc.pid).get("VmRSS", 0)}
            for i in range(-1, commits):
                order = list(stores)
                random.shuffle(order)
                for name in order:
                    repo = stores[name]
                    grow(repo.env.transcript(), 3, start=line_no)
                    line_no += 3
                    git_commit(repo, f"c{i}")
                    returned = time.perf_counter()
                    # Reading HEAD happens after the commit returned, so it counts as waiting.
                    waited = wait_note(repo, repo.git("rev-parse", "HEAD"), returned, timeout=60 if i < 0 else 30)
                    if i < 0:
                        first[name] = waited
                    elif waited is None:
                        missing[name] += 1
                    else:
                        samples[name].append(waited)
            hf_memory.update(memory_kib(hf_daemon.proc.pid))
        local = samples["local store"]
        base = statistics.median(local) if local else math.nan
        for name, values in samples.items():
            cold_s = first.get(name)
            cold = ms(cold_s) if cold_s is not None else "no note in 60 s"
            if not values:
                report.add(f"{name:13s} no note arrived (first commit: {cold})")
                continue
            p50, p95 = statistics.median(values), pct(values, 0.95)
            line = f"{name:13s} p50 {ms(p50):>8s}  p95 {ms(p95):>8s}  max {ms(max(values)):>8s}  first commit {cold}"
            if name == "Hub stand-in":
                line += f"\n{'':13s} p50 ratio to local {p50 / base:.2f}  (target p50 < 1 s: {verdict(p50 < 1.0)})"
            report.add(line)
        if hf_memory.get("VmHWM"):
            report.add(
                f"Hub daemon memory: RSS {hf_memory['start'] / 1024:.0f} MiB at start,"
                f" peak {hf_memory['VmHWM'] / 1024:.0f} MiB after {commits + 1} one-at-a-time uploads"
            )
        for name, count in missing.items():
            if count:
                report.finding(f"{name}: {count} of {commits} notes did not appear within 30 s of the commit")


# --- 3. burst -----------------------------------------------------------------------------


def bench_burst(report: Report, repos_n: int, per_repo: int, hook: Hook, *, backlog: bool, timeout: float) -> None:
    """Commits across many sessions as fast as git allows, against the Hub stand-in.

    Round-robin over the repositories, one line appended to a repository's session before each
    of its commits. With `backlog` the daemon is down during the burst and started after it:
    everything then comes from the spool, which is what a laptop waking up looks like. Then:
    does every commit end with exactly one link, how long did that take, and what did it cost
    the daemon in memory.
    """
    total = repos_n * per_repo
    mode = "daemon started after the burst (spool backlog)" if backlog else "daemon up"
    report.add(f"\n## 3{'b' if backlog else 'a'}. burst ({hook.label}): {total} commits over {repos_n} repos, {mode}")
    with temp_env() as env, running_hub(env.root / "cas") as hub:
        env.vars.update(HF_ENDPOINT=hub.endpoint, HF_TOKEN=TOKEN)
        repos: list[Repo] = []
        transcripts: list[Path] = []
        for n in range(repos_n):
            sid = session_uuid(100 + n)
            transcripts.append(env.transcript(f"rollout-2026-11-25T09-00-00-{sid}.jsonl"))
            repos.append(with_session(hook.install(make_repo(env, f"r{n:02d}")), transcripts[n], sid))
        daemon = Daemon(env)
        try:
            if not backlog:
                daemon.start()
            rss_start = memory_kib(daemon.proc.pid).get("VmRSS", 0) if daemon.proc else 0
            cpu_start = cpu_seconds(daemon.proc.pid) if daemon.proc else 0.0
            latencies: list[float] = []
            began = time.perf_counter()
            for i in range(per_repo):
                for n, repo in enumerate(repos):
                    grow(transcripts[n], 1, start=10 + i)
                    latencies.append(git_commit(repo, f"r{n} c{i}"))
            committed = time.perf_counter()
            if backlog:
                daemon.start()
            ready = time.perf_counter()
            wanted = [set(repo.git("rev-list", "HEAD").split()) for repo in repos]
            noted_at: float | None = None
            while time.perf_counter() - ready < timeout:
                if all(want <= noted_commits(repo) for want, repo in zip(wanted, repos, strict=True)):
                    noted_at = time.perf_counter()
                    break
                time.sleep(0.05)  # the poll interval of a poll with a deadline (`timeout`)
            status = daemon_status(env)
            assert daemon.proc is not None
            memory = memory_kib(daemon.proc.pid)
            cpu = cpu_seconds(daemon.proc.pid) - cpu_start
        finally:
            if daemon.proc is not None:
                daemon.stop()
        spent = committed - began
        report.add(
            f"commits: {spent:.1f} s ({total / spent:.0f}/s), git commit median {ms(statistics.median(latencies))}"
            f" p95 {ms(pct(latencies, 0.95))}"
        )
        if noted_at is None:
            left = sum(len(want - noted_commits(repo)) for want, repo in zip(wanted, repos, strict=True))
            report.add(f"NOT all noted {timeout:.0f} s after the burst: {left} of {total} commits have no note")
            report.finding(f"burst ({mode}): {left} of {total} commits without a note {timeout:.0f} s after it")
        elif backlog:
            report.add(
                f"all {total} noted {noted_at - committed:.1f} s after the last commit"
                f" (daemon start-up included; {noted_at - ready:.1f} s from the daemon answering)"
            )
        else:
            report.add(
                f"all {total} noted {noted_at - began:.1f} s after the first commit;"
                f" drained {noted_at - committed:.2f} s after the last commit"
            )
        offenders: dict[str, int] = {}
        for want, repo in zip(wanted, repos, strict=True):
            for sha, count in link_counts(repo).items():
                if sha in want and count != 1:
                    offenders[f"{repo.path.name}@{sha[:10]}"] = count
        if offenders:
            sample = ", ".join(f"{k}: {v} links" for k, v in list(offenders.items())[:6])
            report.add(f"{len(offenders)} of {total} commits do not have exactly one hf-trace line: {sample}")
            report.finding(f"burst ({mode}): {len(offenders)} commits with a link count != 1 ({sample})")
        else:
            report.add(f"all noted exactly once: {total} commits, one hf-trace line each")
        queue = status.get("queue") or status
        report.add(
            f"queue after: {queue}; Hub uploads {hub.count(path_suffix='/batch')} batches"
            f" for {total} commits in {repos_n} sessions"
        )
        if isinstance(queue, dict) and (queue.get("failed") or queue.get("pending") or queue.get("uploading")):
            errors = sorted({str(j.get("last_error")) for j in status.get("jobs", []) if j.get("last_error")})
            report.finding(f"burst ({mode}): queue not clean after the burst: {queue}; errors: {errors[:3]}")
        peak = memory.get("VmHWM", 0)
        cpu_text = f"daemon CPU incl. its git calls {cpu:.1f} s ({cpu / total * 1000:.0f} ms/commit)"
        if backlog:
            # Start-up overlaps the drain here (the ready check takes ~0.5 s), so no "at start" figure.
            report.add(f"daemon peak RSS (VmHWM) {peak / 1024:.0f} MiB; {cpu_text}")
        elif rss_start and peak:
            report.add(
                f"daemon RSS right after start {rss_start / 1024:.0f} MiB, peak (VmHWM) {peak / 1024:.0f} MiB:"
                f" {peak / rss_start:.2f}x; {cpu_text}"
            )


# --- main -------------------------------------------------------------------------------------


def machine() -> str:
    git = subprocess.run(["git", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    system = f"{platform.system()} {platform.release()}"
    return f"{os.cpu_count()} cores, Python {platform.python_version()}, {git}, {system}"


# --- 4. the focused benchmarks ----------------------------------------------------------------

#: The other scripts in bench/, each measuring its own baseline in its own run and printing its
#: targets as met or missed; (script, full arguments, --quick arguments).
SCRIPTS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("bench_hook.py", (), ("--runs", "10")),
    ("bench_cli.py", (), ("--runs", "8")),
    ("bench_redact.py", (), ("--size-mb", "10", "--repeat", "1")),
    ("bench_upload_redaction.py", (), ("--size-mb", "5", "--runs", "2")),
    ("bench_visibility.py", (), ("--rounds", "10")),
    ("bench_notes.py", (), ()),
    ("bench_discovery.py", ("--quick",), ("--quick",)),
    ("bench_web.py", (), ("--quick",)),
    ("bench_read.py", (), ("--quick",)),
    ("bench_large.py", (), ("--quick",)),
    ("bench_history.py", (), ("--quick",)),
    ("bench_fleet.py", (), ("--quick",)),
)


def bench_scripts(report: Report, quick: bool) -> None:
    """Run each focused benchmark as its own process and repeat its target lines in the summary,
    so one command (`make bench`) says, for every target of every issue, met or missed."""
    for script, full, small in SCRIPTS:
        report.add(f"\n## {script}")
        argv = [sys.executable, str(ROOT / "bench" / script), *(small if quick else full)]
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
        for line in proc.stdout.splitlines():
            report.add(line)
            if "target met" in line or "target missed" in line or "met" in line.split() or "missed" in line.split():
                report.targets.append(f"{script}: {line.strip()}")
        if "Traceback" in proc.stderr:  # a missed target is a verdict line, a crash is a finding
            report.finding(f"{script} crashed: {proc.stderr.strip().splitlines()[-1]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="tracekeeper benchmarks (see the module docstring)")
    parser.add_argument("--quick", action="store_true", help="smaller counts, about a third of the time")
    parser.add_argument(
        "--only",
        choices=["commit", "note", "burst", "scripts"],
        action="append",
        help="run only this part (repeatable); scripts = the other bench/*.py",
    )
    parser.add_argument(
        "--hook",
        type=Path,
        help="a candidate post-commit hook template (@SPOOL_DIR@/@SOCKET@ as in the shipped one): measured"
        " next to the shipped hook in part 1, and instead of it in parts 2 and 3",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed for the interleaving order")
    args = parser.parse_args(argv)
    random.seed(args.seed)
    only = set(args.only or ["commit", "note", "burst", "scripts"])
    shipped = Hook("tracekeeper hook")
    hooks = [shipped] + ([Hook(f"candidate {args.hook.name}", args.hook.read_text())] if args.hook else [])
    main_hook = hooks[-1]
    quick = args.quick
    report = Report()
    began = time.perf_counter()
    report.add(f"# tracekeeper benchmarks{' --quick' if quick else ''}: {machine()}")
    steps: list[tuple[str, Callable[[], None]]] = [
        ("commit", lambda: bench_commit_latency(report, rounds=20 if quick else 60, hooks=hooks)),
        ("commit", lambda: bench_back_to_back(report, rounds=30 if quick else 100, hooks=hooks)),
        ("note", lambda: bench_note_latency(report, commits=10 if quick else 30, hook=main_hook)),
        ("burst", lambda: bench_burst(report, 10, 10 if quick else 50, main_hook, backlog=False, timeout=120)),
        ("burst", lambda: bench_burst(report, 10, 10 if quick else 50, main_hook, backlog=True, timeout=120)),
        ("scripts", lambda: bench_scripts(report, quick)),
    ]
    for name, step in steps:
        if name in only:
            step()
    report.add(f"\ntotal {time.perf_counter() - began:.0f} s")
    if report.targets:
        report.add("\nTargets of the focused benchmarks:")
        for line in report.targets:
            report.add(f"- {line}")
    if report.findings:
        report.add("\nFindings:")
        for line in report.findings:
            report.add(f"- {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
