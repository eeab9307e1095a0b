"""`tracekeeper redact FILE`: print what the library `redact_file.py` found (rule and position,
never the secret)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from ..redact_file import redact_file

if TYPE_CHECKING:
    from tracekeeperd.redact import Report


def _as_json(file: Path, output: str | None, report: Report, ruleset: str) -> dict[str, Any]:
    return {
        "file": str(file),
        "output": output,
        "lines": report.lines,
        "bytes_in": report.bytes_in,
        "bytes_out": report.bytes_out,
        "counts": dict(sorted(report.counts.items())),
        "total": report.total,
        "findings": [{"rule": f.rule, "line": f.line, "column": f.column} for f in report.findings],
        "ruleset": ruleset,
    }


def _print_report(file: Path, output: str | None, report: Report, ruleset: str, *, to_stderr: bool) -> None:
    """Compiler-style ``FILE:LINE:COL: rule`` lines (editors jump to them), then the counts.

    Rich colours it on a terminal and prints plain text otherwise; nothing here comes from the
    transcript's content, only rule ids, numbers and the file name (escaped as markup).
    """
    from rich.console import Console
    from rich.markup import escape

    # emoji=False: rich would turn ":100:" of "FILE:100:12" into an emoji.
    out = Console(stderr=to_stderr, highlight=False, soft_wrap=True, emoji=False)
    name = escape(str(file))
    for finding in report.findings:
        out.print(f"{name}:{finding.line}:{finding.column}: [yellow]{finding.rule}[/]")
    size = f"{report.lines} lines, {report.bytes_in} bytes, ruleset {ruleset}"
    if not report.total:
        out.print(f"[green]nothing to redact[/] in {name} ({size})")
    else:
        width = max(len(rule) for rule in report.counts)
        if report.findings:
            out.print()
        for rule, count in sorted(report.counts.items()):
            out.print(f"  {rule:<{width}}  {count:>6}")
        plural = "" if report.total == 1 else "s"
        out.print(f"[bold]{report.total} secret{plural}[/] would be redacted in {name} ({size})")
    if output == "-":
        out.print(f"redacted copy written to stdout ({report.bytes_out} bytes)")
    elif output is not None:
        out.print(f"redacted copy written to {escape(output)} ({report.bytes_out} bytes)")


@click.command(short_help="Show what redaction would remove from a transcript.")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    metavar="OUT",
    help="Also write the redacted copy to OUT (atomically); '-' for stdout, the report then goes to stderr.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object: counts, findings, ruleset.")
def redact(file: Path, output: str | None, as_json: bool) -> None:
    """Report the secrets the daemon would redact from FILE, without showing them.

    Uses the built-in rules plus the `[redaction]` rules and allow-list of your config.toml,
    exactly as tracekeeperd does before an upload. Each finding is printed as FILE:LINE:COLUMN
    and the rule that matched; the secret itself is never printed.

    Exit status: 0 whether or not secrets were found (findings are information), 1 if FILE
    cannot be read, the configuration is broken or redaction fails (nothing is written then).

    \b
    Examples:
      $ tracekeeper redact ~/.codex/sessions/2026/11/25/rollout-….jsonl
      $ tracekeeper redact session.jsonl -o session.redacted.jsonl
      $ tracekeeper redact session.jsonl -o - | jq -c .message
      $ tracekeeper redact session.jsonl --json | jq .counts
    """
    report, ruleset = redact_file(file, output, sys.stdout.buffer)
    to_stderr = output == "-"
    if as_json:
        import json

        stream: IO[str] = sys.stderr if to_stderr else sys.stdout
        stream.write(json.dumps(_as_json(file, output, report, ruleset), indent=2) + "\n")
    else:
        _print_report(file, output, report, ruleset, to_stderr=to_stderr)
