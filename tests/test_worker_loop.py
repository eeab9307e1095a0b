"""The worker driven turn by turn (`Worker.loop(now=...)`), without a daemon and without waiting.

Real queue, real snapshots, real git, real stores (the local directory; huggingface_hub against
tests/hubstub.py for the Hub's failures). Time is injected: a backoff of a minute is stepped
over by passing a later `now`, so these tests prove the schedule itself, not that a sleep ended.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracekeeperd import git, notes
from tracekeeperd.config import RetryPolicy
from tracekeeperd.queue import JobState
from tracekeeperd.stores import LocalStore, Upload
from tracekeeperd.stores.hf import HfStore
from tracekeeperd.worker import COALESCE, Arrivals, Tick

from .hubstub import HubStub, running_hub
from .workerkit import NOW, REF, WorkerKit, transcript_lines, worker_kit

BUCKET = "alice/agent-traces"
#: No jitter: every delay the worker schedules is exact, and asserted exactly.
STEADY = RetryPolicy(base=60.0, cap=600.0, jitter=0.0)


class CountingStore(LocalStore):
    """The real local store, recording each `put` (a spy: every upload still happens)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.puts: list[list[str]] = []

    def put(self, uploads: list[Upload]) -> dict[str, str]:
        self.puts.append([u.remote_path for u in uploads])
        return super().put(uploads)


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubStub]:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    with running_hub(tmp_path / "cas") as stub:
        yield stub


@pytest.fixture(autouse=True)
def _no_user_git_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


def _states(kit: WorkerKit) -> list[JobState]:
    return [job.state for job in kit.queue.jobs()]


def _link(kit: WorkerKit, repo: str, sha: str) -> notes.TraceLink:
    (link,) = notes.parse(notes.read(kit.repos[repo][0], REF, sha))
    return link


def test_a_lone_commit_is_claimed_at_once_and_noted(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "store")
    with worker_kit(tmp_path, store) as kit:
        _, (sha,) = kit.repo("app", 1)
        kit.add("app", sha, kit.snapshot("s.jsonl", 3))
        kit.worker.arrivals.arrived(NOW)
        assert kit.worker.loop(now=NOW) == Tick(claimed=1, wait=0.0), "no coalescing wait for a lone commit"
        assert kit.worker.loop(now=NOW) == Tick(claimed=0, wait=None), "nothing left: sleep until woken"
        assert _states(kit) == [JobState.DONE]
        assert _link(kit, "app", sha).last_line == 3
    assert store.puts == [[f"{kit.repos['app'][2]}/sessions/codex-s.jsonl"]]


def test_a_burst_waits_until_quiet_and_the_rest_of_it_shares_one_upload(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "store")
    with worker_kit(tmp_path, store) as kit:
        _, shas = kit.repo("app", 5)
        kit.add("app", shas[0], kit.snapshot("s1.jsonl", 1), at=NOW)
        kit.worker.arrivals.arrived(NOW)
        assert kit.worker.loop(now=NOW).claimed == 1, "the first commit cannot know a burst follows"
        times = [NOW + 0.03 * i for i in range(1, 5)]  # a script committing every 30 ms
        for i, (sha, at) in enumerate(zip(shas[1:], times, strict=True), start=2):
            kit.add("app", sha, kit.snapshot(f"s{i}.jsonl", i), at=at)
            kit.worker.arrivals.arrived(at)
            tick = kit.worker.loop(now=at)
            assert tick == Tick(claimed=0, wait=pytest.approx(COALESCE)), "a burst is arriving: hold"
        assert kit.worker.loop(now=times[-1] + COALESCE / 2) == Tick(0, pytest.approx(COALESCE / 2))
        assert kit.worker.loop(now=times[-1] + COALESCE).claimed == 4
        assert _states(kit) == [JobState.DONE] * 5
        assert [_link(kit, "app", sha).last_line for sha in shas] == [1, 2, 3, 4, 5], "each note its own range"
    assert len(store.puts) == 2, "the lone first commit, then the rest of the burst in one upload"


def test_a_burst_that_never_goes_quiet_is_claimed_after_the_longest_hold(tmp_path: Path) -> None:
    with worker_kit(tmp_path) as kit:
        # A short longest hold keeps this test small; the default (COALESCE_MOST) works alike.
        kit.worker.arrivals = Arrivals(COALESCE, most=0.5)
        _, shas = kit.repo("app", 40)
        arrivals = [NOW + 0.05 * i for i in range(40)]
        claimed_at: list[float] = []
        for i, (sha, at) in enumerate(zip(shas, arrivals, strict=True), start=1):
            kit.add("app", sha, kit.snapshot(f"s{i}.jsonl", i), at=at)
            kit.worker.arrivals.arrived(at)
            if kit.worker.loop(now=at).claimed:
                claimed_at.append(at)
        # Alone at first, then every COALESCE_MOST while the script goes on: held, never starved.
        expected = [NOW + 0.5 * k for k in range(4)]
        assert claimed_at == pytest.approx(expected, abs=1e-6)
        rest = sum(at > expected[-1] for at in arrivals)
        assert kit.worker.loop(now=arrivals[-1] + COALESCE).claimed == rest, "the rest once the script stops"
        assert _states(kit) == [JobState.DONE] * 40


def test_a_store_failure_backs_off_by_the_policy_and_a_later_turn_uploads(tmp_path: Path, hub: HubStub) -> None:
    hub.create_bucket(BUCKET)
    hub.fail_next(1, status=503, retry_after=0, paths=[f"/api/buckets/{BUCKET}/batch"])
    store = HfStore(BUCKET, hub.endpoint, "hf_alice_write")
    with worker_kit(tmp_path, store, STEADY) as kit:
        _, (sha,) = kit.repo("app", 1)
        snapshot = kit.snapshot("s.jsonl", 3)
        kit.add("app", sha, snapshot)
        assert kit.worker.loop(now=NOW) == Tick(1, 0.0)
        (job,) = kit.queue.jobs()
        assert (job.state, job.next_attempt_at, job.attempts) == (JobState.PENDING, NOW + 60, 1)
        assert kit.worker.gate.closed_until == NOW + 60 and "503" in (kit.worker.gate.reason or "")
        assert kit.worker.loop(now=NOW + 1) == Tick(0, 59.0), "the closed gate holds the queue"
        assert kit.worker.loop(now=NOW + 59.5) == Tick(0, 0.5)
        assert kit.worker.loop(now=NOW + 60) == Tick(1, 0.0)
        assert _states(kit) == [JobState.DONE] and kit.worker.gate.failures == 0
        link = _link(kit, "app", sha)
    assert hub.pending_failures() == 0
    assert hub.read_file(BUCKET, link.url.split(f"/buckets/{BUCKET}/tree/", 1)[1]) == snapshot.read_bytes()


def test_each_failure_in_a_row_doubles_the_wait_up_to_the_cap(tmp_path: Path, hub: HubStub) -> None:
    hub.create_bucket(BUCKET)
    hub.fail_next(5, status=503, retry_after=0, paths=[f"/api/buckets/{BUCKET}/batch"])
    store = HfStore(BUCKET, hub.endpoint, "hf_alice_write")
    with worker_kit(tmp_path, store, RetryPolicy(base=60.0, cap=300.0, jitter=0.0)) as kit:
        _, (sha,) = kit.repo("app", 1)
        kit.add("app", sha, kit.snapshot("s.jsonl", 2))
        now, waits = NOW, []
        while kit.worker.loop(now=now).claimed and _states(kit) != [JobState.DONE]:
            waits.append(kit.worker.gate.closed_until - now)
            now = kit.worker.gate.closed_until
        assert waits == [60, 120, 240, 300, 300]
        assert _states(kit) == [JobState.DONE]
        assert kit.queue.jobs()[0].attempts == 6


def test_transient_503s_are_retried_until_the_upload_succeeds(tmp_path: Path, hub: HubStub) -> None:
    """Moved here from the daemon-level tests, which waited the backoff out in real time."""
    hub.create_bucket(BUCKET)
    # More failures than huggingface_hub's own retries absorb: the queue's backoff must take over.
    hub.fail_next(8, status=503, retry_after=0, paths=[f"/api/buckets/{BUCKET}"])
    store = HfStore(BUCKET, hub.endpoint, "hf_alice_write")
    with worker_kit(tmp_path, store) as kit:
        _, (sha,) = kit.repo("app", 1)
        snapshot = kit.snapshot("s.jsonl", 5)
        kit.add("app", sha, snapshot)
        now, turns = NOW, 0
        while _states(kit) != [JobState.DONE]:
            tick = kit.worker.loop(now=now)
            assert tick.wait is not None, "a pending job always has a next turn"
            now, turns = now + tick.wait, turns + 1
            assert turns < 50
        (done,) = kit.queue.jobs()
        link = _link(kit, "app", sha)
    assert hub.pending_failures() == 0
    assert done.attempts >= 2
    assert hub.read_file(BUCKET, link.url.split(f"/buckets/{BUCKET}/tree/", 1)[1]) == snapshot.read_bytes()


def test_a_public_bucket_fails_the_job_for_good_and_leaves_the_queue_open(tmp_path: Path, hub: HubStub) -> None:
    hub.create_bucket(BUCKET, private=False)
    store = HfStore(BUCKET, hub.endpoint, "hf_alice_write")
    with worker_kit(tmp_path, store, STEADY) as kit:
        _, (sha,) = kit.repo("app", 1)
        kit.add("app", sha, kit.snapshot("s.jsonl", 1))
        assert kit.worker.loop(now=NOW) == Tick(1, 0.0)
        (job,) = kit.queue.jobs()
        assert job.state is JobState.FAILED and "is public" in (job.last_error or "")
        assert kit.worker.gate.closed_until == 0.0, "a refusal is no outage: nothing else waits"
        assert kit.worker.loop(now=NOW + 3600) == Tick(0, None), "a failed job is never tried again by itself"
        assert notes.read(kit.repos["app"][0], REF, sha) == ""
    assert hub.count(path_suffix="/batch") == 0


def test_one_batch_uploads_each_session_once_and_notes_every_commit(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "store")
    with worker_kit(tmp_path, store) as kit:
        _, shas = kit.repo("app", 6)
        for i, sha in enumerate(shas):
            kit.add("app", sha, kit.snapshot(f"{i}.jsonl", i + 1), session=f"s{i % 2}")
        assert kit.worker.loop(now=NOW) == Tick(6, 0.0)
        assert _states(kit) == [JobState.DONE] * 6
        links = [_link(kit, "app", sha) for sha in shas]
        key = kit.repos["app"][2]
    assert store.puts == [[f"{key}/sessions/codex-s0.jsonl", f"{key}/sessions/codex-s1.jsonl"]]
    assert [link.last_line for link in links] == [1, 2, 3, 4, 5, 6]
    assert (tmp_path / "store" / key / "sessions" / "codex-s1.jsonl").read_bytes() == transcript_lines(1, 6)


def test_a_linked_session_is_followed_once_it_is_quiet(tmp_path: Path) -> None:
    with worker_kit(tmp_path) as kit:
        _, (sha,) = kit.repo("app", 1)
        transcript = tmp_path / "live.jsonl"
        transcript.write_bytes(transcript_lines(1, 3))
        kit.add("app", sha, kit.snapshot("s.jsonl", 3), transcript=transcript)
        assert kit.worker.loop(now=NOW).claimed == 1
        remote = tmp_path / "store" / kit.repos["app"][2] / "sessions" / "codex-s.jsonl"
        assert remote.read_bytes() == transcript_lines(1, 3)
        with transcript.open("ab") as fh:
            fh.write(transcript_lines(4, 7))
        os.utime(transcript, (NOW + 100, NOW + 100))  # the agent wrote at NOW + 100
        assert kit.worker.follow(30.0, now=NOW + 110) == 0, "still being written: wait for quiet"
        assert kit.worker.follow(30.0, now=NOW + 131) == 1
        assert kit.worker.follow(30.0, now=NOW + 200) == 0, "nothing new since"
        assert _link(kit, "app", sha).last_line == 3, "the note keeps the commit's own range"
    assert remote.read_bytes() == transcript_lines(1, 7)


def test_a_batch_that_crashes_hands_its_jobs_back_for_a_later_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with worker_kit(tmp_path) as kit:
        _, (sha,) = kit.repo("app", 1)
        kit.add("app", sha, kit.snapshot("s.jsonl", 1))

        def bug(_: object) -> None:
            raise RuntimeError("a bug")

        with monkeypatch.context() as patch:
            patch.setattr(kit.worker, "_note_all", bug)
            assert kit.worker.loop(now=NOW) == Tick(1, 0.0)
        (job,) = kit.queue.jobs()
        assert job.state is JobState.PENDING and "internal error" in (job.last_error or "")
        assert kit.worker.loop(now=NOW + 1) == Tick(0, 59.0)
        assert kit.worker.loop(now=NOW + 60) == Tick(1, 0.0)
        assert _states(kit) == [JobState.DONE]
        assert git.output(kit.repos["app"][0], ["rev-list", "--count", REF]) == "1"


def test_arrivals_within_a_hold_wake_the_sleeping_worker_once(tmp_path: Path) -> None:
    """`arrived` answers whether the daemon should wake the worker (app.py `_after_ingest`): not
    when it sleeps until a turn at or before the hold the arrival sets would end anyway."""
    with worker_kit(tmp_path) as kit:
        arrivals = kit.worker.arrivals
        _, shas = kit.repo("app", 6)
        assert kit.worker.loop(now=NOW - 60) == Tick(0, None), "idle: asleep with nothing due"
        kit.add("app", shas[0], kit.snapshot("s1.jsonl", 1), at=NOW)
        assert arrivals.arrived(NOW) is True, "a lone commit after idle wakes the worker at once"
        assert kit.worker.loop(now=NOW).claimed == 1
        assert kit.worker.loop(now=NOW) == Tick(0, None)
        times = [NOW + 0.03 * i for i in range(1, 6)]  # a script committing every 30 ms
        woken, turns = [], 0
        due: float | None = None
        for i, (sha, at) in enumerate(zip(shas[1:], times, strict=True), start=2):
            kit.add("app", sha, kit.snapshot(f"s{i}.jsonl", i), at=at)
            woke = arrivals.arrived(at)
            woken.append(woke)
            if woke:  # what the daemon's loop does when woken: a turn now, then sleep until due
                turns += 1
                tick = kit.worker.loop(now=at)
                assert tick.claimed == 0 and tick.wait is not None
                due = at + tick.wait
        assert woken == [True, False, False, False, False], "the burst's first repeat wakes it, the rest do not"
        assert turns == 1
        assert due == pytest.approx(times[0] + COALESCE)
        # Its own deadline comes: the hold has moved on, so it sleeps again until the burst is quiet.
        tick = kit.worker.loop(now=due)
        assert tick == Tick(0, pytest.approx(times[-1] + COALESCE - due))
        assert kit.worker.loop(now=times[-1] + COALESCE).claimed == 5
        assert _states(kit) == [JobState.DONE] * 6


def test_an_arrival_while_the_worker_is_busy_or_owes_a_later_turn_still_wakes_it(tmp_path: Path, hub: HubStub) -> None:
    """Busy: only a wake makes it look again after the batch. Asleep until a later turn (a
    backoff): a lone commit must not wait for it."""
    woken: list[bool] = []

    class ArrivingStore(LocalStore):
        def put(self, uploads: list[Upload]) -> dict[str, str]:
            woken.append(kit.worker.arrivals.arrived(NOW + 0.01))  # a commit mid-batch
            return super().put(uploads)

    with worker_kit(tmp_path, ArrivingStore(tmp_path / "store"), policy=STEADY) as kit:
        _, shas = kit.repo("app", 2)
        kit.add("app", shas[0], kit.snapshot("s1.jsonl", 1), at=NOW)
        kit.worker.arrivals.arrived(NOW)
        assert kit.worker.loop(now=NOW).claimed == 1
        assert woken == [True], "busy in a batch: woken, so it looks again after it"
    hub.create_bucket(BUCKET)
    hub.fail_next(1, status=503, retry_after=0, paths=[f"/api/buckets/{BUCKET}/batch"])
    store = HfStore(BUCKET, hub.endpoint, "hf_alice_write")
    with worker_kit(tmp_path / "hf", store, STEADY) as kit:
        _, shas = kit.repo("app", 2)
        kit.add("app", shas[0], kit.snapshot("s1.jsonl", 1), at=NOW)
        kit.worker.arrivals.arrived(NOW)
        assert kit.worker.loop(now=NOW) == Tick(1, 0.0)
        assert kit.worker.loop(now=NOW + 1) == Tick(0, 59.0), "asleep until the backoff ends"
        kit.add("app", shas[1], kit.snapshot("s2.jsonl", 2), at=NOW + 5)
        assert kit.worker.arrivals.arrived(NOW + 5) is True, "a lone commit does not wait for a later turn"
