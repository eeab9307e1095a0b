"""File-writing tool calls in one shape for every agent, and which of them wrote given lines.

Each format's ``edits(numbered_lines)`` is ``base.from_turns(turns(lines), EDIT_TOOLS)``
(``TranscriptFormat`` derives it from its ``edit_tools``): the conversation the format already
reads, with every tool call whose name is in the agent's table turned into ``Edit`` records by
a small converter of that tool's arguments. Going through ``turns`` (rather than re-reading
records) keeps one parser per format, so the edits see exactly the calls ``tracekeeper show``
shows, including Gemini's replayed log
and Claude's de-duplicated message blocks.

Tool arguments were checked against the agents' own sources:

* Codex ``apply_patch``: the patch text is the ``input`` of a ``custom_tool_call``
  (freeform tool) or ``{"input": …}`` in a ``function_call``'s ``arguments``
  (openai/codex ``codex-rs/tools/src/apply_patch_tool.rs``, ``ApplyPatchToolArgs``), or a
  heredoc given to a shell tool (``codex-rs/apply-patch/src/invocation.rs``). The patch
  grammar is ported from ``codex-rs/apply-patch/src/parser.rs`` @ 0e0fb63d (``parse_patch``,
  lenient mode): a patch Codex would reject changed nothing, so it yields nothing here either.
* Claude Code ``Edit`` (``file_path``, ``old_string``, ``new_string``, ``replace_all``),
  ``MultiEdit`` (``edits[]`` of the same), ``Write`` (``content``), ``NotebookEdit``
  (``notebook_path``, ``new_source``); see the opentraces fixture.
* Gemini CLI ``replace`` (``file_path``, ``old_string``, ``new_string``) and
  ``write_file`` (``file_path``, ``content``): google-gemini/gemini-cli @ 5411f113
  ``packages/core/src/tools/definitions/base-declarations.ts`` (``EDIT_TOOL_NAME``,
  ``EDIT_PARAM_OLD_STRING``…).
* pi ``edit`` (``path`` with ``oldText``/``newText``, or ``edits[]`` of them; the real
  fixture has the list) and ``write`` (``path``, ``content``): badlogic/pi-mono
  ``packages/coding-agent/src/core/tools/{edit,write}.ts``.
* Cursor ``StrReplace`` (``path``, ``old_string``, ``new_string``) and ``Write``
  (``path``, ``contents``): entireio/cli @ 126f2ac1 ``cmd/entire/cli/agent/cursor/AGENT.md``
  (observed in a real session, pinned there by ``testdata/real_session_tool_use.jsonl``).
* Copilot CLI ``edit`` (``path``, ``old_str``, ``new_str``) and ``create`` (``path``,
  ``file_text``): the tool calls the real CLI sends in github/copilot-sdk's recorded
  exchanges @ cc0438d6 (``test/snapshots/builtin_tools/should_edit_a_file_successfully.yaml``,
  ``should_create_a_new_file.yaml``). Where the CLI's ``events.jsonl`` puts those arguments is
  still the unverified part of that format (see copilot.py).

Bad arguments never raise: a call that cannot be read yields no edit.
"""

from __future__ import annotations

import difflib
import json
import math
import ntpath
import posixpath
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from .base import Edit, EditKind
from .records import Record, as_record, get_list, get_str


@dataclass(frozen=True)
class Change:
    """What one tool call did to one file, before it is placed in the conversation."""

    path: str
    kind: EditKind
    old_text: str = ""
    new_text: str = ""
    from_path: str | None = None


#: Reads one tool call's text (its arguments as ``Turn.text`` holds them) into changes.
Converter = Callable[[str], list[Change]]


def arguments(text: str) -> Record | None:
    """A tool call's arguments as an object; Codex's ``function_call`` keeps them as a JSON string."""
    try:
        value: object = json.loads(text)
        if isinstance(value, str):
            value = json.loads(value)
    except (ValueError, RecursionError):
        return None
    return as_record(value)


def _first_str(args: Record | None, keys: Sequence[str]) -> str | None:
    return next((value for key in keys if (value := get_str(args, key)) is not None), None)


def replace_tool(path_keys: Sequence[str], old_key: str, new_key: str, list_key: str | None = None) -> Converter:
    """A find-and-replace tool: one old/new pair, or a list of them under ``list_key``."""

    def convert(text: str) -> list[Change]:
        args = arguments(text)
        path = _first_str(args, path_keys)
        if path is None:
            return []
        pairs: list[Record] = [args] if args is not None and new_key in args else []
        if list_key is not None:
            pairs += [record for item in get_list(args, list_key) if (record := as_record(item)) is not None]
        return [
            Change(path, "replace", get_str(pair, old_key) or "", new)
            for pair in pairs
            if (new := get_str(pair, new_key)) is not None
        ]

    return convert


def write_tool(path_keys: Sequence[str], content_keys: Sequence[str]) -> Converter:
    """A tool that writes a file's whole content."""

    def convert(text: str) -> list[Change]:
        args = arguments(text)
        path = _first_str(args, path_keys)
        content = _first_str(args, content_keys)
        return [] if path is None or content is None else [Change(path, "create", "", content)]

    return convert


def notebook_edit(text: str) -> list[Change]:
    """Claude Code's ``NotebookEdit``: one cell's new source (nothing for a deleted cell)."""
    args = arguments(text)
    path = get_str(args, "notebook_path")
    source = get_str(args, "new_source")
    if path is None or source is None or get_str(args, "edit_mode") == "delete":
        return []
    return [Change(path, "replace", "", source)]


# --- Codex apply_patch -------------------------------------------------------------------

_BEGIN = "*** Begin Patch"
_END = "*** End Patch"
_ADD = "*** Add File: "
_DELETE = "*** Delete File: "
_UPDATE = "*** Update File: "
_MOVE = "*** Move to: "
_EOF = "*** End of File"
_HEREDOC_STARTS = ("<<EOF", "<<'EOF'", '<<"EOF"')


@dataclass(frozen=True)
class PatchHunk:
    """One file section of an apply_patch patch (codex ``parser.rs`` ``Hunk``)."""

    kind: Literal["add", "delete", "update"]
    path: str
    move_to: str | None = None
    removed: tuple[str, ...] = ()
    added: tuple[str, ...] = ()


class _PatchError(ValueError):
    pass


def parse_patch(text: str) -> list[PatchHunk]:
    """The hunks of an apply_patch patch, or [] when Codex would have rejected it.

    A port of ``parse_patch`` in lenient mode (openai/codex ``codex-rs/apply-patch/src/
    parser.rs``): the ``*** Begin Patch`` / ``*** End Patch`` envelope (possibly inside a
    ``<<'EOF'`` heredoc), then Add / Delete / Update hunks; an Update holds ``@@`` chunks of
    `` ``/``-``/``+`` lines. Only the added and removed lines are kept: context lines were
    already in the file, so they are not what this patch wrote.
    """
    # Rust's ``patch.trim().lines()``: split at "\n" (dropping a "\r" before it) only, where
    # ``str.splitlines`` would also split at form feeds, U+2028 and others inside a line.
    lines = [line.removesuffix("\r") for line in text.strip().split("\n")]
    try:
        return _parse_hunks(_patch_body(lines))
    except _PatchError:
        return []


def _patch_body(lines: list[str]) -> list[str]:
    def strict(candidate: list[str]) -> list[str]:
        if len(candidate) < 2 or candidate[0].strip() != _BEGIN or candidate[-1].strip() != _END:
            raise _PatchError("no patch envelope")
        return candidate[1:-1]

    try:
        return strict(lines)
    except _PatchError:
        if len(lines) >= 4 and lines[0] in _HEREDOC_STARTS and lines[-1].endswith("EOF"):
            return strict(lines[1:-1])
        raise


def _parse_hunks(lines: list[str]) -> list[PatchHunk]:
    hunks: list[PatchHunk] = []
    at = 0
    while at < len(lines):
        header = lines[at].strip()
        at += 1
        if header.startswith(_ADD):
            contents: list[str] = []
            while at < len(lines) and lines[at].startswith("+"):
                contents.append(lines[at][1:])
                at += 1
            hunks.append(PatchHunk("add", header[len(_ADD) :], added=tuple(contents)))
        elif header.startswith(_DELETE):
            hunks.append(PatchHunk("delete", header[len(_DELETE) :]))
        elif header.startswith(_UPDATE):
            move_to = None
            if at < len(lines) and lines[at].startswith(_MOVE):
                move_to = lines[at][len(_MOVE) :]
                at += 1
            removed: list[str] = []
            added: list[str] = []
            at = _parse_update(lines, at, removed, added)
            hunks.append(PatchHunk("update", header[len(_UPDATE) :], move_to, tuple(removed), tuple(added)))
        else:
            raise _PatchError(f"not a hunk header: {header!r}")
    return hunks


def _parse_update(lines: list[str], at: int, removed: list[str], added: list[str]) -> int:
    """Read an Update hunk's chunks from ``at``; returns where the next hunk starts."""
    chunks = 0
    while at < len(lines):
        if not lines[at].strip():
            at += 1
            continue
        if lines[at].startswith("*"):
            break
        if lines[at] == "@@" or lines[at].startswith("@@ "):
            at += 1
        elif chunks:
            raise _PatchError("chunk without @@")
        parsed = 0
        while at < len(lines):
            line = lines[at]
            if line == _EOF:
                if not parsed:
                    raise _PatchError("empty chunk")
                at += 1
                break
            if line.startswith("+"):
                added.append(line[1:])
            elif line.startswith("-"):
                removed.append(line[1:])
            elif line and not line.startswith(" "):
                if not parsed:
                    raise _PatchError("bad chunk line")
                break  # the next chunk's @@
            at += 1
            parsed += 1
        if not parsed:
            raise _PatchError("empty chunk")
        chunks += 1
    if not chunks:
        raise _PatchError("empty update hunk")
    return at


def _joined(lines: Sequence[str]) -> str:
    return "".join(line + "\n" for line in lines)


def patch_changes(text: str, workdir: str | None = None) -> list[Change]:
    """The changes of an apply_patch patch; relative paths are taken from ``workdir`` (a ``cd``)."""

    def place(path: str) -> str:
        return posixpath.join(workdir, path) if workdir else path

    changes: list[Change] = []
    for hunk in parse_patch(text):
        if hunk.kind == "add":
            changes.append(Change(place(hunk.path), "create", "", _joined(hunk.added)))
        elif hunk.kind == "delete":
            changes.append(Change(place(hunk.path), "delete"))
        else:
            target = place(hunk.move_to or hunk.path)
            moved_from = place(hunk.path) if hunk.move_to else None
            changes.append(Change(target, "patch", _joined(hunk.removed), _joined(hunk.added), moved_from))
    return changes


def apply_patch(text: str) -> list[Change]:
    """Codex's apply_patch tool: raw patch text (custom tool) or ``{"input": patch}`` (function tool)."""
    args = arguments(text)
    if args is None:
        return patch_changes(text)
    return patch_changes(_first_str(args, ("input", "patch")) or "")


# invocation.rs ``classify_shell``: the flag before the script, per shell (the script is read as
# bash whatever the shell); PowerShell's and cmd's flags compare case-insensitively.
_SHELL_FLAGS = {
    "bash": ("-lc", "-c"),
    "zsh": ("-lc", "-c"),
    "sh": ("-lc", "-c"),
    "pwsh": ("-command",),
    "powershell": ("-command",),
    "cmd": ("/c",),
}
_APPLY_PATCH_NAMES = ("apply_patch", "applypatch")
# `[cd <dir> &&] apply_patch <<'EOF'\n…\nEOF` as the whole script (invocation.rs's tree-sitter query).
_HEREDOC = re.compile(
    r"\A\s*(?:cd\s+(?P<dir>'[^']*'|\"[^\"]*\"|[^\s;&|]+)\s*&&\s*)?(?:apply_patch|applypatch)\s*"
    r"<<-?\s*(?P<quote>['\"]?)(?P<tag>\w+)(?P=quote)[^\n]*\n(?P<body>.*?)\n(?P=tag)\s*\Z",
    re.DOTALL,
)


def _shell_script(argv: list[str]) -> str | None:
    """The script of ``[shell, flag, script]`` (invocation.rs ``parse_shell_script``), else None.

    The shell is named by its file stem, lowercased (``/bin/bash``, ``pwsh.exe``, a Windows
    path), and PowerShell may have ``-NoProfile`` before its flag.
    """
    shell = ntpath.splitext(ntpath.basename(argv[0]))[0].lower() if argv else ""
    if len(argv) == 4 and shell in ("pwsh", "powershell") and argv[1].lower() == "-noprofile":
        argv = [argv[0], *argv[2:]]
    if len(argv) != 3:
        return None
    flag = argv[1] if shell in ("bash", "zsh", "sh") else argv[1].lower()
    return argv[2] if flag in _SHELL_FLAGS.get(shell, ()) else None


def shell_apply_patch(text: str) -> list[Change]:
    """An apply_patch run through a shell tool (``shell``, ``exec_command``, ``local_shell``…).

    Codex intercepts ``["apply_patch", patch]`` and ``bash -lc "[cd dir &&] apply_patch
    <<'EOF' … EOF"`` and applies them itself (``maybe_parse_apply_patch``); any other
    command is not an edit we can read. The patch's paths are relative to the call's own
    directory (``workdir``; a local_shell action's ``working_directory``), which Codex makes
    the command's cwd (core ``ShellHandler::to_exec_params``), then to any ``cd``.
    """
    args = arguments(text)
    command: object = None if args is None else args.get("command", args.get("cmd"))
    workdir = _first_str(args, ("workdir", "working_directory")) or ""
    script: str | None = None
    if isinstance(command, list) and all(isinstance(part, str) for part in command):
        if len(command) == 2 and command[0] in _APPLY_PATCH_NAMES:
            return patch_changes(command[1], workdir or None)
        script = _shell_script(command)
    elif isinstance(command, str):
        script = command
    found = _HEREDOC.match(script or "")
    if found is None:
        return []
    cd = (found.group("dir") or "").strip("'\"")
    return patch_changes(found.group("body"), posixpath.join(workdir, cd) if cd else workdir or None)


# --- Which edits wrote some lines ---------------------------------------------------------

#: A line with fewer word characters than this (``}``, ``)``, ``else:``…) proves nothing.
_MIN_WORD_CHARS = 3
_WORD = re.compile(r"\w")


def normalize(line: str) -> str:
    """A line with its whitespace runs collapsed: indentation and spacing changes do not count."""
    return " ".join(line.split())


def _trivial(normalized: str) -> bool:
    return len(_WORD.findall(normalized)) < _MIN_WORD_CHARS


def written_lines(edit: Edit) -> list[str]:
    """The normalized lines an edit put into the file.

    A replace's new text repeats lines of its old text for context (Claude's ``Edit``
    usually does); only the lines the diff of the two says were inserted or replaced are
    the edit's own.
    """
    if edit.kind == "delete":
        return []
    new = [normalize(line) for line in edit.new_text.splitlines()]
    if edit.kind != "replace" or not edit.old_text:
        return new
    old = [normalize(line) for line in edit.old_text.splitlines()]
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    return [line for tag, _, _, start, end in matcher.get_opcodes() if tag != "equal" for line in new[start:end]]


def _parts(path: str) -> tuple[str, ...]:
    return tuple(part for part in path.replace("\\", "/").split("/") if part not in ("", "."))


def same_file(edit_path: str, candidates: Iterable[str]) -> bool:
    """Whether a tool's path names one of ``candidates`` (repo-relative paths).

    The tool may have written an absolute path on another machine, or a path relative to a
    cwd below the repository root; so the shorter path's components must end the longer.
    """
    parts = _parts(edit_path)
    for candidate in candidates:
        other = _parts(candidate)
        size = min(len(parts), len(other))
        if size and parts[-size:] == other[-size:]:
            return True
    return False


#: A one-line replace shorter than this (``x``, ``1``) is found inside too many lines to mean anything.
_MIN_INLINE_CHARS = 3


def _intraline(edit: Edit) -> str | None:
    """A replace inside one line: the line in the file contains its new text rather than equals it."""
    text = normalize(edit.new_text)
    if edit.kind != "replace" or "\n" in edit.new_text.strip("\n") or len(text.replace(" ", "")) < _MIN_INLINE_CHARS:
        return None
    return text


def match_edits(edits: Sequence[Edit], lines: Sequence[str], paths: Iterable[str]) -> list[Edit]:
    """The edits among ``edits`` (in conversation order) that wrote ``lines``, latest first.

    Each target line is claimed by the latest edit of one of ``paths`` whose written lines
    contain it (after whitespace normalization; a one-line replace also claims a line that
    contains its new text): a later edit supersedes an earlier one that wrote the same line.
    An edit matches when it claims a substantial part (half) of the smaller of the target
    lines and its own written lines, so one shared ``return None`` does not make a match.
    Lines with under three word characters are ignored unless nothing else is asked about.
    """
    candidates = list(paths)
    asked = [line for line in map(normalize, lines) if line]
    wanted = [line for line in asked if not _trivial(line)]
    strict = bool(wanted)
    wanted = wanted or asked
    relevant = [
        (index, edit)
        for index, edit in enumerate(edits)
        if same_file(edit.path, candidates) or (edit.from_path is not None and same_file(edit.from_path, candidates))
    ]
    own: dict[int, set[str]] = {}
    inline: dict[int, str | None] = {}
    for index, edit in relevant:
        own[index] = {line for line in written_lines(edit) if line and not (strict and _trivial(line))}
        inline[index] = _intraline(edit)
    claimed: dict[int, int] = {}
    for line in wanted:
        for index, _edit in reversed(relevant):
            snippet = inline[index]
            if line in own[index] or (snippet is not None and snippet in line):
                claimed[index] = claimed.get(index, 0) + 1
                break
    matched = []
    for index, count in claimed.items():
        size = 1 if inline[index] is not None else max(1, len(own[index]))
        if count >= max(1, math.ceil(min(len(wanted), size) / 2)):
            matched.append(index)
    return [edits[index] for index in sorted(matched, reverse=True)]
