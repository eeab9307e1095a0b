"""The docs promise things and name the tests that hold them: those tests must exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_test_named_in_the_guarantees_exists() -> None:
    text = (ROOT / "docs" / "guarantees.md").read_text()
    named = re.findall(r"`(test_\w+)::(test_\w+)`", text)
    assert len(named) >= 30  # the page is a table of promises and their tests
    missing = [
        f"{module}::{name}"
        for module, name in named
        if not re.search(rf"^def {name}\(", (ROOT / "tests" / f"{module}.py").read_text(), re.M)
    ]
    assert missing == []
