"""Typed failures. Each carries what a user needs to act, so the worker can store a one-line reason."""

from __future__ import annotations


class TracekeeperError(Exception):
    """Base class: the message is one line a user can read in `tracekeeper status`."""


class ConfigError(TracekeeperError):
    """The configuration or environment is unusable; the daemon refuses to start."""


class AlreadyRunning(TracekeeperError):
    """Another tracekeeperd owns the lock or answers on the socket."""


class UnsafeRuntimeDir(TracekeeperError):
    """The socket directory could be hijacked (wrong owner, loose mode, symlink)."""


class TransientError(TracekeeperError):
    """Worth retrying later: network down, timeouts, 5xx, 429, a locked notes ref."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(TracekeeperError):
    """Retrying cannot help until a human acts (bad token, public bucket, missing transcript)."""


class ActiveFileError(TracekeeperError):
    """hf-traces-active.json exists but cannot be understood."""


class GitError(TracekeeperError):
    """A git command failed; `returncode` and `stderr` say how."""

    def __init__(self, message: str, returncode: int, stderr: str) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr
