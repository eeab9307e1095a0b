"""Many repositories (issue #10): a burst over 100 of them, and `status` with 1 to 1,000 known.

1. Burst. 100 repositories, each with its own agent session, committed to round-robin as fast
   as git goes (50 commits each, 5,000 in all; --quick: 10 each), the daemon up, the Hub
   stand-in (real huggingface_hub + hf_xet against tests/hubstub.py). The queue file is read
   (read-only, in this process) until every job is done; the daemon's CPU time including its
   git children (the kept ones still running too) is taken from /proc over the whole burst.
   Targets: all noted <= 2 s after the last commit; <= 5 ms of daemon CPU per commit. Then
   every commit is checked for exactly one `hf-trace:` line. Run twice by default: as above,
   then (`--only burst-remote`) with an `origin` in every repository, as a user's clone has,
   so the daemon also keeps each one's notes-sync state after its notes writes.
   The same burst's worker side alone (`--only batch`): the worker driven in-process (as
   tests/workerkit.py does) over 100 repositories, 4 batches of 2 jobs per repository, with the
   local store; CPU of this process and of its git children (the reaped ones and the kept
   ones still running, from /proc) per repository per batch (one notes commit, its repair
   look, one session's redacted copy and upload), the first batch
   left out (it starts the repositories' kept git processes). No commits and no arrival timing:
   a figure the machine's load does not reshape by changing how many batches a burst makes.
2. `status`. Daemons that have seen 1 (the baseline), 10, 100 and 1,000 repositories (each with
   a remote and a note), `tracekeeper status --json` run against each in turn (random order per
   round) once the daemon's first answer is in. Target: 1,000 repositories within 1.2x of 1.

Run from the repository root: `.venv/bin/python bench/bench_fleet.py [--quick]`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.run import (  # noqa: E402
    TOKEN,
    Hook,
    daemon_running,
    git_commit,
    grow,
    link_counts,
    machine,
    ms,
    session_uuid,
    temp_env,
    tree_cpu_seconds,
    verdict,
    wait_quiet,
    with_session,
)
from tests.harness import Env, make_repo, wait_for  # noqa: E402
from tests.hubstub import running_hub  # noqa: E402
from tracekeeper.api import Client  # noqa: E402
from tracekeeperd.queue import Queue  # noqa: E402

NOTES_REF = "refs/notes/hf-traces"
#: Both forms of `status`: the table a user reads, and the JSON a script reads.
FORMS: dict[str, tuple[str, ...]] = {"status": (), "status --json": ("--json",)}


def queue_counts(env: Env) -> dict[str, int]:
    """The daemon's queue, read-only from its file: asking the daemon would cost it CPU."""
    queue = Queue.peek(env.state / "queue.sqlite3")
    if queue is None:
        return {}
    try:
        return queue.counts()
    except Exception:
        return {}
    finally:
        queue.close()


def bench_burst(repos_n: int, per_repo: int, timeout: float = 300.0, *, remote: bool = False) -> None:
    """With `remote`, every repository has an `origin` (a bare repository on disk, never pushed
    to), as a user's clone has: the daemon then also keeps that remote's notes-sync state."""
    total = repos_n * per_repo
    with_remote = ", each with a remote" if remote else ""
    print(f"\n## burst: {total:,} commits over {repos_n} repositories{with_remote}, daemon up, Hub stand-in")
    hook = Hook("tracekeeper hook")
    with temp_env(TRACEKEEPER_FOLLOW_DEBOUNCE="86400") as env, running_hub(env.root / "cas") as hub:
        env.vars.update(HF_ENDPOINT=hub.endpoint, HF_TOKEN=TOKEN)
        repos, transcripts = [], []
        for n in range(repos_n):
            sid = session_uuid(1000 + n)
            transcripts.append(env.transcript(f"rollout-2026-11-25T09-00-00-{sid}.jsonl"))
            repos.append(with_session(hook.install(make_repo(env, f"r{n:03d}")), transcripts[n], sid))
            if remote:
                origin = env.root / "origins" / f"r{n:03d}.git"
                subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
                subprocess.run(["git", "-C", str(repos[-1].path), "remote", "add", "origin", str(origin)], check=True)
        with daemon_running(env) as daemon:
            assert daemon.proc is not None
            cpu_start = tree_cpu_seconds(daemon.proc.pid)
            kids_start = tree_cpu_seconds(daemon.proc.pid, own=False)
            began = time.perf_counter()
            latencies = []
            for i in range(per_repo):
                for n, repo in enumerate(repos):
                    grow(transcripts[n], 1, start=10 + i)
                    latencies.append(git_commit(repo, f"r{n} c{i}"))
            committed = time.perf_counter()
            drained: float | None = None
            counts: dict[str, int] = {}
            while time.perf_counter() - committed < timeout:
                counts = queue_counts(env)
                settled = counts.get("done", 0) + counts.get("failed", 0)
                if settled >= total and not counts.get("pending") and not counts.get("uploading"):
                    drained = time.perf_counter()
                    break
                time.sleep(0.02)  # the poll interval of a poll with a deadline: the drain time is read to 20 ms
            # The last batch's housekeeping (snapshots collected, retention) runs after its jobs
            # are done: the CPU figure is read once the daemon is idle, so it counts that too.
            quiet = wait_quiet(daemon.proc.pid, 30.0)
            cpu = tree_cpu_seconds(daemon.proc.pid) - cpu_start
            kids = tree_cpu_seconds(daemon.proc.pid, own=False) - kids_start
        spent = committed - began
        print(
            f"committing took {spent:.1f} s ({total / spent:.0f} commits/s), git commit median"
            f" {ms(statistics.median(latencies))}"
        )
        wrong = sum(1 for repo in repos for count in link_counts(repo).values() if count != 1)
        # How well the burst was batched, from what it left: the notes commits in each repository.
        notes_commits = sum(int(repo.git("rev-list", "--count", "refs/notes/hf-traces") or 0) for repo in repos)
        print(f"queue at the end: {counts}; commits without exactly one hf-trace line: {wrong}")
        if drained is None:
            print(f"NOT drained {timeout:.0f} s after the last commit (target <= 2 s: target missed)")
        else:
            after = drained - committed
            print(f"all noted {after:.2f} s after the last commit (target <= 2 s: {verdict(after <= 2.0)})")
        if notes_commits:
            print(f"notes commits: {notes_commits:,}, {total / notes_commits:.1f} commits noted per notes commit")
        per_commit = cpu / total * 1000
        print(
            f"daemon CPU incl. its git children {cpu:.1f} s = {per_commit:.1f} ms/commit"
            f" (target <= 5 ms: {verdict(per_commit <= 5.0)}); of which its git children"
            f" {kids / total * 1000:.1f} ms/commit"
        )
        if quiet is None:
            print("the daemon was still busy 30 s after the drain: its CPU was read then, without the rest")


def bench_batch(repos_n: int = 100, batches: int = 4, per_batch: int = 2) -> None:
    import os
    import resource
    import tempfile

    from tests.workerkit import NOW, worker_kit

    print(f"\n## batch: the worker alone, {repos_n} repositories x {batches} batches x {per_batch} jobs")

    def cpu(start: bool) -> tuple[float, float]:
        """(this process, its children: the reaped ones and the kept ones still running). The
        children's reading (a walk over /proc) is kept out of the interval measured."""
        kids = tree_cpu_seconds(os.getpid(), own=False) if start else 0.0
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = kids if start else tree_cpu_seconds(os.getpid(), own=False)
        return own.ru_utime + own.ru_stime, kids

    os.environ.update(GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1")
    with tempfile.TemporaryDirectory() as tmp, worker_kit(Path(tmp)) as kit:
        names = [f"r{n:03d}" for n in range(repos_n)]
        shas = {name: kit.repo(name, batches * per_batch)[1] for name in names}
        snapshots = {name: kit.snapshot(f"{name}.jsonl", 5) for name in names}
        own_total = kids_total = 0.0
        for b in range(batches):
            for name in names:
                for j in range(per_batch):
                    kit.add(name, shas[name][b * per_batch + j], snapshots[name], session=name, at=NOW + b)
            own0, kids0 = cpu(start=True)
            kit.worker.loop(now=NOW + b + 0.5)
            kit.worker.follow(86400, now=NOW + b + 0.6)
            own1, kids1 = cpu(start=False)
            if b:
                own_total, kids_total = own_total + own1 - own0, kids_total + kids1 - kids0
        count = (batches - 1) * repos_n
        print(
            f"per repository per batch: {(own_total + kids_total) / count * 1000:.1f} ms CPU"
            f" ({own_total / count * 1000:.1f} ms the worker, {kids_total / count * 1000:.1f} ms its git children)"
        )


def fleet(env: Env, count: int, template: Path) -> None:
    """`count` repositories the daemon has seen: copies of `template`, registered in its queue."""
    root = env.root / "fleet"
    queue = Queue(env.state / "queue.sqlite3")
    try:
        for n in range(count):
            path = root / f"r{n:04d}"
            shutil.copytree(template, path, symlinks=True)
            queue.add_repo(str(path / ".git"), f"r{n:04d}-00000000", str(path))
    finally:
        queue.close()


def status_cli(env: Env, *extra: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "tracekeeper", "status", *extra],
        env=env.vars,
        capture_output=True,
        check=True,
        cwd=env.root,
    )
    return time.perf_counter() - started


def bench_status(counts: list[int], rounds: int) -> None:
    print(f"\n## status: `tracekeeper status --json` with 1 to {max(counts):,} known repositories, {rounds} rounds")
    with temp_env() as scratch:
        template = make_repo(scratch, "template").path
        (template / "f").write_text("x\n")
        for args in (
            ["remote", "add", "origin", "/nowhere/origin.git"],
            ["add", "f"],
            ["commit", "-q", "-m", "one"],
            ["notes", f"--ref={NOTES_REF}", "add", "-m", "x"],
        ):
            subprocess.run(["git", *args], cwd=template, env=scratch.vars, check=True)
        samples: dict[tuple[int, str], list[float]] = {(count, form): [] for form in FORMS for count in counts}
        with contextlib.ExitStack() as stack:
            envs = {count: stack.enter_context(temp_env()) for count in counts}
            for count, env in envs.items():
                fleet(env, count, template)
                stack.enter_context(daemon_running(env))
                started = time.perf_counter()
                # Until every repository's state is computed once (the daemon does that at start).
                wait_for(
                    lambda env=env: (
                        not any(r.get("pending") for r in Client(env.socket, timeout=60).status().get("repos", []))
                    ),
                    timeout=600,
                    what="every repository's state computed",
                )
                first = time.perf_counter() - started
                print(f"{count:>5,} repositories: every state computed {first:.1f} s after the daemon answered")
            for _ in range(rounds):
                order = list(samples)
                random.shuffle(order)
                for count, form in order:
                    samples[(count, form)].append(status_cli(envs[count], *FORMS[form]))
            # The daemon's part alone: one socket round trip, without the CLI's start-up (~150 ms
            # of interpreter and imports that dominate, and blur, the figures above).
            trips: dict[int, list[float]] = {count: [] for count in counts}
            for _ in range(rounds * 10):
                for count in random.sample(counts, len(counts)):
                    client = Client(envs[count].socket, timeout=60)
                    started = time.perf_counter()
                    client.status()
                    trips[count].append(time.perf_counter() - started)
            for count in counts:
                size = len(json.dumps(Client(envs[count].socket, timeout=60).status()))
                median = ms(statistics.median(trips[count]))
                print(f"{count:>5,} repositories: answer {size:,} bytes, socket round trip median {median}")
            base_trip = statistics.median(trips[counts[0]])
            trip = statistics.median(trips[max(counts)]) / base_trip
            # Issue 10's `status` target is "one socket round trip; 1,000 repos within 1.2x of 1":
            # the daemon's share of it gets its own verdict, apart from the CLI's start-up.
            print(
                f"socket round trip with {max(counts):,} repositories vs 1: {trip:.2f}x"
                f" (target <= 1.2: {verdict(trip <= 1.2)})"
            )
    for form in FORMS:
        base = statistics.median(samples[(counts[0], form)])
        print(f"| known repositories | `{form}` median | ratio to 1 |")
        print("| --- | --- | --- |")
        for count in counts:
            median = statistics.median(samples[(count, form)])
            print(f"| {count:,} | {ms(median)} | {median / base:.2f} |")
        ratio = statistics.median(samples[(max(counts), form)]) / base
        print(f"`{form}` with {max(counts):,} repositories vs 1: {ratio:.2f}x (target <= 1.2: {verdict(ratio <= 1.2)})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="10 commits per repository, fewer status rounds")
    parser.add_argument("--only", choices=["burst", "burst-remote", "batch", "status"], action="append")
    args = parser.parse_args(argv)
    only = set(args.only or ["burst", "burst-remote", "status"])
    print(f"# bench_fleet{' --quick' if args.quick else ''}: {machine()}")
    random.seed(1)
    if "status" in only:
        bench_status([1, 1000] if args.quick else [1, 10, 100, 1000], rounds=5 if args.quick else 15)
    if "burst" in only:
        bench_burst(100, 10 if args.quick else 50)
    if "burst-remote" in only:
        bench_burst(100, 10 if args.quick else 50, remote=True)
    if "batch" in only:
        bench_batch()
    return 0


if __name__ == "__main__":
    sys.exit(main())
