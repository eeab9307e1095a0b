"""The session index on a generated home of 10,000 transcripts: build time, memory, idle CPU, latency.

    .venv/bin/python bench/bench_discovery.py            # 10,000 transcripts (+ a few of 5-50 MB), ~1 min
    .venv/bin/python bench/bench_discovery.py --quick    # 1,500 transcripts, ~15 s

The home mixes the six agents' real layouts and record shapes (Codex rollouts with their
~10 KB session_meta, a few compressed to .jsonl.zst; Claude projects opening with cwd-less
snapshots; Gemini chats; Cursor agent-transcripts; a directory per Copilot session; Pi
sessions), mostly small files plus a few large ones. Each measurement runs in a fresh child
process so its memory figures are its own:

* baseline: a process that only imports ``tracekeeperd.discovery`` (and watchdog's observer);
* cold build: no ledger; start() until wait_idle(); then 2 s of idle CPU (/proc/self/stat);
  then 50 appends to 50 sessions, each timed until ``lookup`` reflects it (and checked with
  ``sessions_for``), while another process appends ~500 lines/s across 100 other transcripts;
* warm build: the same home and the ledger the cold run left: how much is read again.

Targets (issue 3): RSS < 150 MB with 10,000 files, idle CPU ~ 0, no full rescan per event.
Figures are printed, never asserted: timing on a shared 2-core machine is noisy.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RSS_TARGET_MB = 150.0
NOW = datetime.now(UTC)
MIX = (("codex", 0.35), ("claude", 0.30), ("gemini", 0.08), ("cursor", 0.07), ("copilot", 0.10), ("pi", 0.10))


# --- generating a home ---------------------------------------------------------------------------


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def uid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}"


def words(rng: random.Random, n: int) -> str:
    vocab = ("fix", "the", "parser", "so", "that", "tests", "pass", "refactor", "module", "add", "flag", "config")
    return " ".join(rng.choice(vocab) for _ in range(n))


def dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"))


def codex_session(rng: random.Random, sid: str, cwd: str, start: datetime, turns: int) -> list[str]:
    meta = {
        "id": sid,
        "timestamp": iso(start),
        "cwd": cwd,
        "originator": "codex_cli_rs",
        "cli_version": "0.130.0",
        "source": "cli",
        "model_provider": "openai",
        "base_instructions": {"text": "You are Codex. " * 700},
        "git": {"commit_hash": f"{rng.getrandbits(160):040x}", "branch": "main"},
    }
    lines = [dumps({"timestamp": iso(start), "type": "session_meta", "payload": meta})]
    when = start
    for _ in range(turns):
        when += timedelta(seconds=rng.randint(1, 40))
        lines.append(dumps({"timestamp": iso(when), "type": "turn_context", "payload": {"cwd": cwd, "model": "gpt-5"}}))
        lines.append(codex_line(when, words(rng, 20)))
        call = f"call_{rng.getrandbits(48):012x}"
        lines.append(
            dumps(
                {
                    "timestamp": iso(when),
                    "type": "response_item",
                    "payload": {"type": "function_call", "name": "shell", "arguments": '{"cmd":"ls"}', "call_id": call},
                }
            )
        )
        output = {"type": "function_call_output", "call_id": call, "output": words(rng, rng.randint(50, 300))}
        lines.append(dumps({"timestamp": iso(when), "type": "response_item", "payload": output}))
    return lines


def codex_line(when: datetime, text: str) -> str:
    return dumps({"timestamp": iso(when), "type": "event_msg", "payload": {"type": "agent_message", "message": text}})


def claude_session(rng: random.Random, sid: str, cwd: str, start: datetime, turns: int) -> list[str]:
    snapshot = {"messageId": uid(rng), "trackedFileBackups": {}, "timestamp": iso(start)}
    lines = [dumps({"type": "file-history-snapshot", "messageId": uid(rng), "snapshot": snapshot})]
    when = start
    for _ in range(turns):
        when += timedelta(seconds=rng.randint(1, 40))
        lines.append(claude_line(sid, cwd, when, words(rng, rng.randint(10, 200))))
    return lines


def claude_line(sid: str, cwd: str, when: datetime, text: str, role: str = "user") -> str:
    return dumps(
        {
            "parentUuid": None,
            "isSidechain": False,
            "userType": "external",
            "cwd": cwd,
            "sessionId": sid,
            "version": "2.1.150",
            "gitBranch": "main",
            "type": role,
            "message": {"role": role, "content": text},
            "uuid": f"{hash((sid, when)) & 0xFFFFFFFF:08x}-0000-4000-8000-000000000000",
            "timestamp": iso(when),
        }
    )


def gemini_session(rng: random.Random, sid: str, cwd: str, start: datetime, turns: int) -> list[str]:
    project = hashlib.sha256(cwd.encode()).hexdigest()
    meta = {
        "sessionId": sid,
        "projectHash": project,
        "startTime": iso(start),
        "lastUpdated": iso(start),
        "kind": "main",
    }
    lines = [dumps(meta)]
    when = start
    for n in range(turns):
        when += timedelta(seconds=rng.randint(1, 40))
        kind = "user" if n % 2 == 0 else "gemini"
        content = [{"text": words(rng, rng.randint(10, 150))}]
        lines.append(dumps({"id": uid(rng), "timestamp": iso(when), "type": kind, "content": content}))
        lines.append(dumps({"$set": {"lastUpdated": iso(when)}}))
    return lines


def cursor_session(rng: random.Random, _sid: str, _cwd: str, start: datetime, turns: int) -> list[str]:
    lines = []
    for n in range(turns):
        if n % 2 == 0:
            text = f"<timestamp>{iso(start)}</timestamp>\n<user_query>\n{words(rng, 20)}\n</user_query>"
        else:
            text = words(rng, rng.randint(20, 200))
        role = "user" if n % 2 == 0 else "assistant"
        lines.append(dumps({"role": role, "message": {"content": [{"type": "text", "text": text}]}}))
    return lines


def copilot_session(rng: random.Random, sid: str, cwd: str, start: datetime, turns: int) -> list[str]:
    context = {"cwd": cwd, "gitRoot": cwd, "branch": "main", "repository": "me/repo"}
    data = {"sessionId": sid, "version": 1, "producer": "copilot-agent", "startTime": iso(start), "context": context}
    lines = [dumps({"type": "session.start", "data": data, "id": uid(rng), "timestamp": iso(start), "parentId": None})]
    when = start
    for n in range(turns):
        when += timedelta(seconds=rng.randint(1, 40))
        kind = "user.message" if n % 2 == 0 else "assistant.message"
        event = {"type": kind, "data": {"content": words(rng, rng.randint(10, 150))}}
        lines.append(dumps({**event, "id": uid(rng), "timestamp": iso(when), "parentId": None}))
    return lines


def pi_session(rng: random.Random, sid: str, cwd: str, start: datetime, turns: int) -> list[str]:
    lines = [dumps({"type": "session", "version": 3, "id": sid, "timestamp": iso(start), "cwd": cwd})]
    when = start
    parent = None
    for n in range(turns):
        when += timedelta(seconds=rng.randint(1, 40))
        entry = f"{rng.getrandbits(32):08x}"
        role = "user" if n % 2 == 0 else "assistant"
        message = {"role": role, "content": [{"type": "text", "text": words(rng, rng.randint(10, 150))}]}
        lines.append(
            dumps({"type": "message", "id": entry, "parentId": parent, "timestamp": iso(when), "message": message})
        )
        parent = entry
    return lines


BUILDERS: dict[str, Callable[[random.Random, str, str, datetime, int], list[str]]] = {
    "codex": codex_session,
    "claude": claude_session,
    "gemini": gemini_session,
    "cursor": cursor_session,
    "copilot": copilot_session,
    "pi": pi_session,
}


def slug(cwd: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in cwd)


def place(home: Path, agent: str, sid: str, cwd: str, start: datetime) -> Path:
    """Where the agent would write this session (see docs/agents.md)."""
    if agent == "codex":
        local = start.strftime("%Y/%m/%d")
        return home / ".codex/sessions" / local / f"rollout-{start:%Y-%m-%dT%H-%M-%S}-{sid}.jsonl"
    if agent == "claude":
        return home / ".claude/projects" / slug(cwd) / f"{sid}.jsonl"
    if agent == "gemini":
        project = hashlib.sha256(cwd.encode()).hexdigest()
        return home / ".gemini/tmp" / project / "chats" / f"session-{start:%Y-%m-%dT%H-%M}-{sid[:8]}.jsonl"
    if agent == "cursor":
        return home / ".cursor/projects" / slug(cwd).lstrip("-") / "agent-transcripts" / f"{sid}.jsonl"
    if agent == "copilot":
        return home / ".copilot/session-state" / sid / "events.jsonl"
    return home / ".pi/agent/sessions" / f"-{slug(cwd)}--" / f"{start:%Y-%m-%dT%H-%M-%S}_{sid}.jsonl"


def generate(home: Path, count: int, large: Sequence[int], seed: int) -> dict[str, Any]:
    """Write ``count`` transcripts (plus the ``large`` ones, sizes in MB); return what the bench needs."""
    import zstandard

    rng = random.Random(seed)
    projects = [f"/home/dev/src/project-{n:03d}" for n in range(200)]
    agents = [agent for agent, share in MIX for _ in range(round(share * 100))]
    sessions: list[dict[str, str]] = []
    total_bytes = 0
    for n in range(count):
        agent = agents[n % len(agents)]
        sid, cwd = uid(rng), rng.choice(projects)
        start = NOW - timedelta(days=rng.uniform(1, 90))
        lines = BUILDERS[agent](rng, sid, cwd, start, rng.randint(3, 30))
        path = place(home, agent, sid, cwd, start)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = ("\n".join(lines) + "\n").encode()
        if agent == "codex" and n % 50 == 0:  # Codex compresses finished rollouts
            path = path.with_name(path.name + ".zst")
            path.write_bytes(zstandard.ZstdCompressor().compress(data))
        else:
            path.write_bytes(data)
        total_bytes += path.stat().st_size
        stamp = start.timestamp() + 600
        os.utime(path, (stamp, stamp))
        sessions.append({"agent": agent, "path": str(path), "cwd": cwd, "id": sid})
    for n, megabytes in enumerate(large):
        sid, cwd = uid(rng), rng.choice(projects)
        start = NOW - timedelta(days=2, hours=n)
        path = place(home, "codex", sid, cwd, start)
        path.parent.mkdir(parents=True, exist_ok=True)
        block = "\n".join(codex_session(rng, sid, cwd, start, 40)[1:]) + "\n"
        head = codex_session(rng, sid, cwd, start, 1)[0] + "\n"
        with path.open("w") as handle:
            handle.write(head)
            for _ in range(max(1, megabytes * 1_000_000 // len(block))):
                handle.write(block)
        total_bytes += path.stat().st_size
        sessions.append({"agent": "codex", "path": str(path), "cwd": cwd, "id": sid, "large": "1"})
    dirs = sum(1 for _ in home.rglob("*") if _.is_dir())
    return {"sessions": sessions, "bytes": total_bytes, "dirs": dirs}


# --- measurements inside a child process --------------------------------------------------------------


def vm(key: str) -> float:
    """VmRSS/VmHWM of this process in MB (10**6 bytes)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024 / 1e6
    return float("nan")


def cpu_seconds() -> float:
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else float("nan")


def child_baseline() -> dict[str, Any]:
    from watchdog.observers import Observer  # noqa: F401

    import tracekeeperd.discovery  # noqa: F401

    return {"hwm_mb": vm("VmHWM"), "rss_mb": vm("VmRSS")}


def writer_line(agent: str, target: dict[str, str], when: datetime, n: int) -> str:
    if agent == "claude":
        return claude_line(target["id"], target["cwd"], when, f"background line {n} " + "z" * 300)
    return codex_line(when, f"background line {n} " + "z" * 300)


def child_writer(targets_file: Path, rate: float) -> None:
    """Append ``rate`` lines a second round-robin over the targets until stdin closes."""
    targets = json.loads(targets_file.read_text())
    handles = [open(t["path"], "a", buffering=1) for t in targets]  # noqa: SIM115 - kept open, as agents do
    stop = threading.Event()

    def wait_for_eof() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=wait_for_eof, daemon=True).start()
    tick = 0.01
    per_tick = rate * tick
    owed = 0.0
    written = 0
    began = time.monotonic()
    next_tick = began
    while not stop.is_set():
        owed += per_tick
        while owed >= 1:
            index = written % len(handles)
            handles[index].write(
                writer_line(targets[index]["agent"], targets[index], datetime.now(UTC), written) + "\n"
            )
            written += 1
            owed -= 1
        next_tick += tick
        time.sleep(max(0.0, next_tick - time.monotonic()))  # paces the load generator at `rate`: on purpose
    elapsed = time.monotonic() - began
    for handle in handles:
        handle.close()
    print("RESULT " + json.dumps({"lines": written, "seconds": elapsed}), flush=True)


def wait_load(index: Any, timeout: float, batches: int = 3) -> float | None:
    """Seconds until the index has taken `batches` batches of the background writer's lines
    (events in each); None if not within `timeout`. The writer is a fresh Python process (its
    start-up takes 0.1-1 s here), then writes at its rate from its first tick: once its lines
    keep arriving, the load is on, and a window opened any earlier would be partly idle."""
    since = time.perf_counter()
    start = index.status()["counters"]
    while True:
        now = index.status()["counters"]
        if now["events"] > start["events"] and now["batches"] - start["batches"] >= batches:
            return time.perf_counter() - since
        if time.perf_counter() - since > timeout:
            return None
        time.sleep(0.01)  # the poll interval


def measure_load(index: Any, seconds: float) -> dict[str, Any]:
    """CPU of this process (the index alone: the writer is another process) under the background load."""
    before = index.status()["counters"]
    cpu0 = cpu_seconds()
    time.sleep(seconds)  # the measurement window itself: CPU under load is CPU over a stretch of time
    cpu = cpu_seconds() - cpu0
    after = index.status()["counters"]
    delta = {k: after[k] - before[k] for k in ("events", "batches", "head", "tail", "whole", "reconciles")}
    return {"cpu": cpu / seconds, "seconds": seconds, **delta}


def measure_appends(index: Any, targets: list[dict[str, str]]) -> dict[str, Any]:
    """Append one line to each target session; time until the index reflects it."""
    latencies: list[float] = []
    query: list[float] = []
    misses = 0
    rng = random.Random(7)
    for n, target in enumerate(targets):
        path = Path(target["path"])
        when = datetime.now(UTC)
        line = writer_line(target["agent"], target, when, 10_000 + n) + "\n"
        with path.open("a") as handle:
            handle.write(line)
        written = time.perf_counter()
        size = path.stat().st_size
        while True:
            found = index.lookup(path)
            if found is not None and found.size >= size:
                latencies.append(time.perf_counter() - written)
                break
            if time.perf_counter() - written > 10:
                misses += 1
                break
            time.sleep(0.0005)  # the poll interval of a poll with a deadline (10 s): the latency is read to 0.5 ms
        began = time.perf_counter()
        linked = index.sessions_for(Path(target["cwd"]), when.timestamp() - 0.001)
        query.append(time.perf_counter() - began)
        if not any(s.transcript == path for s in linked):
            misses += 1
        # Paces the probes on purpose: each append is seen alone, as an agent's line, not in
        # one batch with the probe before it.
        time.sleep(rng.uniform(0.02, 0.08))
    return {"latencies": latencies, "query": query, "misses": misses}


def child_build(home: Path, db: Path, targets_file: Path | None, rate: float, idle: float) -> dict[str, Any]:
    from tracekeeperd.agents.roots import default_roots
    from tracekeeperd.discovery import SessionIndex

    began = time.perf_counter()
    index = SessionIndex(default_roots({"HOME": str(home)}), db)
    index.start()
    ready = index.wait_idle(600)
    build = time.perf_counter() - began
    status = index.status()
    result: dict[str, Any] = {
        "ready": ready,
        "build_s": build,
        "scan_s": status["scan_seconds"],
        "files": status["files"],
        "sessions": status["sessions"],
        "counters": status["counters"],
        "modes": sorted({r["mode"] for r in status["roots"]}),
        "hwm_build_mb": vm("VmHWM"),
    }
    if idle > 0:
        cpu0 = cpu_seconds()
        time.sleep(idle)  # the measurement window itself: idle CPU is CPU over a stretch of time
        result["idle_cpu_s"] = cpu_seconds() - cpu0
        result["idle_s"] = idle
    if targets_file is not None:
        plan = json.loads(targets_file.read_text())
        writer = subprocess.Popen(
            [sys.executable, __file__, "--child", "writer", "--targets", plan["background"], "--rate", str(rate)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        result["load_on_s"] = wait_load(index, timeout=30.0)
        result["load"] = measure_load(index, seconds=2.0)
        result["appends"] = measure_appends(index, plan["probes"])
        out, _ = writer.communicate(timeout=30)  # closes its stdin: the writer's signal to stop
        result["writer"] = json.loads(out.strip().splitlines()[-1].removeprefix("RESULT "))
        result["status_after_load"] = {k: v for k, v in index.status().items() if k != "roots"}
    result["hwm_mb"] = vm("VmHWM")
    index.stop()
    return result


# --- the parent -----------------------------------------------------------------------------------------


def run_child(*args: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{proc.stdout}\n{proc.stderr}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1].removeprefix("RESULT ")))


def _reads(counters: dict[str, int]) -> str:
    return ", ".join(f"{counters[k]} {k}" for k in ("head", "tail", "whole"))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def verdict(met: bool) -> str:
    return "target met" if met else "target missed"


def report(
    args: argparse.Namespace, gen: dict[str, Any], base: dict[str, Any], cold: dict[str, Any], warm: dict[str, Any]
) -> None:
    files = len(gen["sessions"])
    print(f"\n## discovery index: {files} transcripts, {gen['bytes'] / 1e6:.0f} MB, {gen['dirs']} directories")
    print(
        f"cold build   {cold['build_s']:.2f} s (scan {cold['scan_s']:.2f} s); modes {cold['modes']};"
        f" reads {_reads(cold['counters'])}"
    )
    print(
        f"             {files / cold['build_s']:.0f} files/s;"
        f" indexed {cold['sessions']} sessions of {cold['files']} files"
    )
    print(
        f"warm restart {warm['build_s']:.2f} s with the ledger ({cold['build_s'] / warm['build_s']:.1f}x faster);"
        f" reads {_reads(warm['counters'])} ({gen['changed']} files grew while the index was down)"
    )
    delta = cold["hwm_mb"] - base["hwm_mb"]
    print(
        f"peak RSS     {cold['hwm_mb']:.1f} MB (VmHWM, build + load); baseline import {base['hwm_mb']:.1f} MB;"
        f" index adds {delta:.1f} MB ({delta * 1e6 / files / 1024:.1f} KiB/file)"
        f"  (target < {RSS_TARGET_MB:.0f} MB: {verdict(cold['hwm_mb'] < RSS_TARGET_MB)})"
    )
    idle = cold["idle_cpu_s"] / cold["idle_s"]
    print(
        f"idle CPU     {cold['idle_cpu_s'] * 1000:.0f} ms over {cold['idle_s']:.0f} s ({idle * 100:.2f}% of a core)"
        f"  (target ~0: {verdict(idle < 0.01)})"
    )
    appends, load = cold["appends"], cold["load"]
    lat = appends["latencies"]
    writer = cold["writer"]
    bg_rate = writer["lines"] / writer["seconds"]
    print(
        f"new line -> indexed  p50 {ms(pct(lat, 0.5))}  p95 {ms(pct(lat, 0.95))}  max {ms(max(lat))}"
        f"  over {len(lat)} appends; sessions_for() p50 {ms(pct(appends['query'], 0.5))}"
        f"; misses {appends['misses']}"
    )
    print(
        f"under load   {bg_rate:.0f} background lines/s over {args.background} files, {load['seconds']:.0f} s window:"
        f" index CPU {load['cpu'] * 100:.1f}% of a core; {load['events']} events -> {load['batches']} batches,"
        f" {load['tail']} tail reads, {load['head']} head reads, {load['reconciles']} rescans"
    )
    on = cold.get("load_on_s")
    print(
        f"             the load was on {on:.2f} s after the writer started"
        if on is not None
        else "             the writer's lines did not reach the index within 30 s: the window may be partly idle"
    )


def pick_targets(gen: dict[str, Any], probes: int, background: int, tmp: Path) -> Path:
    """Small codex/claude sessions: ``background`` for the writer, ``probes`` (disjoint) for timing."""
    rng = random.Random(3)
    pool = [s for s in gen["sessions"] if s["agent"] in ("codex", "claude") and not s["path"].endswith(".zst")]
    pool = [s for s in pool if "large" not in s]
    chosen = rng.sample(pool, probes + background)
    background_file = tmp / "background.json"
    background_file.write_text(json.dumps(chosen[probes:]))
    plan = tmp / "plan.json"
    plan.write_text(json.dumps({"probes": chosen[:probes], "background": str(background_file)}))
    return plan


def grow_offline(gen: dict[str, Any], count: int) -> int:
    """Append a line to ``count`` sessions while no index runs: what a warm restart must catch up on."""
    rng = random.Random(11)
    pool = [s for s in gen["sessions"] if s["agent"] == "codex" and not s["path"].endswith(".zst")]
    for n, target in enumerate(rng.sample(pool, count)):
        with open(target["path"], "a") as handle:
            handle.write(writer_line("codex", target, datetime.now(UTC), 20_000 + n) + "\n")
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1,500 transcripts and one 10 MB file")
    parser.add_argument("--files", type=int, help="how many transcripts (default 10,000; --quick 1,500)")
    parser.add_argument("--rate", type=float, default=500.0, help="background lines per second")
    parser.add_argument("--probes", type=int, default=50, help="timed appends")
    parser.add_argument("--background", type=int, default=100, help="files the background load appends to")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the generated home")
    parser.add_argument("--child", choices=["baseline", "build", "writer"], help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--targets", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--idle", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child == "baseline":
        print("RESULT " + json.dumps(child_baseline()))
        return 0
    if args.child == "writer":
        child_writer(args.targets, args.rate)
        return 0
    if args.child == "build":
        print("RESULT " + json.dumps(child_build(args.home, args.db, args.targets, args.rate, args.idle)))
        return 0

    count = args.files or (1500 if args.quick else 10_000)
    large = [10] if args.quick else [50, 50, 5, 5, 5, 5]
    began = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="tk-disc-"))
    try:
        home = tmp / "home"
        gen = generate(home, count, large, args.seed)
        print(
            f"# generated {len(gen['sessions'])} transcripts ({gen['bytes'] / 1e6:.0f} MB, large: {large} MB)"
            f" in {time.perf_counter() - began:.1f} s; {os.cpu_count()} cores, Python {sys.version.split()[0]}",
            flush=True,
        )
        plan = pick_targets(gen, args.probes, args.background, tmp)
        os.sync()
        db = tmp / "state" / "sessions.sqlite3"
        base = run_child("baseline")
        cold = run_child(
            "build",
            "--home",
            str(home),
            "--db",
            str(db),
            "--targets",
            str(plan),
            "--rate",
            str(args.rate),
            "--idle",
            "2",
        )
        gen["changed"] = grow_offline(gen, args.background)
        warm = run_child("build", "--home", str(home), "--db", str(db))
        report(args, gen, base, cold, warm)
        print(f"\ntotal {time.perf_counter() - began:.0f} s")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
