"""Turning a transcript file into complete lines, whatever its container.

Three containers exist: plain ``.jsonl`` (being appended to while we read),
``.jsonl.zst`` (Codex compresses old rollouts) and Gemini's legacy whole-file
``.json`` (exposed as pseudo-lines, see ``gemini.legacy_json_lines``).
"""

from __future__ import annotations

import io
from pathlib import Path

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
