"""The client library's one exception base, so commands need no `except ...: fail()` of their own.

Library code raises; only `errors_table` (used by `cli.main`) turns an exception into a line on
stderr and an exit code. Kept free of imports (even `enum`, ~6 ms when site did not load it): the hook's fast path
imports it too. The exit codes are `output.ExitStatus`; the two used here are written as ints.
"""

from __future__ import annotations


class ClientError(Exception):
    """Base of every error the client library raises on purpose; the message is one readable line.

    `hint` is the next step for the user (printed on its own line), `exit_code` one of the
    documented codes in docs/cli.md.
    """

    exit_code: int = 1  # output.ExitStatus.ERROR
    hint: str | None = None

    def __init__(self, message: str = "", *, hint: str | None = None, exit_code: int | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(ClientError):
    """The command line itself is wrong (a missing -C directory, conflicting options): exit 2."""

    exit_code = 2  # output.ExitStatus.USAGE


class ClientWarning(UserWarning):
    """Something the user should know that does not stop the command (`warnings.warn` it):
    `runner.run` prints each as one `warning:` line on stderr, so library code never prints."""
