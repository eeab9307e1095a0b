"""Sessions found without hooks: the transcript index against real files and real watchdog observers.

Every test lays out a temporary HOME the way the agents do (the real fixtures copied into
place), runs a real ``SessionIndex`` (real inotify, real PollingObserver) and synchronises
with ``wait_idle`` or, for polling roots, a deadline. The inotify failure modes are produced
by tiny ``InotifyObserver`` subclasses passed as ``observer_factory`` that fail through
watchdog's public ``schedule`` the way the kernel makes watchdog fail, or by a real EMFILE;
nothing inside watchdog is patched.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import resource
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import zstandard
from watchdog.events import FileSystemEventHandler
from watchdog.observers.api import BaseObserver, ObservedWatch

from tracekeeperd.agents import detect, read_lines
from tracekeeperd.agents.roots import Root, default_roots, parse_roots, transcript_dirs
from tracekeeperd.discovery import IndexedSession, SessionIndex

if sys.platform == "linux":
    from watchdog.observers.inotify import InotifyObserver
else:
    pytest.skip("inotify and /proc are Linux-only", allow_module_level=True)

FIXTURES = Path(__file__).parent / "fixtures"
WAIT = 10.0

# (fixture, where it goes under HOME, agent, session id, cwd)
LAYOUT: list[tuple[str, str, str, str, str | None]] = [
    (
        "codex/sessions/2026/02/23/rollout-2026-02-23T13-19-38-019c8a70-dda7-7f33-98ea-f30553347322.jsonl",
        ".codex/sessions/2026/02/23/rollout-2026-02-23T13-19-38-019c8a70-dda7-7f33-98ea-f30553347322.jsonl",
        "codex",
        "019c8a70-dda7-7f33-98ea-f30553347322",
        "/redacted/path/da0ba47443",
    ),
    (
        "codex/sessions/2026/02/23/rollout-2026-02-23T20-34-25-019c8bfe-ec25-79e0-97d7-bda6a9c575ff.jsonl",
        ".codex/sessions/2026/02/23/rollout-2026-02-23T20-34-25-019c8bfe-ec25-79e0-97d7-bda6a9c575ff.jsonl",
        "codex",
        "019c8bfe-ec25-79e0-97d7-bda6a9c575ff",
        "/redacted/path/ea96e59ed9",
    ),
    (
        "codex/agent-history_real-session-01.jsonl",
        ".codex/sessions/2026/06/05/rollout-2026-06-05T06-58-20-019e9625-802f-7e91-840a-cfe88d14117a.jsonl",
        "codex",
        "019e9625-802f-7e91-840a-cfe88d14117a",
        "/tmp/agent-history-real-agent/codex/workspace",
    ),
    (
        "claude/projects/-home-marco-projects-spotter/55604662-cf2a-4331-851a-ec234028f8ca.jsonl",
        ".claude/projects/-home-marco-projects-spotter/55604662-cf2a-4331-851a-ec234028f8ca.jsonl",
        "claude",
        "55604662-cf2a-4331-851a-ec234028f8ca",
        "/home/marco/projects/spotter",
    ),
    (
        "claude/agent-history_real-session-01.jsonl",
        ".claude/projects/-tmp-agent-history-real-agent-claude-workspace/06090cb1-3e64-433a-bc7e-a621c0f596d2.jsonl",
        "claude",
        "06090cb1-3e64-433a-bc7e-a621c0f596d2",
        "/tmp/agent-history-real-agent/claude/workspace",
    ),
    (
        "claude/opentraces_claude-linear-edit-real-session.jsonl",
        ".claude/projects/-workspace-claude-real-edit-box-project/164b9ad1-4c1b-4602-9102-5276951a1594.jsonl",
        "claude",
        "164b9ad1-4c1b-4602-9102-5276951a1594",
        "/workspace/claude-real-edit-box/project",
    ),
    (
        "gemini/tmp/demo/chats/session-2026-03-02T10-15-7c1d2e3f.jsonl",
        ".gemini/tmp/demo/chats/session-2026-03-02T10-15-7c1d2e3f.jsonl",
        "gemini",
        "7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f",
        None,
    ),
    (
        "gemini/agent-history_real-session-01.json",
        ".gemini/tmp/d30f91067027d10192e4aed3e7b03fecf08089dd3370f047f14f38b1845c8042/chats/"
        "session-2026-06-05T04-59-dcbe78d3.json",
        "gemini",
        "dcbe78d3-ea75-4786-929e-d6cff0fc00ed",
        None,
    ),
    (
        "cursor/projects/home-dev-src-demo/agent-transcripts/3f2b6c1e-9a47-4d2b-8c1e-5b7d9e0a1c2f.jsonl",
        ".cursor/projects/home-dev-src-demo/agent-transcripts/3f2b6c1e-9a47-4d2b-8c1e-5b7d9e0a1c2f.jsonl",
        "cursor",
        "3f2b6c1e-9a47-4d2b-8c1e-5b7d9e0a1c2f",
        None,
    ),
    (
        "copilot/session-state/b0ff98c0-8e01-4b73-bf92-9649b139931b/events.jsonl",
        ".copilot/session-state/b0ff98c0-8e01-4b73-bf92-9649b139931b/events.jsonl",
        "copilot",
        "b0ff98c0-8e01-4b73-bf92-9649b139931b",
        "/home/dev/src/demo",
    ),
    (
        "pi/agent-history_real-session-01.jsonl",
        ".pi/agent/sessions/--tmp-agent-history-real-agent-pi-workspace--/"
        "2026-06-05T05-24-28-246Z_019e963d-6bd6-7ade-8a49-256ac3391bdd.jsonl",
        "pi",
        "019e963d-6bd6-7ade-8a49-256ac3391bdd",
        "/tmp/agent-history-real-agent/pi/workspace",
    ),
]


# --- helpers ------------------------------------------------------------------------------------


def lay_out(home: Path) -> Path:
    """Copy every fixture to where its agent would have written it."""
    for source, target, *_ in LAYOUT:
        dest = home / target
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(FIXTURES / source, dest)
    return home


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def codex_lines(session_id: str, cwd: str, start: datetime = T0, turns: int = 2) -> list[str]:
    """A minimal Codex rollout: session_meta, then turns a second apart."""
    lines = [
        json.dumps(
            {
                "timestamp": iso(start),
                "type": "session_meta",
                "payload": {"id": session_id, "timestamp": iso(start), "cwd": cwd, "originator": "codex_cli_rs"},
            }
        )
    ]
    for n in range(1, turns + 1):
        lines.append(codex_event(start + timedelta(seconds=n), f"turn {n}"))
    return lines


def codex_event(when: datetime, text: str) -> str:
    return json.dumps(
        {"timestamp": iso(when), "type": "event_msg", "payload": {"type": "agent_message", "message": text}}
    )


def claude_line(session_id: str, when: datetime, cwd: str | None = None, kind: str = "user") -> str:
    record: dict[str, Any] = {
        "type": kind,
        "sessionId": session_id,
        "timestamp": iso(when),
        "uuid": f"u-{when.timestamp()}",
    }
    if cwd is not None:
        record["cwd"] = cwd
        record["message"] = {"role": kind, "content": "hello"}
    return json.dumps(record)


def write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


def append(path: Path, line: str) -> None:
    with path.open("a") as handle:
        handle.write(line + "\n")


def rollout(home: Path, session_id: str, day: str = "2026/11/01") -> Path:
    return home / ".codex/sessions" / day / f"rollout-2026-11-01T12-00-00-{session_id}.jsonl"


def uuid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def deadline(predicate: Callable[[], Any], timeout: float = WAIT, what: str = "condition") -> Any:
    """Poll for a condition that only a polling observer's next round can make true."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@contextlib.contextmanager
def running(roots: list[Root], db: Path | None = None, **options: Any) -> Iterator[SessionIndex]:
    index = SessionIndex(roots, db, **options)
    index.start()
    try:
        assert index.wait_idle(WAIT), index.status()
        yield index
    finally:
        index.stop()


def roots_of(home: Path) -> list[Root]:
    return default_roots({"HOME": str(home)})


def root_status(index: SessionIndex, agent: str) -> dict[str, Any]:
    return next(r for r in index.status()["roots"] if r["agent"] == agent)


def counters(index: SessionIndex) -> dict[str, int]:
    return dict(index.status()["counters"])


def bytes_read() -> int:
    """Bytes this process read through read(2)/pread(2) so far (/proc/self/io rchar)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar")


@pytest.fixture(scope="module")
def fixture_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, SessionIndex]]:
    """One index over every fixture, for the read-only assertions."""
    home = lay_out(tmp_path_factory.mktemp("fixtures") / "home")
    with running(roots_of(home)) as index:
        yield home, index


# --- roots --------------------------------------------------------------------------------------


def test_default_roots_follow_each_agents_relocation_variables(tmp_path: Path) -> None:
    home = tmp_path / "h"
    plain = {(r.agent, r.path) for r in default_roots({"HOME": str(home)})}
    assert plain == {
        ("codex", home / ".codex/sessions"),
        ("codex", home / ".codex/archived_sessions"),
        ("claude", home / ".claude/projects"),
        ("gemini", home / ".gemini/tmp"),
        ("cursor", home / ".cursor/projects"),
        ("copilot", home / ".copilot/session-state"),
        ("pi", home / ".pi/agent/sessions"),
    }
    moved = default_roots(
        {
            "HOME": str(home),
            "CODEX_HOME": "/x/codex",
            "CLAUDE_CONFIG_DIR": "/x/claude",
            "GEMINI_CLI_HOME": "/x/g",
            "CURSOR_CONFIG_DIR": "/x/cursor",
            "COPILOT_HOME": "/x/copilot",
            "PI_CODING_AGENT_DIR": "/x/pi",
        }
    )
    assert {str(r.path) for r in moved} == {
        "/x/codex/sessions",
        "/x/codex/archived_sessions",
        "/x/claude/projects",
        "/x/g/.gemini/tmp",
        "/x/cursor/projects",
        "/x/copilot/session-state",
        "/x/pi/sessions",
    }


def test_tracekeeper_roots_replaces_the_defaults() -> None:
    env = {"HOME": "/h", "TRACEKEEPER_ROOTS": f"codex=/srv/codex{os.pathsep}mine=~/traces"}
    assert default_roots(env) == [Root("codex", Path("/srv/codex")), Root("mine", Path("~/traces").expanduser())]
    assert default_roots({"HOME": "/h", "TRACEKEEPER_ROOTS": ""}) == []
    with pytest.raises(ValueError, match="agent=path"):
        parse_roots("/no/agent")


def test_transcript_dirs_add_tracekeeper_roots_to_every_agents_directory(tmp_path: Path) -> None:
    """Uploads may come from each agent's (relocated) directory and TRACEKEEPER_ROOTS' too:
    the variable narrows what discovery watches, never what a hook may name."""
    from tracekeeperd.ingest import allowed_roots

    env = {"HOME": str(tmp_path / "h"), "CODEX_HOME": "/x/codex", "TRACEKEEPER_ROOTS": "mine=/srv/traces"}
    agents = [r.path for r in default_roots({k: v for k, v in env.items() if k != "TRACEKEEPER_ROOTS"})]
    assert transcript_dirs(env) == [*agents, Path("/srv/traces")]
    assert Path("/x/codex/sessions") in transcript_dirs(env)
    assert transcript_dirs({**env, "TRACEKEEPER_ROOTS": ""}) == agents
    extra = tmp_path / "extra"
    extra.mkdir()
    link = tmp_path / "link"
    link.symlink_to(extra)
    allowed = allowed_roots((link,), env=env)
    assert allowed == tuple(dict.fromkeys(Path(os.path.realpath(p)) for p in (*agents, "/srv/traces", extra)))
    assert allowed[-1] == extra.resolve(), "symlinked roots are compared by their real path"


# --- what gets indexed ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "agent", "session_id", "cwd"), [row[1:] for row in LAYOUT], ids=[f"{r[2]}-{r[3][:8]}" for r in LAYOUT]
)
def test_each_fixture_is_indexed_with_its_agent_id_and_cwd(
    fixture_index: tuple[Path, SessionIndex], target: str, agent: str, session_id: str, cwd: str | None
) -> None:
    home, index = fixture_index
    path = home / target
    found = index.lookup(path)
    assert found is not None, index.status()
    assert (found.agent, found.session_id, found.cwd, found.size) == (agent, session_id, cwd, path.stat().st_size)
    # Reading only the head and tail gives what a full parse of the file gives.
    lines = read_lines(path)
    fmt = detect(path, lines[:10])
    assert fmt is not None
    meta = fmt.session_meta(path, lines)
    assert found.project_hash == meta.project_hash
    assert found.started_at == pytest.approx(meta.started_at.timestamp() if meta.started_at else None)
    expected_last = meta.last_activity_at.timestamp() if meta.last_activity_at else path.stat().st_mtime
    assert found.last_activity_at == pytest.approx(expected_last)


def test_status_reports_every_root(fixture_index: tuple[Path, SessionIndex]) -> None:
    _home, index = fixture_index
    status = index.status()
    assert status["ready"] and status["error"] is None
    modes = {(r["agent"], r["path"].rsplit("/", 1)[-1]): r["mode"] for r in status["roots"]}
    assert modes[("codex", "archived_sessions")] == "absent"
    assert {m for k, m in modes.items() if k[1] != "archived_sessions"} == {"inotify"}
    per_agent = {r["agent"]: r["sessions"] for r in status["roots"] if r["mode"] == "inotify"}
    assert per_agent == {"codex": 3, "claude": 3, "gemini": 2, "cursor": 1, "copilot": 1, "pi": 1}
    assert status["sessions"] == len(LAYOUT)


def test_sessions_for_matches_gemini_by_hash_and_cursor_by_slug(fixture_index: tuple[Path, SessionIndex]) -> None:
    _home, index = fixture_index
    found = {(s.agent, s.session_id) for s in index.sessions_for(Path("/home/dev/src/demo"), None)}
    assert found == {
        ("copilot", "b0ff98c0-8e01-4b73-bf92-9649b139931b"),  # cwd from session.start
        ("gemini", "7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f"),  # projectHash = sha256("/home/dev/src/demo")
        ("cursor", "3f2b6c1e-9a47-4d2b-8c1e-5b7d9e0a1c2f"),  # projects/home-dev-src-demo
    }
    # A hash and a slug name one exact root: a parent directory matches only by cwd.
    assert [s.agent for s in index.sessions_for(Path("/home/dev/src"), None)] == ["copilot"]


def test_only_transcripts_are_indexed(tmp_path: Path) -> None:
    """Subagent transcripts, Gemini's logs, Copilot's workspace file, symlinks, hard links, FIFOs and garbage
    are not sessions."""
    home = tmp_path / "home"
    real = write(rollout(home, uuid(1)), codex_lines(uuid(1), "/w/one"))
    outside = write(tmp_path / "elsewhere" / f"rollout-x-{uuid(2)}.jsonl", codex_lines(uuid(2), "/w/two"))
    (real.parent / f"rollout-link-{uuid(2)}.jsonl").symlink_to(outside)
    hard = write(tmp_path / "elsewhere" / f"rollout-y-{uuid(14)}.jsonl", codex_lines(uuid(14), "/w/four"))
    os.link(hard, real.parent / f"rollout-hard-{uuid(14)}.jsonl")
    os.mkfifo(real.parent / f"rollout-fifo-{uuid(3)}.jsonl")
    (real.parent / f"rollout-dir-{uuid(4)}.jsonl").mkdir()
    (real.parent / f"rollout-junk-{uuid(5)}.jsonl").write_bytes(b"\x00\xff garbage\nnot json either\n")
    (real.parent / f"rollout-other-{uuid(6)}.jsonl").write_text('{"foo": 1}\n')
    (real.parent / f"rollout-empty-{uuid(7)}.jsonl").write_text("")
    (real.parent / f"rollout-bad-{uuid(8)}.jsonl.zst").write_bytes(b"\x28\xb5\x2f\xfd not really zstd")
    claude = home / ".claude/projects/-w-c"
    write(claude / f"{uuid(9)}.jsonl", [claude_line(uuid(9), T0, cwd="/w/c")])
    write(claude / f"agent-{uuid(10)}.jsonl", [claude_line(uuid(9), T0, cwd="/w/c")])
    write(claude / uuid(9) / "subagents" / f"agent-{uuid(11)}.jsonl", [claude_line(uuid(9), T0, cwd="/w/c")])
    write(home / ".gemini/tmp/proj/logs.json", ['[{"sessionId": "x"}]'])
    write(home / ".copilot/session-state" / uuid(12) / "workspace.yaml", ["cwd: /w"])
    with running(roots_of(home)) as index:
        sessions = {(s.agent, s.session_id) for s in index.sessions_for(Path("/w"), None)}
        assert sessions == {("codex", uuid(1)), ("claude", uuid(9))}
        assert index.status()["sessions"] == 2
        assert index.status()["counters"]["errors"] == 0
        # Still working after all that: a new session shows up.
        write(rollout(home, uuid(13)), codex_lines(uuid(13), "/w/three"))
        assert index.wait_idle(WAIT)
        assert index.lookup(rollout(home, uuid(13))) is not None


# --- growing transcripts ------------------------------------------------------------------------


def test_growing_transcript_is_followed_line_by_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = write(rollout(home, uuid(1)), codex_lines(uuid(1), "/w/app"))
    with running(roots_of(home)) as index:
        start = counters(index)
        for n in range(1, 21):
            when = T0 + timedelta(minutes=n)
            append(path, codex_event(when, f"line {n}"))
            assert index.wait_idle(WAIT)
            found = index.lookup(path)
            assert found is not None
            assert (found.size, found.last_activity_at) == (path.stat().st_size, when.timestamp())
        grown = counters(index)
        assert grown["head"] == start["head"]  # identity read once
        assert grown["tail"] - start["tail"] == 20  # one small tail read per line


def test_partial_line_counts_only_once_complete(tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = write(rollout(home, uuid(1)), codex_lines(uuid(1), "/w/app"))
    with running(roots_of(home)) as index:
        before = index.lookup(path)
        assert before is not None
        line = codex_event(T0 + timedelta(hours=1), "late")
        with path.open("a") as handle:
            handle.write(line[:20])
        assert index.wait_idle(WAIT)
        half = index.lookup(path)
        assert half is not None and half.last_activity_at == before.last_activity_at
        with path.open("a") as handle:
            handle.write(line[20:] + "\n")
        assert index.wait_idle(WAIT)
        done = index.lookup(path)
        assert done is not None and done.last_activity_at == (T0 + timedelta(hours=1)).timestamp()


def test_cwd_found_once_it_is_written(tmp_path: Path) -> None:
    """Claude opens a transcript with cwd-less records, and Codex creates its file empty."""
    home = tmp_path / "home"
    claude = write(home / ".claude/projects/-w-late" / f"{uuid(1)}.jsonl", [])
    codex = write(rollout(home, uuid(2)), [])
    with running(roots_of(home)) as index:
        assert index.lookup(claude) is None and index.lookup(codex) is None
        append(claude, claude_line(uuid(1), T0, kind="queue-operation"))
        assert index.wait_idle(WAIT)
        early = index.lookup(claude)
        assert early is not None and early.cwd is None
        append(claude, claude_line(uuid(1), T0 + timedelta(seconds=5), cwd="/w/late"))
        for line in codex_lines(uuid(2), "/w/lazy"):
            append(codex, line)
        assert index.wait_idle(WAIT)
        assert [s.session_id for s in index.sessions_for(Path("/w"), None)] == [uuid(2), uuid(1)]


def test_append_to_a_large_transcript_reads_only_the_new_bytes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = rollout(home, uuid(1))
    filler = codex_event(T0, "x" * 4000)
    write(path, codex_lines(uuid(1), "/w/big") + [filler] * 2000)  # ~8 MB
    with running(roots_of(home)) as index:
        before = bytes_read()
        for n in range(5):
            append(path, codex_event(T0 + timedelta(days=1, seconds=n), "new"))
            assert index.wait_idle(WAIT)
        read = bytes_read() - before
        assert read < 256 * 1024, f"read {read} bytes to follow 5 lines of an 8 MB transcript"
        found = index.lookup(path)
        assert found is not None and found.last_activity_at == (T0 + timedelta(days=1, seconds=4)).timestamp()


def test_new_sessions_and_moves_are_picked_up(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".codex/sessions").mkdir(parents=True)
    (home / ".codex/archived_sessions").mkdir(parents=True)
    with running(roots_of(home)) as index:
        path = write(rollout(home, uuid(1), day="2026/12/24"), codex_lines(uuid(1), "/w/new"))  # mkdir -p
        assert index.wait_idle(WAIT)
        assert index.lookup(path) is not None
        archived = home / ".codex/archived_sessions" / path.name
        path.rename(archived)
        assert index.wait_idle(WAIT)
        found = index.sessions_for(Path("/w"), None)
        assert [(s.session_id, s.transcript) for s in found] == [(uuid(1), archived)]
        # watchdog reports the source of a move out of a watched tree only after 0.5 s.
        deadline(lambda: index.lookup(path) is None, what="the moved file forgotten")
        archived.unlink()
        assert index.wait_idle(WAIT)
        assert index.sessions_for(Path("/w"), None) == []


# --- sessions_for ---------------------------------------------------------------------------------


def test_sessions_for_matches_cwd_prefix_and_activity(tmp_path: Path) -> None:
    home = tmp_path / "home"
    repo = tmp_path / "a" / "b"
    repo.mkdir(parents=True)
    (tmp_path / "link").symlink_to(repo)
    write(rollout(home, uuid(1)), codex_lines(uuid(1), str(repo), start=T0))
    write(rollout(home, uuid(2)), codex_lines(uuid(2), str(repo / "sub"), start=T0 + timedelta(hours=1)))
    write(rollout(home, uuid(3)), codex_lines(uuid(3), str(tmp_path / "a" / "bc"), start=T0))
    # The same session twice (a rollout and its compressed copy): reported once, the latest.
    write(rollout(home, uuid(1), day="2026/11/02"), codex_lines(uuid(1), str(repo), start=T0, turns=5))
    with running(roots_of(home)) as index:

        def ids(worktree: Path, since: float | None = None) -> list[str]:
            return [s.session_id for s in index.sessions_for(worktree, since)]

        assert ids(repo) == [uuid(1), uuid(2)]
        assert ids(tmp_path / "a") == [uuid(3), uuid(1), uuid(2)]
        assert ids(tmp_path / "a" / "bc") == [uuid(3)]
        assert ids(repo / "sub") == [uuid(2)]
        assert ids(tmp_path / "link") == [uuid(1), uuid(2)]  # worktree given through a symlink
        assert ids(repo, since=(T0 + timedelta(minutes=30)).timestamp()) == [uuid(2)]
        assert ids(repo, since=(T0 + timedelta(hours=2)).timestamp()) == []
        (one,) = [s for s in index.sessions_for(repo, None) if s.session_id == uuid(1)]
        assert one.last_activity_at == (T0 + timedelta(seconds=5)).timestamp()
        assert isinstance(one, IndexedSession)


# --- roots that come and go -------------------------------------------------------------------------


def test_root_created_after_start_is_picked_up(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with running(roots_of(home)) as index:
        assert {r["mode"] for r in index.status()["roots"]} == {"absent"}
        path = write(rollout(home, uuid(1)), codex_lines(uuid(1), "/w/late"))  # creates ~/.codex/sessions/…
        write(
            home / ".pi/agent/sessions/--w--" / f"t_{uuid(2)}.jsonl",
            [json.dumps({"type": "session", "version": 3, "id": uuid(2), "timestamp": iso(T0), "cwd": "/w/pi"})],
        )
        assert index.wait_idle(WAIT)
        assert index.lookup(path) is not None
        assert {s.session_id for s in index.sessions_for(Path("/w"), None)} == {uuid(1), uuid(2)}
        assert root_status(index, "pi")["mode"] == "inotify"
        # Removed and created again: still followed.
        shutil.rmtree(home / ".codex")
        assert index.wait_idle(WAIT)
        assert index.lookup(path) is None
        assert index.status()["roots"][0]["mode"] == "absent"
        write(path, codex_lines(uuid(1), "/w/again"))
        assert index.wait_idle(WAIT)
        found = index.lookup(path)
        assert found is not None and found.cwd == "/w/again"


# --- inotify failures -------------------------------------------------------------------------------


class NoWatchesLeft(InotifyObserver):
    """The root watch fails the way watchdog 7.1.0 reports ``inotify_add_watch`` → ENOSPC."""

    def schedule(self, event_handler: FileSystemEventHandler, path: str | Path, **kwargs: Any) -> ObservedWatch:
        if kwargs.get("recursive"):
            raise OSError(errno.ENOSPC, "inotify watch limit reached")
        return super().schedule(event_handler, path, **kwargs)


class SubdirWatchesLost(InotifyObserver):
    """Only the root gets a watch, as when watchdog swallows ENOSPC for every subdirectory."""

    def schedule(self, event_handler: FileSystemEventHandler, path: str | Path, **kwargs: Any) -> ObservedWatch:
        return super().schedule(event_handler, path, **{**kwargs, "recursive": False})


class EventsLost(InotifyObserver):
    """Real watches whose events never reach the index: what an IN_Q_OVERFLOW does to a burst."""

    def schedule(self, event_handler: FileSystemEventHandler, path: str | Path, **kwargs: Any) -> ObservedWatch:
        return super().schedule(FileSystemEventHandler(), path, **kwargs)


def test_watch_limit_on_the_root_falls_back_to_polling(tmp_path: Path) -> None:
    home = lay_out(tmp_path / "home")
    with running(roots_of(home), observer_factory=NoWatchesLeft, poll_interval=0.1) as index:
        claude = root_status(index, "claude")
        assert claude["mode"] == "polling"
        assert claude["last_error"] == "inotify watch limit reached"
        assert "fs.inotify.max_user_watches" in claude["advice"] and "sysctl" in claude["advice"]
        assert claude["sessions"] == 3
        path = write(home / ".claude/projects/-w-p" / f"{uuid(1)}.jsonl", [claude_line(uuid(1), T0, cwd="/w/p")])
        deadline(lambda: index.lookup(path), what="a new transcript seen by polling")
        append(path, claude_line(uuid(1), T0 + timedelta(minutes=1), cwd="/w/p"))
        deadline(lambda: (s := index.lookup(path)) and s.size == path.stat().st_size, what="growth seen by polling")


def test_unwatched_subdirectories_are_detected_and_polled(tmp_path: Path) -> None:
    home = lay_out(tmp_path / "home")
    with running(roots_of(home), observer_factory=SubdirWatchesLost, poll_interval=0.1) as index:
        codex = root_status(index, "codex")
        assert codex["mode"] == "polling", codex
        assert "directories under the root are not watched" in codex["last_error"]
        assert "fs.inotify.max_user_watches" in codex["advice"]
        path = write(rollout(home, uuid(1), day="2026/02/23"), codex_lines(uuid(1), "/w/deep"))
        deadline(lambda: index.lookup(path), what="a file in a subdirectory seen by polling")
        assert {r["mode"] for r in index.status()["roots"] if r["mode"] != "absent"} == {"polling"}


def test_no_inotify_instance_left_polls_everything(tmp_path: Path) -> None:
    """A real EMFILE from inotify_init: the descriptor table is full while the observer is built."""
    home = lay_out(tmp_path / "home")

    def starved() -> BaseObserver:
        spare = os.open(os.devnull, os.O_RDONLY)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 8, hard))
        filler: list[int] = []
        try:
            with contextlib.suppress(OSError):
                while True:
                    filler.append(os.dup(spare))
            return InotifyObserver()
        finally:
            for fd in [*filler, spare]:
                os.close(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    with running(roots_of(home), observer_factory=starved, poll_interval=0.1) as index:
        modes = {r["mode"] for r in index.status()["roots"] if r["mode"] != "absent"}
        assert modes == {"polling"}
        claude = root_status(index, "claude")
        assert claude["last_error"] == "inotify instance limit reached"
        assert "fs.inotify.max_user_instances" in claude["advice"]
        assert index.status()["sessions"] == len(LAYOUT)
        path = write(rollout(home, uuid(1)), codex_lines(uuid(1), "/w/x"))
        deadline(lambda: index.lookup(path), what="a new transcript seen by polling")


def test_overflow_triggers_a_reconcile(tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = write(rollout(home, uuid(1)), codex_lines(uuid(1), "/w/o"))
    with running(roots_of(home), observer_factory=EventsLost) as index:
        append(path, codex_event(T0 + timedelta(days=2), "lost"))
        assert index.wait_idle(WAIT)
        stale = index.lookup(path)
        assert stale is not None and stale.size < path.stat().st_size  # the event was lost
        root = index.status()["roots"][0]["watch_path"]
        # What watchdog 7.1.0 logs on IN_Q_OVERFLOW (and all it does about it).
        logging.getLogger("watchdog.observers.inotify_c").warning(
            "Inotify queue overflowed; filesystem events were lost"
        )
        logging.getLogger("watchdog.observers.inotify").warning(
            "Inotify queue overflowed; reconciling recursive watches below %r", os.fsencode(root)
        )
        assert index.wait_idle(WAIT)
        fresh = index.lookup(path)
        assert fresh is not None and fresh.size == path.stat().st_size
        assert fresh.last_activity_at == (T0 + timedelta(days=2)).timestamp()
        codex = index.status()["roots"][0]
        assert (codex["overflows"], codex["reconciles"]) == (1, 1)
        assert index.status()["counters"]["overflows"] == 1


def test_polling_on_request(tmp_path: Path) -> None:
    home = lay_out(tmp_path / "home")
    with running(roots_of(home), polling=True, poll_interval=0.1) as index:
        claude = root_status(index, "claude")
        assert (claude["mode"], claude["advice"], claude["last_error"]) == ("polling", None, None)
        path = write(rollout(home, uuid(1)), codex_lines(uuid(1), "/w/x"))
        deadline(lambda: index.lookup(path), what="a new transcript seen by polling")


# --- compressed rollouts ------------------------------------------------------------------------------


def test_zst_rollouts_are_read(tmp_path: Path) -> None:
    home = tmp_path / "home"
    source = FIXTURES / LAYOUT[1][0]
    small = home / ".codex/sessions/2026/02/23" / (source.name + ".zst")
    small.parent.mkdir(parents=True)
    small.write_bytes(zstandard.ZstdCompressor().compress(source.read_bytes()))
    # A long one, bigger than the head window, in two frames: the last activity is in the tail.
    big_lines = codex_lines(uuid(1), "/w/zst") + [codex_event(T0, "y" * 1000)] * 2000
    big_lines.append(codex_event(T0 + timedelta(days=3), "last"))
    data = "".join(line + "\n" for line in big_lines).encode()
    big = rollout(home, uuid(1)).with_suffix(".jsonl.zst")
    compressor = zstandard.ZstdCompressor()
    big.parent.mkdir(parents=True)
    big.write_bytes(compressor.compress(data[: len(data) // 2]) + compressor.compress(data[len(data) // 2 :]))
    with running(roots_of(home)) as index:
        found = index.lookup(small)
        assert found is not None
        assert (found.agent, found.session_id, found.cwd) == ("codex", LAYOUT[1][3], LAYOUT[1][4])
        assert found.last_activity_at == pytest.approx(
            datetime.fromisoformat("2026-02-23T19:36:02.635+00:00").timestamp()
        )
        long = index.lookup(big)
        assert long is not None and long.cwd == "/w/zst"
        assert long.last_activity_at == (T0 + timedelta(days=3)).timestamp()
        assert index.status()["counters"]["whole"] == 2


# --- the ledger ---------------------------------------------------------------------------------------


def test_restart_reads_only_what_changed(tmp_path: Path) -> None:
    home = lay_out(tmp_path / "home")
    db = tmp_path / "state" / "sessions.sqlite3"
    grow = home / LAYOUT[0][1]
    replace = home / LAYOUT[3][1]
    gone = home / LAYOUT[10][1]
    with running(roots_of(home), db) as index:
        first = index.status()
        assert first["counters"]["head"] + first["counters"]["whole"] == len(LAYOUT)
        snapshot = {s.transcript: s for s in index.sessions_for(Path("/"), None)}
    with running(roots_of(home), db) as index:
        again = index.status()["counters"]
        assert (again["head"], again["tail"], again["whole"]) == (0, 0, 0)
        assert {s.transcript: s for s in index.sessions_for(Path("/"), None)} == snapshot
    append(grow, codex_event(T0, "more"))
    text = replace.read_text()
    replace.unlink()
    replace.write_text(text.replace("/home/marco/projects/spotter", "/home/marco/projects/spott3r"))  # new inode
    gone.unlink()
    added = write(rollout(home, uuid(1)), codex_lines(uuid(1), "/w/added"))
    with running(roots_of(home), db) as index:
        changed = index.status()["counters"]
        assert (changed["head"], changed["tail"], changed["whole"]) == (2, 1, 0)
        assert index.lookup(gone) is None
        assert index.lookup(added) is not None
        moved = index.lookup(replace)
        assert moved is not None and moved.cwd == "/home/marco/projects/spott3r"
        grown = index.lookup(grow)
        assert grown is not None and grown.size == grow.stat().st_size


def test_a_corrupt_ledger_is_rebuilt(tmp_path: Path) -> None:
    home = lay_out(tmp_path / "home")
    db = tmp_path / "sessions.sqlite3"
    db.write_bytes(b"this is not a database" * 100)
    with running(roots_of(home), db) as index:
        assert index.status()["sessions"] == len(LAYOUT)
    with running(roots_of(home), db) as index:
        assert index.status()["counters"]["head"] == 0


def test_an_unusable_ledger_location_only_costs_persistence(tmp_path: Path) -> None:
    home = lay_out(tmp_path / "home")
    (tmp_path / "state").write_text("a file where the state directory should be")
    with running(roots_of(home), tmp_path / "state" / "sessions.sqlite3") as index:
        status = index.status()
        assert status["sessions"] == len(LAYOUT) and status["error"] is None
        assert status["ledger_error"] is not None


# --- idle ---------------------------------------------------------------------------------------------


def test_an_idle_index_does_no_work_until_its_next_timer(fixture_index: tuple[Path, SessionIndex]) -> None:
    """Idle means asleep, not cheap polling: the index thread waits on its condition until an
    event or its next timer (root check 60 s, reconcile 15 min), and no batch runs meanwhile.
    Checked by behaviour, not by a CPU-time bound (bench/bench_discovery.py measures idle CPU)."""
    _home, index = fixture_index
    assert index.wait_idle(WAIT)
    before = index.status()["counters"]
    assert index._next_timer() - time.monotonic() > 30
    time.sleep(0.5)  # an absence cannot be polled for: the window in which nothing may happen
    assert index.status()["counters"] == before
