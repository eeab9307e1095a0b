"""JSON with comments, as Gemini CLI reads its settings.json: parse it, and edit it in place.

Gemini CLI accepts `//` and `/* */` comments in settings.json: it blanks them with
strip-json-comments and then runs `JSON.parse`, so nothing else is relaxed (no trailing commas)
(google-gemini/gemini-cli packages/cli/src/config/settings.ts). `strip_comments` does the same,
replacing each comment by spaces so every other character keeps its offset (byte for byte
what strip-json-comments 3.1.1, the version gemini-cli pins in packages/cli/package.json, gives:
tests/test_agent_setup.py runs its test.js cases).

Gemini itself rewrites the file with comment-json, keeping the user's comments. Re-serialising a
parsed document would drop them, so `edit` changes the text only where the document changed:
it parses the comment-free copy with offsets and splices new JSON into the original text (a
member added at the end of an object, an element appended to a list, a member or element
deleted with its line, a value replaced). Comments outside what changed stay where they were.
It reports whether a replaced span held a comment, which the caller must then say.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_WS = " \t\n\r"


def _blank(comment: str) -> str:
    """strip-json-comments' `stripWithWhitespace`: every character but space, tab, CR and LF
    becomes a space (sindresorhus/strip-json-comments index.js; v3.1.1 is what gemini-cli pins)."""
    return re.sub(r"[^ \t\r\n]", " ", comment)


def strip_comments(text: str) -> str:
    """`text` with every comment outside strings replaced by spaces (newlines kept)."""
    out: list[str] = []
    i, n = 0, len(text)
    in_string = False
    while i < n:
        char = text[i]
        if in_string:
            out.append(char)
            if char == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if char == '"':
                in_string = False
            i += 1
        elif char == '"':
            in_string = True
            out.append(char)
            i += 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end - (text[end - 1] == "\r")  # ends before "\n" or "\r\n"
            out.append(_blank(text[i:end]))
            i = end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2  # unterminated: blank the rest, JSON then fails to parse
            out.append(_blank(text[i:end]))
            i = end
        else:
            out.append(char)
            i += 1
    return "".join(out)


def has_comments(text: str) -> bool:
    return strip_comments(text) != text


def loads(text: str) -> Any:
    """Parse JSON with comments; raises json.JSONDecodeError like json.loads."""
    return json.loads(strip_comments(text))


# --- a JSON parser that keeps offsets --------------------------------------------------------


@dataclass
class Node:
    start: int
    end: int  # exclusive
    kind: str  # "object", "array" or "scalar"
    #: object: (key, key offset, value); array: (None, element offset, value)
    children: list[tuple[str | None, int, Node]] = field(default_factory=list)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.decoder = json.JSONDecoder()

    def skip(self, i: int) -> int:
        while i < len(self.text) and self.text[i] in _WS:
            i += 1
        return i

    def value(self, i: int) -> Node:
        i = self.skip(i)
        char = self.text[i : i + 1]
        if char == "{":
            return self.container(i, "object", "}")
        if char == "[":
            return self.container(i, "array", "]")
        _, end = self.decoder.raw_decode(self.text, i)
        return Node(i, end, "scalar")

    def container(self, start: int, kind: str, close: str) -> Node:
        node = Node(start, start, kind)
        i = self.skip(start + 1)
        if self.text[i : i + 1] == close:
            node.end = i + 1
            return node
        while True:
            i = self.skip(i)
            key: str | None = None
            at = i
            if kind == "object":
                key, i = self.decoder.raw_decode(self.text, i)
                i = self.skip(i)
                if self.text[i : i + 1] != ":":
                    raise ValueError(f"expected ':' at offset {i}")
                i += 1
            child = self.value(i)
            node.children.append((key, at, child))
            i = self.skip(child.end)
            if self.text[i : i + 1] == ",":
                i += 1
            elif self.text[i : i + 1] == close:
                node.end = i + 1
                return node
            else:
                raise ValueError(f"expected ',' or {close!r} at offset {i}")


# --- editing ----------------------------------------------------------------------------------


@dataclass
class Edited:
    text: str
    lost_comments: bool  # a replaced span held comments (the edit could not keep them)


class _Editor:
    def __init__(self, text: str, indent: int | str | None, separators: tuple[str, str] | None) -> None:
        self.text = text
        self.plain = strip_comments(text)
        self.unit = " " * indent if isinstance(indent, int) else (indent or "")
        self.multiline = indent is not None
        self.separators = separators or (", ", ": ")
        self.edits: list[tuple[int, int, str]] = []
        self.lost = False

    def line_indent(self, offset: int) -> str:
        line_start = self.text.rfind("\n", 0, offset) + 1
        return re.match(r"[ \t]*", self.text[line_start:offset]).group()  # type: ignore[union-attr]

    def dump(self, value: Any, indent: str) -> str:
        if not self.multiline:
            return json.dumps(value, ensure_ascii=False, separators=self.separators)
        return json.dumps(value, indent=self.unit, ensure_ascii=False).replace("\n", "\n" + indent)

    def replace(self, node: Node, new: Any) -> None:
        if self.plain[node.start : node.end] != self.text[node.start : node.end]:
            self.lost = True
        self.edits.append((node.start, node.end, self.dump(new, self.line_indent(node.start))))

    def change(self, node: Node, old: Any, new: Any) -> None:
        """Edits turning the text of `node` (which parses to `old`) into text for `new`."""
        if old == new and type(old) is type(new):
            return
        if node.kind == "object" and isinstance(old, dict) and isinstance(new, dict) and len(node.children) == len(old):
            kept = [k for k in old if k in new]
            if kept and kept == [k for k in new if k in old]:
                gone = [i for i, (key, _, _) in enumerate(node.children) if key not in new]
                for key, _, child in node.children:
                    if key in new:
                        self.change(child, old[key], new[key])
                added = [(k, v) for k, v in new.items() if k not in old]
                keys = [json.dumps(k, ensure_ascii=False) + self.separators[1] for k, _ in added]
                self.append(node, keys, [v for _, v in added])
                self.delete(node, gone)
                return
        if node.kind == "array" and isinstance(old, list) and isinstance(new, list) and old and new:
            if len(new) >= len(old) and new[: len(old)] == old:
                self.append(node, [""] * (len(new) - len(old)), new[len(old) :])
                return
            if len(new) == len(old):
                for (_, _, child), o, v in zip(node.children, old, new, strict=True):
                    self.change(child, o, v)
                return
            dropped = self._dropped(old, new)
            if dropped is not None:
                self.delete(node, dropped)
                return
        self.replace(node, new)

    @staticmethod
    def _dropped(old: list[Any], new: list[Any]) -> list[int] | None:
        """Indices of `old` to delete to get `new`, if `new` is `old` with some items left out."""
        gone: list[int] = []
        j = 0
        for i, item in enumerate(old):
            if j < len(new) and item == new[j]:
                j += 1
            else:
                gone.append(i)
        return gone if j == len(new) else None

    def append(self, node: Node, prefixes: list[str], values: list[Any]) -> None:
        """New members (prefix `"key": `) or elements after the container's last child."""
        if not values:
            return
        _, last_at, last = node.children[-1]
        indent = self.line_indent(last_at)
        items = [prefix + self.dump(value, indent) for prefix, value in zip(prefixes, values, strict=True)]
        if not self.multiline:
            sep = self.separators[0]
            self.edits.append((last.end, last.end, sep + sep.join(items)))
            return
        line_end = self.plain.find("\n", last.end)
        if line_end >= 0 and self.plain[last.end : line_end].strip() == "":
            # The rest of the last child's line (a comment about it) stays on its line.
            self.edits.append((last.end, last.end, ","))
            rest = ",\n".join(indent + item for item in items)
            self.edits.append((line_end, line_end, "\n" + rest))
            return
        self.edits.append((last.end, last.end, "".join(",\n" + indent + item for item in items)))

    def delete(self, node: Node, gone: list[int]) -> None:
        """Remove these children with their commas; one that has its line(s) to itself takes them
        along, with a comment after its comma (which was about it)."""
        if not gone:
            return
        children = node.children
        kept = [i for i in range(len(children)) if i not in gone]
        if not kept:
            raise ValueError("every child removed")  # change() replaces the container instead
        last_kept = kept[-1]
        for index in gone:
            _, at, child = children[index]
            if index > last_kept:
                continue
            comma = self.plain.index(",", child.end)
            end = comma + 1
            line_end = self.plain.find("\n", end)
            if line_end >= 0 and self.plain[end:line_end].strip() == "":
                end = line_end + 1
            line_start = self.text.rfind("\n", 0, at) + 1
            if self.text[line_start:at].strip(" \t") == "":
                start = line_start
            else:  # shares its line: take the blanks after the comma too
                start = at
                while end < len(self.text) and self.text[end] in " \t":
                    end += 1
            self.edits.append((start, end, ""))
        trailing = [i for i in gone if i > last_kept]
        if trailing:
            # The last kept child loses its comma; the removed ones go with their lines, so a
            # comment after that comma stays on the kept child's line.
            kept_end, first_at = children[last_kept][2].end, children[trailing[0]][1]
            last_end = children[trailing[-1]][2].end
            comma = self.plain.index(",", kept_end)
            line_start = self.text.rfind("\n", 0, first_at) + 1
            if self.multiline and line_start > comma and self.text[line_start:first_at].strip(" \t") == "":
                self.edits.append((comma, comma + 1, ""))
                self.edits.append((line_start - 1, last_end, ""))
            else:
                if self.plain[kept_end:first_at] != self.text[kept_end:first_at]:
                    self.lost = True
                self.edits.append((kept_end, last_end, ""))


def edit(text: str, old: Any, new: Any, indent: int | str | None, separators: tuple[str, str] | None = None) -> Edited:
    """`text` (which parses to `old`) changed so that it parses to `new`, keeping its comments
    and layout outside the parts that changed."""
    editor = _Editor(text, indent, separators)
    root = _Parser(editor.plain).value(0)
    editor.change(root, old, new)
    out = text
    # Back to front, so offsets stay valid; at one offset the edit made last goes in first, which
    # leaves the edits in the order they were made.
    order = sorted(range(len(editor.edits)), key=lambda i: (editor.edits[i][0], editor.edits[i][1], i), reverse=True)
    for start, end, replacement in (editor.edits[i] for i in order):
        out = out[:start] + replacement + out[end:]
    if loads(out) != new:  # never write something that does not say what we meant
        raise ValueError("editing the commented JSON in place went wrong")
    return Edited(out, editor.lost)
