"""`tracekeeper redact FILE`: see what the daemon would remove from a transcript before trusting it.

Users hand tracekeeperd transcripts full of terminal output and pasted config; this command runs
the very redactor the daemon uses (built-ins plus the user's `[redaction]` rules and allow-list,
from the same `config.toml`) and reports where it would cut, so a rule that misses or over-reaches
shows up before anything is uploaded.

What it promises:

* The report names the rule and the position (``line:column``, 1-based; the column counts bytes),
  never the secret, not even a prefix: a report pasted into an issue must leak nothing.
* Findings are information, not an error: exit 0 whether or not anything was found. Exit 1 (one
  ``Error:`` line) when FILE cannot be read, the configuration or a user pattern is broken, or
  redaction fails closed (the reason is named); exit 2 on a bad flag.
* ``-o OUT`` writes the redacted copy atomically (a temporary file next to OUT, fsync, rename), mode
  0600 like the transcripts themselves; after a failure no OUT is left behind and an existing OUT
  is untouched. OUT may not be FILE itself (nor a link to it): redacting in place would destroy
  the only copy if anything went wrong. ``-o -`` writes the copy to stdout and the report to stderr;
  the copy is spooled to an anonymous temporary file first so that a pipe receives all of it or,
  after a failure, nothing.
* Streaming: the file is read in blocks of whole lines through `Redactor.redact_stream`, so memory
  stays flat however large the transcript is.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO

import click

from .errors import ClientError

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from tracekeeperd.redact import Redactor, Report

__all__ = ["redact"]


class RedactCommandError(ClientError):
    """FILE, -o or the configuration cannot be used; cli.main prints it as one `Error:` line."""


def _one_line(message: str) -> str:
    """An error promises one line; an engine's error text is not ours to trust on that."""
    return " ".join(part.strip() for part in message.splitlines() if part.strip()) or "unknown error"


def _redactor() -> Redactor:
    """The daemon's redactor for this user, or a one-line error naming what is wrong."""
    from tracekeeperd.config import load
    from tracekeeperd.errors import ConfigError
    from tracekeeperd.redact import RedactionError, from_settings

    try:
        config = load()
    except ConfigError as exc:
        raise RedactCommandError(_one_line(str(exc))) from exc
    try:
        # The daemon's own call (tracekeeperd/app.py), so `scrub_home = true` shows here as uploaded.
        return from_settings(config.redaction)
    except RedactionError as exc:
        raise RedactCommandError(_one_line(f"{config.paths.config_file}: {exc}")) from exc


def _open_input(path: Path) -> BinaryIO:
    """FILE as a binary stream; missing, unreadable or not a regular file is a one-line error.

    Opened non-blocking and checked with fstat, so a FIFO or device cannot hang the command.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except IsADirectoryError:
        raise RedactCommandError(f"{path} is a directory, not a transcript") from None
    except FileNotFoundError:
        raise RedactCommandError(f"{path} does not exist") from None
    except OSError as exc:
        raise RedactCommandError(f"cannot read {path}: {exc.strerror or exc}") from exc
    st = os.fstat(fd)
    if stat.S_ISDIR(st.st_mode):
        os.close(fd)
        raise RedactCommandError(f"{path} is a directory, not a transcript")
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise RedactCommandError(f"{path} is not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False  # OUT does not exist yet: it cannot be FILE


@contextmanager
def _atomic_output(target: Path) -> Iterator[BinaryIO]:
    """Yield a temporary file next to ``target``; rename it over ``target`` only on success.

    Any exception (a RedactionError, a full disk, Ctrl-C) removes the temporary file, so a
    half-redacted copy never appears under the name the user asked for.
    """
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise RedactCommandError(f"cannot write {target}: {exc.strerror or exc}") from exc
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def _stdout_output() -> Iterator[BinaryIO]:
    """Spool to an anonymous file, then copy to stdout: a pipe gets everything or nothing."""
    with tempfile.TemporaryFile(prefix="tracekeeper-redact-") as spool:
        yield spool
        spool.seek(0)
        try:
            shutil.copyfileobj(spool, sys.stdout.buffer, 1 << 20)
            sys.stdout.buffer.flush()
        except BrokenPipeError:
            # The reader went away (`| head`): not our error, and Python must not complain at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(1) from None


@contextmanager
def _discard() -> Iterator[BinaryIO]:
    with open(os.devnull, "wb") as sink:
        yield sink


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
    from tracekeeperd.redact import RedactionError

    redactor = _redactor()
    target: Path | None = None
    if output is not None and output != "-":
        target = Path(output)
        if _same_file(file, target):
            raise RedactCommandError(f"refusing to overwrite {file} with its redacted copy; choose another -o")
        if target.is_dir():
            raise RedactCommandError(f"{target} is a directory; -o needs a file name")
    with _open_input(file) as src:
        sink: AbstractContextManager[BinaryIO]
        if target is not None:
            sink = _atomic_output(target)
        elif output == "-":
            sink = _stdout_output()
        else:
            sink = _discard()
        try:
            with sink as dst:
                report = redactor.redact_stream(src, dst)
        except RedactionError as exc:
            raise RedactCommandError(_one_line(f"{file} not redacted: {exc}")) from exc
        except OSError as exc:
            raise RedactCommandError(_one_line(f"cannot write {target or output}: {exc.strerror or exc}")) from exc
    to_stderr = output == "-"
    if as_json:
        import json

        stream: IO[str] = sys.stderr if to_stderr else sys.stdout
        stream.write(json.dumps(_as_json(file, output, report, redactor.ruleset_id), indent=2) + "\n")
    else:
        _print_report(file, output, report, redactor.ruleset_id, to_stderr=to_stderr)
