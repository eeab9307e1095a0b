"""A job's token usage for its note: the commit's slice of its snapshot, streamed line by line.

Read from the raw snapshot, not from the redacted copy that was uploaded: token counts are no
secret, but redaction may rewrite the ids that tell one response written over several lines
from a new one (Claude's message ids, Gemini's and pi's entry ids), and then a response would be
charged twice or not at all. The snapshot is streamed a chunk at a time and only lines that name
a usage key are decoded (agents/usage.py), so a 100 MB session the worker has just redacted is
never held in memory a second time. The answer depends only on the snapshot's first `bytes`
bytes, which never change (snapshots only grow; a rewritten transcript starts a new file), so it
is kept per (snapshot, bytes, range): a rebase that noted 50 commits of one session with the
same range reads it once.

The counts are no secret, but the model names are transcript text that the note carries to every
remote: they are redacted with the rules the uploaded copy was redacted with (`redacted_names`).

Gemini's legacy `.json` session is one document rewritten whole; each version's range is the
whole document (snapshot.py), so its usage is the whole document's, read as pseudo-lines
(`gemini.legacy_json_lines`).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from .agents import DETECT_LINES, format_for
from .agents.gemini import legacy_json_lines
from .agents.reading import READ_CHUNK, LineReader
from .agents.usage import UNKNOWN_MODEL, ModelUsage, Usage, slice_usage
from .errors import PermanentError
from .queue import Job
from .redact import RedactionError, Redactor
from .snapshot import is_document, read_prefix

log = logging.getLogger(__name__)


def numbered_lines(path: Path, size: int, chunk: int = READ_CHUNK) -> Iterator[tuple[int, bytes]]:
    """The complete lines of the first `size` bytes of `path`, numbered from 1 like
    `agents.split_lines`, so line `n` here is line `n` of the note's range."""
    with path.open("rb") as fh:
        yield from LineReader(fh, 0, size, 1, chunk)


@lru_cache(maxsize=64)
def _slice_usage(
    snapshot: str, size: int, *, agent: str, session_id: str, document: bool, first: int, last: int
) -> Usage | None:
    path = Path(snapshot)
    if document:
        pseudo = legacy_json_lines(read_prefix(path, size))
        fmt = format_for(agent, session_id, pseudo, ".json")
        return None if fmt is None else slice_usage(fmt, enumerate(pseudo, start=1))
    lines = numbered_lines(path, size)
    head = list(itertools.islice(lines, DETECT_LINES))
    fmt = format_for(agent, session_id, [line for _, line in head])
    if fmt is None:
        return None
    return slice_usage(fmt, itertools.chain(head, lines), start=first, end=last)


def redacted_names(usage: Usage, redactor: Redactor) -> Usage:
    """``usage`` with each model name as the redacted copy would have it; a name the redactor
    cannot finish with is not sent (fail closed, like the copy): it counts as an unknown model."""
    renamed: dict[str, ModelUsage] = {}
    for name, counts in usage.models:
        try:
            out = redactor.redact_bytes(name.encode())[0].decode(errors="replace")
        except RedactionError:
            out = UNKNOWN_MODEL
        renamed[out] = renamed[out] + counts if out in renamed else counts
    return Usage.of(renamed)


def job_usage(job: Job, redactor: Redactor) -> Usage | None:
    """Tokens per model the job's commit spent (its lines first..last), or None when unknown:
    the agent records no usage, the slice holds no usage record, or the snapshot cannot be read
    now (then the note says unknown rather than holding back a link that is already uploaded).
    Model names are redacted by ``redactor``: the note leaves the machine."""
    if not job.snapshot or job.bytes is None:
        return None
    document = is_document(Path(job.transcript or ""))
    try:
        usage = _slice_usage(
            job.snapshot,
            job.bytes,
            agent=job.agent,
            session_id=job.session_id,
            document=document,
            first=job.first_line or 1,
            last=job.last_line or 0,
        )
    except (OSError, PermanentError) as exc:  # not cached: lru_cache keeps only answers
        log.warning("token usage of %s/%s unknown: %s", job.agent, job.session_id, exc)
        return None
    return None if usage is None else redacted_names(usage, redactor)
