"""The daemon's wire contract: the only daemon module the CLI imports.

Stdlib only. The API is HTTP/JSON over a Unix socket, versioned under `/v1/`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypedDict

API_PREFIX = "/v1"
#: Request bodies above this are refused with 413; a commit notification is a few hundred bytes.
MAX_BODY = 64 * 1024


class JobState(StrEnum):
    PENDING = "pending"
    UPLOADING = "uploading"
    DONE = "done"
    FAILED = "failed"


class JobView(TypedDict):
    id: int
    repo: str
    commit: str
    agent: str
    session_id: str
    state: str
    attempts: int
    next_attempt_at: float | None
    last_error: str | None
    url: str | None
    created_at: float
    updated_at: float
    lines: list[int] | None
    bytes: int | None
    #: {"counts": {rule: n}, "ruleset": id} once uploaded (redaction ran), else None.
    redactions: dict[str, object] | None


def error_body(message: str, **extra: Any) -> dict[str, Any]:
    """Every error answer has the same shape so the CLI can print it as one line."""
    return {"error": message, **extra}
