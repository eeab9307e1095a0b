"""`tracekeeper doctor`: print the checks of the library `doctor.py`, one line each."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..doctor import SYMBOLS, Context, Status, run
from .options import REPO_OPTION


@click.command("doctor", short_help="Check the whole setup and say how to fix what is wrong.")
@REPO_OPTION
@click.option("--json", "as_json", is_flag=True, help="One JSON object: ok, and every check.")
def doctor(repo: Path, as_json: bool) -> int:
    """Check the daemon, the store, this repository's hooks, agent hooks, notes refspecs,
    inotify limits, hf-traces-active.json and the spool; print one line per check.

    ✓ fine, ! degraded (does not fail), ✗ broken. Exits 1 when something is broken.

    \b
    Examples:
      $ tracekeeper doctor
      $ tracekeeper doctor --json | jq '.checks[] | select(.status != "ok")'
    """
    results = run(Context(repo.resolve()))
    ok = all(check.status is not Status.FAIL for _, check in results)
    if as_json:
        doc = {
            "ok": ok,
            "checks": [
                {"name": name, "status": str(c.status), "message": c.message, "fix": c.fix} for name, c in results
            ],
        }
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        # A check quotes transcript paths and session ids (the active file is an agent's
        # payload) and daemon answers: control characters spelled out (--json escapes them).
        from ..safetext import visible

        width = max(len(name) for name, _ in results)
        for name, check in results:
            fix = f" -> fix: {check.fix}" if check.fix and check.status is not Status.OK else ""
            click.echo(f"{SYMBOLS[check.status]} {name:<{width}}  {visible(check.message + fix)}")
        failed = sum(c.status is Status.FAIL for _, c in results)
        warned = sum(c.status is Status.WARN for _, c in results)
        click.echo(f"{failed} problem(s), {warned} warning(s)" if failed or warned else "all good")
    return 0 if ok else 1  # each problem was said above (or is in the JSON): no `Error:` line
