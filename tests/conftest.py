from __future__ import annotations

from collections.abc import Iterator

import pytest

from .harness import Env, make_env


@pytest.fixture
def env() -> Iterator[Env]:
    yield from make_env()
