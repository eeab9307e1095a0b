"""What `tracekeeper redact FILE` does (cli/redact.py prints it): the daemon's redactor run over a file.

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
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from .errors import ClientError

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from tracekeeperd.redact import Redactor, Report

__all__ = ["RedactCommandError", "redact_file"]


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
def _spooled_output(out: BinaryIO) -> Iterator[BinaryIO]:
    """Spool to an anonymous file, then copy to `out` (stdout): a pipe gets everything or nothing."""
    with tempfile.TemporaryFile(prefix="tracekeeper-redact-") as spool:
        yield spool
        spool.seek(0)
        # A reader that went away (`| head`) raises BrokenPipeError, which runner.run handles.
        shutil.copyfileobj(spool, out, 1 << 20)
        out.flush()


@contextmanager
def _discard() -> Iterator[BinaryIO]:
    with open(os.devnull, "wb") as sink:
        yield sink


def redact_file(file: Path, output: str | None, stdout: BinaryIO | None = None) -> tuple[Report, str]:
    """Redact FILE as the daemon would; the report and the ruleset id.

    With OUT (`output`) a path, the redacted copy is written there atomically; with "-", to
    `stdout` (spooled first, so a pipe gets all or nothing); with None, nowhere.
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
            if stdout is None:
                raise RedactCommandError("-o - needs a stream to write the copy to")
            sink = _spooled_output(stdout)
        else:
            sink = _discard()
        try:
            with sink as dst:
                report = redactor.redact_stream(src, dst)
        except BrokenPipeError:
            raise  # the reader of `-o -` went away: runner.run's business, not a write error
        except RedactionError as exc:
            raise RedactCommandError(_one_line(f"{file} not redacted: {exc}")) from exc
        except OSError as exc:
            raise RedactCommandError(_one_line(f"cannot write {target or output}: {exc.strerror or exc}")) from exc
    return report, redactor.ruleset_id
