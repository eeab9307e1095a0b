"""Usage reading resumes where the previous commit's read stopped, and answers as reading from line 1.

The note's usage of a commit is its slice of the session, judged with everything before it
(agents/usage.py). Reading from line 1 on every commit made each commit of a long session cost
the whole session; the reader's state at the end of a slice (tokens.Checkpoint) lets the next
commit read only its own lines, in memory and, through a sidecar file, across restarts.
Bytes read are measured, not reported by the code under test: /proc/self/io ``rchar`` (Linux)
counts every byte this process reads.
"""

from __future__ import annotations

import json
import re
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracekeeperd import tokens
from tracekeeperd.agents import get_format
from tracekeeperd.agents.usage import ModelUsage, Usage, UsageState, slice_usage

from .harness import Env, make_repo, note_links, running_daemon, wait_for
from .test_usage import WITH_USAGE, lines_of
from .transcripts import CODEX_TOOLS, FIXTURES, load

CODEX_TOOLS_ID = "019c8bfe-ec25-79e0-97d7-bda6a9c575ff"


def _round_trip(state: UsageState) -> UsageState:
    """The state as a restarted daemon reads it back from its sidecar."""
    loaded = UsageState.from_json(json.loads(json.dumps(state.to_json())))
    assert loaded is not None
    return loaded


@pytest.mark.parametrize("relpath", WITH_USAGE)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_reading_on_from_a_state_answers_as_reading_from_line_1(relpath: str, data: st.DataObject) -> None:
    """For any cut into commit slices, each slice read from the state the previous read left
    (sometimes reloaded from JSON, sometimes with lines skipped between the state and the slice,
    read then as context) equals the slice read from line 1."""
    fmt, _path, lines = load(relpath)
    cuts = sorted(data.draw(st.sets(st.integers(min_value=1, max_value=len(lines) - 1), max_size=6)))
    bounds = list(zip([1, *[cut + 1 for cut in cuts]], [*cuts, len(lines)], strict=True))
    state, reached = UsageState(), 0
    for first, last in bounds:
        if data.draw(st.booleans(), label="skip this slice"):
            continue  # a commit noted elsewhere: the next read goes on from the older state
        if data.draw(st.booleans(), label="restart"):
            state = _round_trip(state)
        after = enumerate(lines[reached:last], start=reached + 1)
        resumed = slice_usage(fmt, after, start=first, end=last, state=state)
        assert resumed == slice_usage(fmt, enumerate(lines[:last], start=1), start=first, end=last), (first, last)
        reached = last


@settings(max_examples=60, deadline=None)
@given(
    ids=st.lists(st.integers(min_value=0, max_value=150), min_size=1, max_size=300),
    outputs=st.lists(st.integers(min_value=0, max_value=9), min_size=300, max_size=300),
    data=st.data(),
)
def test_claude_responses_closed_on_the_way_are_charged_alike_whatever_the_cuts(
    ids: list[int], outputs: list[int], data: st.DataObject
) -> None:
    """Lines of a response that recur after more than 64 others began (so it was closed): resumed
    reads answer as reads from line 1. (Slices need not add up to the whole here: a response cut
    in two is charged with the counts its first slice saw, and a later line may show more.)"""
    fmt = get_format("claude")
    assert fmt is not None
    lines = [_claude_line(f"msg_{key}", outputs[i]) for i, key in enumerate(ids)]
    cuts = sorted(data.draw(st.sets(st.integers(min_value=1, max_value=max(1, len(lines) - 1)), max_size=5)))
    bounds = [(a, b) for a, b in zip([1, *[c + 1 for c in cuts]], [*cuts, len(lines)], strict=True) if a <= b]
    state = UsageState()
    for first, last in bounds:
        state = _round_trip(state)
        part = slice_usage(fmt, enumerate(lines[first - 1 : last], start=first), start=first, end=last, state=state)
        assert part == slice_usage(fmt, enumerate(lines[:last], start=1), start=first, end=last)


def _pi_entry(entry: str, tokens_in: int) -> bytes:
    message = {"role": "assistant", "model": "m", "usage": {"input": tokens_in, "output": 1}}
    return json.dumps({"type": "message", "id": entry, "message": message}).encode()


def test_the_state_of_a_session_with_100k_responses_is_small_and_still_exact() -> None:
    """Every id charged must stay known (Gemini lists the whole conversation again in
    ``$set.messages``): kept as 8-byte digests, 100k responses make a state of about 1 MB of JSON,
    and an entry from the start written again at the end is still not charged twice."""
    fmt = get_format("pi")
    assert fmt is not None
    count = 100_000
    state = UsageState()
    lines = [_pi_entry(f"entry-{i}", 1) for i in range(count)]
    first = slice_usage(fmt, enumerate(lines, start=1), state=state)
    assert first == Usage.of({"m": ModelUsage(input=count, output=count, cache_write=0)})
    size = len(json.dumps(state.to_json()))
    assert size < count * 8 * 4 // 3 + 200, size
    state = _round_trip(state)
    again = [_pi_entry("entry-0", 5), _pi_entry("entry-99999", 5), _pi_entry("new", 7)]
    later = slice_usage(fmt, enumerate(again, start=count + 1), start=count + 1, state=state)
    assert later == Usage.of({"m": ModelUsage(input=7, output=1, cache_write=0)})


def _claude_line(message_id: str, output: int) -> bytes:
    usage = {"input_tokens": 1, "output_tokens": output, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}
    message = {"id": message_id, "model": "m", "usage": usage}
    return json.dumps({"type": "assistant", "message": message}).encode()


def test_reading_a_long_claude_session_holds_only_a_few_responses_open() -> None:
    """A Claude response's lines carry its counts as known when each was written, so it is charged
    with the largest; but keeping every response open until the read ends held all of them (one
    entry each, ~350 bytes). A response is closed once 64 others have begun since (Claude
    Code writes a response's lines together); its later lines then add nothing."""
    fmt = get_format("claude")
    assert fmt is not None
    count = 25_000  # tracemalloc slows parsing tenfold; held all open: 7.3 MiB (100k: 34 MiB)
    lines = [line for i in range(count) for line in (_claude_line(f"msg_{i}", 1), _claude_line(f"msg_{i}", 2))]
    tracemalloc.start()
    try:
        usage = slice_usage(fmt, enumerate(lines, start=1))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert usage == Usage.of({"m": ModelUsage(input=count, output=2 * count, cache_write=0)})
    assert peak < 3 * 1024 * 1024, f"{peak / 2**20:.1f} MiB"  # 200 kB of digests, 64 open, a merge
    late = [_claude_line("msg_0", 1), *(_claude_line(f"other_{i}", 0) for i in range(64)), _claude_line("msg_0", 5)]
    assert slice_usage(fmt, enumerate(late, start=1)) == Usage.of({"m": ModelUsage(input=65, output=1, cache_write=0)})


def test_a_damaged_state_is_refused() -> None:
    good = UsageState().to_json()
    damaged = ({**good, "model": 3}, {**good, "seen": "%%"}, {**good, "seen": "AAAA"}, {**good, "total": "x"})
    for bad in (None, [], *damaged):
        assert UsageState.from_json(bad) is None, bad


# --- the daemon's reader (tokens.job_usage) on a growing snapshot ---------------------------------


def _bytes_read() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def _job(snapshot: Path, first: int, last: int) -> Any:
    from tracekeeperd.protocol import JobState
    from tracekeeperd.queue import Job

    data = snapshot.read_bytes()
    size = len(b"\n".join(data.split(b"\n")[:last])) + 1
    return Job(
        id=1, repo_key="r", repo_display="r", git_dir=str(snapshot.parent), work_tree=None, commit_sha="a" * 40,
        agent="codex", session_id=CODEX_TOOLS_ID, transcript=str(snapshot), snapshot=str(snapshot),
        bytes=size, first_line=first, last_line=last, sha256=None, remote_path=None,
        state=JobState.UPLOADING, attempts=0, next_attempt_at=None, last_error=None, url=None,
        created_at=0.0, updated_at=0.0,
    )  # fmt: skip


def _filler(count: int, seed: int) -> list[bytes]:
    """Tool output lines of 10 kB each: most of a real session's bytes, none of its usage."""
    payloads = [{"type": "function_call_output", "output": f"{seed}:{i}:" + "x" * 10_000} for i in range(count)]
    return [json.dumps({"type": "response_item", "payload": payload}).encode() for payload in payloads]


@pytest.fixture
def fresh_checkpoints() -> Iterator[None]:
    """This process's checkpoints and answers start empty (a daemon's start), and are left so."""
    tokens.CHECKPOINTS.clear()
    tokens._cached_usage.cache_clear()
    yield
    tokens.CHECKPOINTS.clear()
    tokens._cached_usage.cache_clear()


def _usage(job: Any, root: Path) -> tuple[Usage | None, int]:
    from tracekeeperd.redact import Redactor

    redactor = Redactor()
    before = _bytes_read()
    usage = tokens.job_usage(job, redactor, root)
    return usage, _bytes_read() - before


def _from_line_1(snapshot: Path, first: int, last: int) -> Usage | None:
    fmt = get_format("codex")
    assert fmt is not None
    lines = snapshot.read_bytes().split(b"\n")[:last]
    return slice_usage(fmt, enumerate(lines, start=1), start=first, end=last)


def test_the_next_commit_of_a_large_session_reads_only_its_new_bytes(tmp_path: Path, fresh_checkpoints: None) -> None:
    """A 5 MB Codex session grows by one turn per commit: each commit's usage is read from where
    the previous one stopped (in memory, then from the sidecar after a restart), not from line 1;
    a snapshot replaced at the same path is read from line 1 again. Answers equal line 1's."""
    root = tmp_path / "redacted"
    snapshot = tmp_path / "snapshot.jsonl"
    real = lines_of(CODEX_TOOLS)
    half = len(real) // 2
    head = [*real[:half], *_filler(500, 1)]
    snapshot.write_bytes(b"\n".join(head) + b"\n")
    usage, _ = _usage(_job(snapshot, 1, len(head)), root)
    assert usage == _from_line_1(snapshot, 1, len(head))
    assert (root / (snapshot.name + tokens.SUFFIX)).is_file()

    def grow(lines: list[bytes]) -> tuple[int, int, int]:
        first = snapshot.read_bytes().count(b"\n") + 1
        with snapshot.open("ab") as fh:
            fh.write(b"\n".join(lines) + b"\n")
        added = sum(len(line) + 1 for line in lines)
        return first, first + len(lines) - 1, added

    first, last, added = grow([*_filler(5, 2), *real[half:]])
    usage, read = _usage(_job(snapshot, first, last), root)
    assert usage == _from_line_1(snapshot, first, last) and usage is not None and usage.total().input > 0
    assert read < added + 4 * tokens.PROBE + 1000, (read, added)  # + the probes, + /proc/self/io itself

    tokens.CHECKPOINTS.clear()  # a restarted daemon: only the sidecar is left
    # Codex re-sends its last running total on a rate-limit refresh: charged nothing, which only
    # the state (the previous total) can tell.
    resent = [line for line in real if b'"token_count"' in line and b'"total_token_usage"' in line][-1]
    first, last, added = grow([*_filler(5, 3), resent])
    usage, read = _usage(_job(snapshot, first, last), root)
    assert usage == _from_line_1(snapshot, first, last) == Usage.of({})
    assert read < added + 4 * tokens.PROBE + 200_000, (read, added)  # + the sidecar itself

    # A new file at the same path (never done by snapshot.py, which starts a new generation):
    # the checkpoint does not match its bytes, so it is read from line 1, and right.
    whole = snapshot.read_bytes()
    snapshot.write_bytes(whole.replace(b"xxxx", b"yyyy"))
    first, last, added = grow(real[half:])
    usage, read = _usage(_job(snapshot, first, last), root)
    assert usage == _from_line_1(snapshot, first, last) and usage is not None
    assert read >= len(whole)


def test_a_range_that_starts_before_the_checkpoint_is_read_from_line_1(tmp_path: Path, fresh_checkpoints: None) -> None:
    """An old commit noted late (or a rebase's copy of it): its range starts before where reading
    got to, so it is read from line 1, right, and the checkpoint stays at the furthest line."""
    root = tmp_path / "redacted"
    snapshot = tmp_path / "snapshot.jsonl"
    snapshot.write_bytes((FIXTURES / CODEX_TOOLS).read_bytes())
    total = snapshot.read_bytes().count(b"\n")
    assert tokens.job_usage(_job(snapshot, 20, total), _redactor(), root) == _from_line_1(snapshot, 20, total)
    assert tokens.job_usage(_job(snapshot, 1, 19), _redactor(), root) == _from_line_1(snapshot, 1, 19)
    record = json.loads((root / (snapshot.name + tokens.SUFFIX)).read_bytes())
    assert record["line"] == total


def _redactor() -> Any:
    from tracekeeperd.redact import Redactor

    return Redactor()


# --- the real daemon, restarted between two commits ------------------------------------------


def test_a_restarted_daemon_reads_usage_on_from_where_it_stopped(env: Env) -> None:
    """The checkpoint survives a restart: the commit after it reads the session's new bytes only
    (the daemon's debug log says which bytes it read), and the note's usage is line 1's answer."""
    real = lines_of(CODEX_TOOLS)
    half = len(real) // 2
    repo = make_repo(env).install()
    transcript = env.transcript()
    transcript.write_bytes(b"\n".join(real[:half]) + b"\n")
    repo.activate(transcript, session_id=CODEX_TOOLS_ID)
    with running_daemon(env):
        first = repo.commit("first")
        wait_for(lambda: repo.note(first), what="the first note")
    before = transcript.stat().st_size
    with transcript.open("ab") as fh:
        fh.write(b"\n".join(real[half:]) + b"\n")
    with running_daemon(env) as daemon:
        second = repo.commit("second")
        note = wait_for(lambda: repo.note(second), what="the note after a restart")
        log = daemon.output()
    reads = re.findall(rf"read usage of \S+ lines {half + 1}\.\.{len(real)}: (\d+) bytes from byte (\d+)", log)
    assert [(int(size), int(start)) for size, start in reads] == [(transcript.stat().st_size - before, before)], log[
        -3000:
    ]
    (meta,) = note_links(note)
    expected = _from_line_1(transcript, half + 1, len(real))
    assert expected is not None and Usage.from_json(meta["usage"]) == expected
