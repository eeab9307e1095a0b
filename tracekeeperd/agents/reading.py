"""Turning a transcript file into complete lines, whatever its container.

Three containers exist: plain ``.jsonl`` (being appended to while we read),
``.jsonl.zst`` (Codex compresses old rollouts) and Gemini's legacy whole-file
``.json`` (exposed as pseudo-lines, see ``gemini.legacy_json_lines``).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .gemini import legacy_json_lines


class UnreadableTranscript(ValueError):
    """The file's container is corrupt (not its lines: bad lines are skipped, not raised)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def split_lines(data: bytes) -> tuple[list[bytes], int]:
    """Split bytes into complete lines and report how many bytes those lines used.

    A line counts only once its newline is written: agents append one record per
    write, so bytes after the last newline are a record still being written (or
    a crash remnant) and must not be read, numbered or uploaded yet. The byte
    count lets a caller resume from that offset when the file grows. A trailing
    ``\\r`` is dropped; blank lines are kept so numbering matches ``sed -n Np``.
    """
    end = data.rfind(b"\n")
    if end < 0:
        return [], 0
    lines = [line.removesuffix(b"\r") for line in data[:end].split(b"\n")]
    return lines, end + 1


#: Bytes a `LineReader` reads at a time: its memory, beside the longest line it has to gather.
READ_CHUNK = 1 << 20


class LineReader:
    """The complete lines of ``source`` from byte ``offset`` up to byte ``size``, numbered from
    ``number`` like `split_lines` (a trailing CR dropped, blank lines kept, bytes after the last
    newline not a line yet), read ``chunk`` bytes at a time. ``offset`` is always where the next
    unread line starts, so a caller can stop and later resume there.

    For files far larger than memory (a session's snapshot or redacted copy): each chunk is
    scanned in place, never re-sliced per line, and a line longer than a chunk is gathered once.
    """

    def __init__(self, source: BinaryIO, offset: int, size: int, number: int = 1, chunk: int = READ_CHUNK) -> None:
        self.source, self.offset, self.size, self.number, self.chunk = source, offset, size, number, chunk
        self._block = b""
        self._pos = 0
        self._pending: list[bytes] = []  # the start of a line longer than what was read so far
        self._read_to = offset
        source.seek(offset)

    def next(self) -> tuple[int, bytes] | None:
        """The next complete line as (number, bytes), or None when only an incomplete one is left."""
        while True:
            cut = self._block.find(b"\n", self._pos)
            if cut >= 0:
                line = self._block[self._pos : cut]
                if self._pending:
                    line = b"".join([*self._pending, line])
                    self._pending = []
                self._pos = cut + 1
                self.offset += len(line) + 1
                self.number += 1
                return self.number - 1, line.removesuffix(b"\r")
            if self._read_to >= self.size:
                return None
            chunk = self.source.read(min(self.chunk, self.size - self._read_to))
            if not chunk:
                return None
            if self._pos < len(self._block):
                self._pending.append(self._block[self._pos :])
            self._read_to += len(chunk)
            self._block, self._pos = chunk, 0

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        while (item := self.next()) is not None:
            yield item


def _decompress_zst(path: Path, data: bytes) -> bytes:
    import zstandard

    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
    try:
        with reader:
            return reader.read()
    except zstandard.ZstdError as error:
        raise UnreadableTranscript(path, f"zstd: {error}") from error


def read_lines(path: Path) -> list[bytes]:
    """The complete lines of a transcript; line ``n`` is ``read_lines(path)[n - 1]``.

    ``.zst`` files are decompressed (all frames). ``.json`` files are Gemini's
    legacy sessions and become pseudo-lines: metadata first, then one per message.
    Raises ``OSError`` if the file cannot be read and ``UnreadableTranscript`` if a
    ``.zst`` container is corrupt; never raises for bad lines.
    """
    data = path.read_bytes()
    name = path.name
    if name.endswith(".zst"):
        data = _decompress_zst(path, data)
        name = name.removesuffix(".zst")
    if name.endswith(".json"):
        return legacy_json_lines(data)
    return split_lines(data)[0]
