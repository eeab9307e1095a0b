"""What leaves the machine: a snapshot prefix after redaction, with per-line offsets.

Redaction runs on every byte before any upload (fail closed: if it cannot complete, nothing is
sent). It keeps lines one-to-one, so each commit's view of the session is a prefix of the
redacted session ending at its last line: the note can then give the redacted prefix's length
and sha256, which anyone can verify against the uploaded object. A growing session is redacted
incrementally: only lines appended since the last upload are scanned.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

from .redact import Finding, RedactionError, Redactor


@dataclass
class Outgoing:
    """The redacted bytes of the first `raw_bytes` bytes of a snapshot."""

    raw_bytes: int
    data: bytearray = field(default_factory=bytearray)
    #: data offset just after line k is line_ends[k - 1]
    line_ends: list[int] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def prefix(self, lines: int) -> tuple[int, str]:
        """(length, sha256) of the redacted prefix made of the first `lines` lines."""
        end = self.line_ends[lines - 1] if lines > 0 else 0
        return end, hashlib.sha256(memoryview(self.data)[:end]).hexdigest()

    def counts(self, first: int, last: int) -> dict[str, int]:
        """Secrets removed from lines first..last, per rule."""
        return dict(sorted(Counter(f.rule for f in self.findings if first <= f.line <= last).items()))


def _line_ends(data: bytes | bytearray, start: int, base: int) -> list[int]:
    ends = []
    pos = data.find(b"\n", start)
    while pos >= 0:
        ends.append(base + pos + 1)
        pos = data.find(b"\n", pos + 1)
    return ends


def extend(previous: Outgoing | None, raw: bytes, redactor: Redactor) -> Outgoing:
    """Redact `raw` (complete lines), reusing `previous` when raw only appends to it."""
    if previous is not None and previous.raw_bytes <= len(raw):
        out, tail = previous, raw[previous.raw_bytes :]
    else:
        out, tail = Outgoing(raw_bytes=0), raw
    redacted, report = redactor.redact_bytes(tail)
    if redacted.count(b"\n") != tail.count(b"\n"):
        raise RedactionError("redaction changed the number of lines; refusing to upload")
    offset_lines = len(out.line_ends)
    new_ends = _line_ends(redacted, 0, len(out.data))
    return Outgoing(
        raw_bytes=len(raw),
        data=out.data + redacted,
        line_ends=out.line_ends + new_ends,
        findings=out.findings
        + [Finding(rule=f.rule, line=f.line + offset_lines, column=f.column) for f in report.findings],
    )
