"""Text from transcripts and notes, made safe to print on a terminal.

A transcript holds whatever a model, a tool or a web page put in it, and a note comes from
whoever pushed it: both are hostile input. Printed as they are, their control characters act on
the terminal: `ESC ] 52 ; c ; …` writes the clipboard (OSC 52), `ESC ] 0 ; …` sets the window
title, `ESC [ 2 J` clears the screen, a lone CR overwrites what came before, and the bidi
overrides reorder what the reader sees (Trojan Source). So every renderer that shows such text
(`show`, `log`, and every note and error line: `output.info`, `output.warn`, `errors_table.report`)
passes it through `visible`, which spells those characters out instead; `--raw`
and `--json` do not need it (bytes for a program; JSON escapes them).
"""

from __future__ import annotations

import re

#: C0 controls, DEL, C1 controls (U+0080-U+009F: 8-bit CSI, OSC, ... that some terminals obey),
#: and the bidi embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
#: The same, but newline and tab keep their meaning (multi-line text such as a message).
_UNSAFE_MULTILINE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _spell(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def visible(text: str, *, multiline: bool = False) -> str:
    """`text` with every character a terminal would act on written as an escape (`\\x1b`,
    `\\u202e`, `\\r`); `multiline` keeps newlines and tabs. Everything else is unchanged."""
    return (_UNSAFE_MULTILINE if multiline else _UNSAFE).sub(_spell, text)


def markup(text: str, *, multiline: bool = False) -> str:
    """`visible(text)` for a rich markup string: `[red]` in the text stays literal text."""
    from rich.markup import escape

    return escape(visible(text, multiline=multiline))
