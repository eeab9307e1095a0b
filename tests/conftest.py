from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import Env, make_env


@pytest.fixture
def env() -> Iterator[Env]:
    yield from make_env()


@pytest.fixture
def configured_store(env: Env, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`env.root / "store"`, where tests/test_why_lib.py's notes point, configured as this
    machine's local store: a note's `file://` URL is read only inside the configured store.
    Set for the CLI and daemon (`env.vars`) and for library calls made in this process."""
    store = env.root / "store"
    monkeypatch.setenv("TRACEKEEPER_STORE", store.as_uri())
    env.vars["TRACEKEEPER_STORE"] = store.as_uri()
    return store
