"""hf_xet in the daemon runs with the bounds on its upload buffers (tracekeeperd.stores.hf.XET_MEMORY_BOUNDS).

Proved by hf_xet's own word: it logs, to its log directory ($HF_HOME/xet/logs/xet_<time>_<pid>.log,
JSON lines, INFO by default), the limits it actually uses, as it builds them:
- huggingface/xet-core xet_client/src/cas_client/adaptive_concurrency/controller.rs
  `AdaptiveConcurrencyController::new`: "Initializing Adaptive Concurrency Controller for <tag> with
  starting concurrency = N; min = N, max = N, ...", once per upload;
- xet_runtime/src/core/runtime/native.rs `get_num_tokio_worker_threads`: "Using N async threads from
  TOKIO_WORKER_THREADS" when the variable decided, "Using N async threads for tokio runtime" when
  the core count did (so the first proves the variable reached hf_xet even where both say 2).

Mocked: only the Hub's REST API and its xet CAS (tests/hubstub.py, served over HTTP on 127.0.0.1);
the transfer is the real hf_xet RemoteClient, the code a user's upload runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracekeeperd.stores.hf import HUB_ENVIRONMENT, XET_MEMORY_BOUNDS

from .harness import Env, running_daemon, session_repo
from .hubstub import HubStub, running_hub

BUCKET = "alice/agent-traces"
TOKEN = "hf_alice_write"
CONTROLLER = re.compile(
    r"Concurrency Controller for \w*upload\w* with starting concurrency = (\d+); min = (\d+), max = (\d+)"
)
WORKERS = re.compile(r"Using (\d+) async threads (from TOKIO_WORKER_THREADS|for tokio runtime)")


@pytest.fixture
def hub(env: Env) -> Iterator[HubStub]:
    with running_hub(env.root / "cas") as stub:
        stub.create_bucket(BUCKET)
        env.vars.update(HF_ENDPOINT=stub.endpoint, HF_TOKEN=TOKEN, HF_TRACE_BUCKET=BUCKET)
        for key in XET_MEMORY_BOUNDS:
            env.vars.pop(key, None)  # a user's machine has none of them
        yield stub


def _xet_log(env: Env, pid: int) -> list[str]:
    """The messages hf_xet logged in the process `pid` (its log file is named after the pid)."""
    logs = sorted(Path(env.vars["HF_HOME"], "xet", "logs").glob(f"xet_*_{pid}.log"))
    assert logs, f"hf_xet wrote no log for the daemon (pid {pid})"
    messages = []
    for path in logs:
        for line in path.read_text().splitlines():
            if line.startswith("{"):
                messages.append(str(json.loads(line).get("fields", {}).get("message", "")))
    return messages


def _upload_once(env: Env) -> list[str]:
    """One noted commit through the daemon; then what hf_xet in that daemon logged."""
    repo = session_repo(env, 200, "app")[0]
    with running_daemon(env) as daemon:
        assert daemon.proc is not None
        repo.commit_noted("x")
        pid = daemon.proc.pid
    return _xet_log(env, pid)


def _limits(messages: list[str]) -> tuple[list[tuple[int, int, int]], list[tuple[int, str]]]:
    """(start, min, max) of every upload concurrency controller; (count, decided by) of the runtime."""
    controllers: list[tuple[int, int, int]] = []
    workers: list[tuple[int, str]] = []
    for message in messages:
        if found := CONTROLLER.search(message):
            start, low, high = (int(group) for group in found.groups())
            controllers.append((start, low, high))
        elif found := WORKERS.search(message):
            workers.append((int(found.group(1)), found.group(2)))
    return controllers, workers


def test_hf_xet_in_the_daemon_uploads_with_the_bounds_set_before_it_started(env: Env, hub: HubStub) -> None:
    controllers, workers = _limits(_upload_once(env))
    bound = int(HUB_ENVIRONMENT["HF_XET_CLIENT_AC_MAX_UPLOAD_CONCURRENCY"])
    assert controllers, "hf_xet logged no upload concurrency controller: did the upload run in the daemon?"
    assert {maximum for _, _, maximum in controllers} == {bound}
    assert all(start <= bound for start, _, _ in controllers)
    assert workers == [(int(HUB_ENVIRONMENT["TOKIO_WORKER_THREADS"]), "from TOKIO_WORKER_THREADS")]


def test_a_users_own_xet_settings_win_over_the_daemons_bounds(env: Env, hub: HubStub) -> None:
    env.vars.update(HF_XET_CLIENT_AC_MAX_UPLOAD_CONCURRENCY="5", TOKIO_WORKER_THREADS="3")
    controllers, workers = _limits(_upload_once(env))
    assert controllers, "hf_xet logged no upload concurrency controller: did the upload run in the daemon?"
    assert {maximum for _, _, maximum in controllers} == {5}
    assert workers == [(3, "from TOKIO_WORKER_THREADS")]
