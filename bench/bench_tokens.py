"""How long the worker spends on a commit's tokens: one 100 MB session, streamed and sliced.

Run: `.venv/bin/python bench/bench_tokens.py [--mb 100]`. Prints figures; no targets are asserted
here. The session is the real Codex fixture (`tests/fixtures`) repeated, each time followed by
fifty 20 KB tool outputs cut from this repository's source (text like a real tool's, not one
repeated character, which is the worst case of CPython's substring search for `"turn_context"`).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from tracekeeperd import tokens

ROOT = Path(__file__).resolve().parent.parent
CODEX = (
    ROOT
    / "tests/fixtures/codex/sessions/2026/02/23/rollout-2026-02-23T20-34-25-019c8bfe-ec25-79e0-97d7-bda6a9c575ff.jsonl"
)


def session(path: Path, megabytes: int) -> tuple[int, int]:
    """Write the session; returns (bytes, lines)."""
    head, *body_lines = CODEX.read_bytes().splitlines(keepends=True)
    body = b"".join(body_lines)
    text = "".join(p.read_text() for p in sorted((ROOT / "tracekeeperd").glob("*.py")))
    outputs = [
        json.dumps(
            {"type": "response_item", "payload": {"type": "function_call_output", "output": text[i : i + 20000]}}
        ).encode()
        + b"\n"
        for i in range(0, 50 * 997, 997)
    ]
    size, lines = len(head), 1
    with path.open("wb") as fh:
        fh.write(head)
        while size < megabytes * 1024 * 1024:
            fh.write(body)
            fh.writelines(outputs)
            size += len(body) + sum(map(len, outputs))
            lines += len(body_lines) + len(outputs)
    return size, lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tk-bench-tokens-") as tmp:
        path = Path(tmp) / "snapshot.jsonl"
        size, lines = session(path, args.mb)
        for name, first in (("whole session", 1), ("last tenth", lines - lines // 10)):
            tokens.CHECKPOINTS.clear()  # no checkpoint: read from line 1, as after a restart with none
            start = time.perf_counter()
            usage = tokens._resumed_usage(path, size, agent="codex", session_id="s", first=first, last=lines, root=None)
            took = time.perf_counter() - start
            total = usage.total() if usage else None
            print(
                f"{size / 1e6:.0f} MB, {lines} lines, {name}: {took:.2f} s ({total.input if total else 0} input tokens)"
            )
        # What the worker does for the next commit of a growing session: go on from the checkpoint
        # the previous commit's read left (tokens.Checkpoint), here in memory.
        cut = lines - lines // 10
        tokens.CHECKPOINTS.clear()
        tokens._resumed_usage(path, size, agent="codex", session_id="s", first=1, last=cut - 1, root=None)
        start = time.perf_counter()
        usage = tokens._resumed_usage(path, size, agent="codex", session_id="s", first=cut, last=lines, root=None)
        took = time.perf_counter() - start
        total = usage.total() if usage else None
        print(
            f"{size / 1e6:.0f} MB, last tenth resumed from the previous slice's checkpoint: {took:.2f} s"
            f" ({total.input if total else 0} input tokens)"
        )


if __name__ == "__main__":
    main()
