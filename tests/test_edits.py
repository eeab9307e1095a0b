"""Edit tool calls read from transcripts, the apply_patch grammar, and matching edits to lines.

Fixtures are real transcripts where one exists (Claude, pi) and marked synthetic ones otherwise
(see fixtures/SOURCES.md); the one-record cases below are the argument shapes each agent's own
tool definitions declare (cited in tracekeeperd/agents/edits.py).
"""

from __future__ import annotations

import json

import pytest

from tracekeeperd.agents import Edit, get_format
from tracekeeperd.agents.base import from_turns
from tracekeeperd.agents.edits import (
    PatchHunk,
    match_edits,
    parse_patch,
    patch_changes,
    same_file,
    shell_apply_patch,
    written_lines,
)

from .transcripts import (
    CLAUDE_EDIT,
    CLAUDE_SPOTTER,
    CODEX_PATCH,
    CODEX_TOOLS,
    COPILOT,
    CURSOR,
    GEMINI_EDIT,
    PI_EDIT,
    load,
)

#: Real sessions whose tool calls (shell, search, MCP) write no file through an edit tool.
NO_EDITS = [CODEX_TOOLS, CLAUDE_SPOTTER]

FAREWELL = 'def farewell(name: str) -> str:\n    return f"goodbye, {name}"'


def fixture_edits(relpath: str) -> list[Edit]:
    fmt, _path, lines = load(relpath)
    return list(fmt.edits(enumerate(lines, start=1)))


def record_edits(agent: str, *records: object) -> list[Edit]:
    fmt = get_format(agent)
    assert fmt is not None
    lines = [json.dumps(record).encode() if not isinstance(record, bytes) else record for record in records]
    return list(fmt.edits(enumerate(lines, start=1)))


# --- each agent's edit tools, on fixtures ---------------------------------------------------------


@pytest.mark.parametrize("relpath", [CLAUDE_EDIT, PI_EDIT, CODEX_PATCH, GEMINI_EDIT, CURSOR, COPILOT])
def test_edits_are_the_turns_read_through_the_formats_edit_tools(relpath: str) -> None:
    # `why` parses a slice once and takes the edits from those turns with `edit_tools`: that must
    # be exactly what the format's own `edits` reads.
    fmt, _path, lines = load(relpath)
    numbered = list(enumerate(lines, start=1))
    assert fmt.edit_tools
    from_turns_ = list(from_turns(fmt.turns(numbered), fmt.edit_tools))
    assert from_turns_ == list(fmt.edits(numbered)) != []


def test_claude_edit_in_a_real_session() -> None:
    (edit,) = fixture_edits(CLAUDE_EDIT)
    assert (edit.tool, edit.kind, edit.line, edit.call_id) == ("Edit", "replace", 7, "toolu_014tjmwAhVuwMdFdbCVpdHkC")
    assert edit.path == "/workspace/claude-real-edit-box/project/src/app.py"
    assert edit.old_text == 'def greet(name: str) -> str:\n    return f"hello, {name}"'
    assert edit.new_text.endswith(FAREWELL)
    assert edit.prompt.startswith("In this repo, add a farewell(name: str) helper to src/app.py")
    # No assistant text precedes the call in its turn, so the explanation is the report after it.
    assert edit.explanation.startswith("Done. Here's what I did:")
    # Only the lines the Edit added are its own; the greet lines are old_string repeated as context.
    assert written_lines(edit) == ["", "", "def farewell(name: str) -> str:", 'return f"goodbye, {name}"']


def test_pi_edit_list_in_a_real_session() -> None:
    (edit,) = fixture_edits(PI_EDIT)
    assert (edit.tool, edit.kind, edit.path, edit.line) == ("edit", "replace", "src/app.py", 10)
    assert edit.call_id is not None and edit.call_id.startswith("call_32rb3eyWlYAj6GP58jLhYglM")
    assert edit.new_text.endswith(FAREWELL + "\n")
    assert edit.prompt.startswith("In this repo, add a farewell(name: str) helper to src/app.py, keep greet working")
    assert edit.explanation.startswith("Done.\n\n- Added `farewell(name: str)`")


def test_codex_apply_patch_as_custom_tool_function_call_and_shell_heredoc() -> None:
    add, move, readme = fixture_edits(CODEX_PATCH)
    assert (add.tool, add.kind, add.path, add.line) == ("apply_patch", "create", "text.py", 10)
    assert add.new_text.startswith("import re\n\n\ndef slugify(title: str) -> str:\n")
    assert add.prompt == "add a slugify(title) helper in a new text.py that turns a title into a URL slug"
    assert add.explanation.startswith("I'll create text.py")
    # function_call form: {"input": patch} in arguments; an Update that also moves the file.
    assert (move.tool, move.kind, move.path, move.from_path) == ("apply_patch", "patch", "slug.py", "text.py")
    assert move.old_text == '    return re.sub(r"[^a-z]+", "-", title.lower()).strip("-")\n'
    assert move.new_text == '    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "untitled"\n'
    assert move.prompt.startswith("move it to slug.py")
    # exec_command running `apply_patch <<'EOF'`: only the added lines, not the `# demo` context.
    # Its path is under the call's workdir, where Codex ran it.
    assert (readme.tool, readme.kind, readme.path) == ("exec_command", "patch", "/home/dev/src/demo/README.md")
    assert readme.new_text == "\nTitles become URL slugs with `slug.slugify()`; digits are kept.\n"
    assert readme.call_id == "call_Hd3kF6jN1sQ8wE2rT5yU9iO4"


def test_gemini_write_file_and_replace_after_replay() -> None:
    write, replace = fixture_edits(GEMINI_EDIT)
    # The message was re-appended with its result: one edit, at the line of the last copy.
    assert (write.tool, write.kind, write.line) == ("write_file", "create", 6)
    assert write.path == "/home/dev/src/demo/config.py"
    assert write.new_text.startswith("import os\nfrom dataclasses import dataclass\n")
    assert write.prompt.startswith("add a config.py with a Settings dataclass")
    assert write.explanation.startswith("I'll write config.py")
    assert (replace.tool, replace.kind, replace.line) == ("replace", "replace", 11)
    assert replace.new_text == '    port: int = int(os.environ.get("PORT", "8000"))'
    assert replace.prompt == "PORT arrives as a string; make the port an int"


def test_cursor_str_replace_and_copilot_edit() -> None:
    (cursor,) = fixture_edits(CURSOR)
    assert (cursor.tool, cursor.kind, cursor.path, cursor.call_id) == (
        "StrReplace",
        "replace",
        "/home/dev/src/demo/cli.py",
        None,
    )
    assert cursor.prompt == "add a --verbose flag to cli.py and print the parsed config when it is set"
    (copilot,) = fixture_edits(COPILOT)
    assert (copilot.tool, copilot.old_text, copilot.new_text) == ("edit", "%d/%m", "%m/%d")
    assert copilot.prompt == "fix the failing test in test_parse.py"
    assert copilot.explanation == "Let me run the test to see the failure."


@pytest.mark.parametrize("relpath", NO_EDITS)
def test_sessions_without_edit_tools_have_no_edits(relpath: str) -> None:
    # Only sessions with tool calls can tell: one without any has no edits whatever the converters do.
    fmt, _path, lines = load(relpath)
    assert any(turn.kind == "tool_call" for turn in fmt.turns(enumerate(lines, start=1)))
    assert fixture_edits(relpath) == []


# --- argument shapes not in a fixture ---------------------------------------------------------------


def claude_call(name: str, tool_input: object) -> dict[str, object]:
    return {
        "type": "assistant",
        "sessionId": "s",
        "uuid": "u",
        "message": {
            "id": f"m-{name}",
            "content": [{"type": "tool_use", "id": f"t-{name}", "name": name, "input": tool_input}],
        },
    }


def test_claude_multi_edit_write_and_notebook_edit() -> None:
    prompt = {"type": "user", "sessionId": "s", "uuid": "p", "message": {"content": "tidy the module"}}
    edits = record_edits(
        "claude",
        prompt,
        claude_call(
            "MultiEdit",
            {
                "file_path": "m.py",
                "edits": [
                    {"old_string": "a", "new_string": "b"},
                    {"old_string": "c", "new_string": "d", "replace_all": True},
                ],
            },
        ),
        claude_call("Write", {"file_path": "/r/new.py", "content": "x = 1\n"}),
        claude_call("NotebookEdit", {"notebook_path": "n.ipynb", "cell_id": "c1", "new_source": "print(1)"}),
        claude_call(
            "NotebookEdit", {"notebook_path": "n.ipynb", "cell_id": "c2", "new_source": "", "edit_mode": "delete"}
        ),
        claude_call("Read", {"file_path": "m.py"}),
    )
    assert [(e.tool, e.kind, e.path, e.old_text, e.new_text) for e in edits] == [
        ("MultiEdit", "replace", "m.py", "a", "b"),
        ("MultiEdit", "replace", "m.py", "c", "d"),
        ("Write", "create", "/r/new.py", "", "x = 1\n"),
        ("NotebookEdit", "replace", "n.ipynb", "", "print(1)"),
    ]
    assert {e.prompt for e in edits} == {"tidy the module"}


def codex_item(payload: dict[str, object]) -> dict[str, object]:
    return {"timestamp": "2026-03-04T09:00:00.000Z", "type": "response_item", "payload": payload}


PATCH = "*** Begin Patch\n*** Update File: a.py\n@@\n-x = 1\n+x = 2\n*** End Patch\n"


def test_codex_apply_patch_through_shell_forms() -> None:
    heredoc = f"cd sub && apply_patch <<'EOF'\n{PATCH}EOF\n"
    edits = record_edits(
        "codex",
        codex_item(
            {"type": "function_call", "name": "shell", "arguments": json.dumps({"command": ["apply_patch", PATCH]})}
        ),
        codex_item(
            {"type": "function_call", "name": "shell", "arguments": json.dumps({"command": ["bash", "-lc", heredoc]})}
        ),
        codex_item(
            {
                "type": "local_shell_call",
                "call_id": "c3",
                "action": {"type": "exec", "command": ["/bin/zsh", "-c", heredoc]},
            }
        ),
        # Not an apply_patch invocation, or one Codex would refuse (a command after the heredoc).
        codex_item(
            {"type": "function_call", "name": "shell", "arguments": json.dumps({"command": ["bash", "-lc", "ls"]})}
        ),
        codex_item(
            {"type": "function_call", "name": "exec_command", "arguments": json.dumps({"cmd": heredoc + "echo done"})}
        ),
    )
    assert [(e.tool, e.path, e.new_text) for e in edits] == [
        ("shell", "a.py", "x = 2\n"),
        ("shell", "sub/a.py", "x = 2\n"),
        ("local_shell", "sub/a.py", "x = 2\n"),
    ]


def test_codex_shell_apply_patch_paths_are_under_the_calls_workdir() -> None:
    # openai/codex core ShellHandler::to_exec_params: ``cwd: turn_context.resolve_path(params.workdir)``,
    # and maybe_parse_apply_patch_verified resolves the patch's paths (after any ``cd``) against it;
    # a local_shell action names it ``working_directory``.
    heredoc = f"cd sub && apply_patch <<'EOF'\n{PATCH}EOF\n"
    direct = shell_apply_patch(json.dumps({"command": ["apply_patch", PATCH], "workdir": "/repo/pkg"}))
    assert [change.path for change in direct] == ["/repo/pkg/a.py"]
    shell = shell_apply_patch(json.dumps({"command": ["bash", "-lc", heredoc], "workdir": "pkg"}))
    assert [change.path for change in shell] == ["pkg/sub/a.py"]
    local = shell_apply_patch(
        json.dumps({"type": "exec", "command": ["apply_patch", PATCH], "working_directory": "/w"})
    )
    assert [change.path for change in local] == ["/w/a.py"]
    exec_command = shell_apply_patch(json.dumps({"cmd": heredoc, "workdir": "/w"}))
    assert [change.path for change in exec_command] == ["/w/sub/a.py"]


@pytest.mark.parametrize(
    "argv",
    [
        ["/usr/bin/BASH", "-lc"],  # classify_shell_name: the file stem, lowercased
        ["bash.exe", "-c"],
        ["pwsh", "-Command"],
        ["powershell.exe", "-NoProfile", "-command"],
        ["C:\\Windows\\System32\\cmd.exe", "/C"],
    ],
)
def test_codex_shell_apply_patch_on_every_shell_codex_reads(argv: list[str]) -> None:
    # openai/codex codex-rs/apply-patch/src/invocation.rs ``parse_shell_script``: bash/zsh/sh with
    # -lc/-c, pwsh/powershell with -Command (after an optional -NoProfile), cmd with /c, the shell
    # named by its file stem, case-insensitively; the script is then read as a bash heredoc.
    script = f"apply_patch <<'EOF'\n{PATCH}EOF\n"
    arguments = json.dumps({"command": [*argv, script]})
    assert [(change.path, change.new_text) for change in shell_apply_patch(arguments)] == [("a.py", "x = 2\n")]


@pytest.mark.parametrize(
    "argv", [["bash", "-NoProfile", "-c"], ["bash", "-C"], ["fish", "-c"], ["cmd", "/k"], ["pwsh"]]
)
def test_codex_shell_apply_patch_not_on_shells_codex_does_not_read(argv: list[str]) -> None:
    script = f"apply_patch <<'EOF'\n{PATCH}EOF\n"
    assert shell_apply_patch(json.dumps({"command": [*argv, script]})) == []


# Each agent's own record shape, one call per tool (sources: agents/edits.py's docstring).
WRITE_TOOL_CASES = [
    (
        "gemini",
        {
            "id": "g1",
            "timestamp": "2026-03-05T14:00:00Z",
            "type": "gemini",
            "content": "",
            "toolCalls": [
                {
                    "id": "c1",
                    "name": "write_file",
                    "args": {"file_path": "/r/a.txt", "content": "hello\n"},
                    "status": "success",
                },
                {
                    "id": "c2",
                    "name": "replace",
                    "args": {"file_path": "/r/a.txt", "old_string": "hello", "new_string": "hi"},
                },
                {"id": "c3", "name": "read_file", "args": {"file_path": "/r/a.txt"}},
            ],
        },
        [
            ("write_file", "create", "/r/a.txt", "hello\n", "c1"),
            ("replace", "replace", "/r/a.txt", "hi", "c2"),
        ],
    ),
    (
        "pi",
        {
            "type": "message",
            "id": "a",
            "parentId": None,
            "timestamp": "2026-06-10T14:46:21.137Z",
            "message": {
                "role": "assistant",
                "content": [
                    {
                        "type": "toolCall",
                        "id": "t1",
                        "name": "edit",
                        "arguments": {"path": "a.py", "oldText": "1", "newText": "2"},
                    },
                    {
                        "type": "toolCall",
                        "id": "t2",
                        "name": "write",
                        "arguments": {"path": "b.py", "content": "b = 1\n"},
                    },
                ],
            },
        },
        [("edit", "replace", "a.py", "2", "t1"), ("write", "create", "b.py", "b = 1\n", "t2")],
    ),
    (
        "cursor",
        {
            "role": "assistant",
            "message": {
                "content": [{"type": "tool_use", "name": "Write", "input": {"path": "/r/c.py", "contents": "c = 3\n"}}]
            },
        },
        [("Write", "create", "/r/c.py", "c = 3\n", None)],
    ),
    (
        "copilot",
        {
            "type": "assistant.message",
            "data": {
                "content": "",
                "toolRequests": [
                    {"toolCallId": "k1", "name": "create", "arguments": {"path": "/r/d.py", "file_text": "d = 4\n"}},
                ],
            },
            "id": "e1",
            "timestamp": "2026-03-02T01:11:58.020Z",
            "parentId": None,
        },
        [("create", "create", "/r/d.py", "d = 4\n", "k1")],
    ),
]


@pytest.mark.parametrize(("agent", "record", "expected"), WRITE_TOOL_CASES, ids=[case[0] for case in WRITE_TOOL_CASES])
def test_other_agents_write_tools(agent: str, record: object, expected: list[tuple[object, ...]]) -> None:
    edits = record_edits(agent, record)
    assert [(e.tool, e.kind, e.path, e.new_text, e.call_id) for e in edits] == expected


@pytest.mark.parametrize("agent", ["claude", "codex", "gemini", "pi", "cursor", "copilot"])
def test_bad_records_never_raise(agent: str) -> None:
    """Garbage, truncated lines, wrong types and unreadable arguments yield no edit, never an error."""
    bad: list[object] = [
        b"\xff\xfe not json",
        b'{"type": "assistant", "message": {"content": [{"type": "tool_use", "name": "Edit", "input": ',
        claude_call("Edit", {"file_path": 7, "old_string": [], "new_string": None}),
        claude_call("MultiEdit", {"file_path": "a", "edits": ["x", 3, None, {"new_string": 5}]}),
        claude_call("Write", "not an object"),
        codex_item(
            {
                "type": "custom_tool_call",
                "name": "apply_patch",
                "input": "*** Begin Patch\n*** Frobnicate: x\n*** End Patch",
            }
        ),
        codex_item(
            {
                "type": "custom_tool_call",
                "name": "apply_patch",
                "input": "*** Begin Patch\n*** Add File: x\n+never ended",
            }
        ),
        codex_item({"type": "function_call", "name": "apply_patch", "arguments": '{"input": 12}'}),
        codex_item({"type": "function_call", "name": "shell", "arguments": "[[[["}),
        {"id": "g", "type": "gemini", "content": "", "toolCalls": [{"name": "replace", "args": "nope"}, 5]},
        {
            "type": "message",
            "id": "a",
            "parentId": None,
            "message": {
                "role": "assistant",
                "content": [{"type": "toolCall", "name": "edit", "arguments": {"path": "a", "edits": "x"}}],
            },
        },
        {
            "role": "assistant",
            "message": {"content": [{"type": "tool_use", "name": "StrReplace", "input": {"path": ["a"]}}]},
        },
        {"type": "assistant.message", "data": {"toolRequests": [{"name": "edit", "arguments": '{"path": 1}'}]}},
    ]
    assert record_edits(agent, *bad) == []


# --- the apply_patch grammar (cases from openai/codex codex-rs/apply-patch/src/parser.rs tests) ------


def test_parse_patch_follows_codex() -> None:
    patch = (
        "*** Begin Patch\n*** Add File: path/add.py\n+abc\n+def\n*** Delete File: path/delete.py\n"
        "*** Update File: path/update.py\n*** Move to: path/update2.py\n@@ def f():\n-    pass\n+    return 123\n"
        "*** End Patch"
    )
    assert parse_patch(patch) == [
        PatchHunk("add", "path/add.py", added=("abc", "def")),
        PatchHunk("delete", "path/delete.py"),
        PatchHunk("update", "path/update.py", "path/update2.py", ("    pass",), ("    return 123",)),
    ]
    # The first chunk may omit @@; a space-prefixed line is context, not an added line.
    assert parse_patch("*** Begin Patch\n*** Update File: file2.py\n import foo\n+bar\n*** End Patch") == [
        PatchHunk("update", "file2.py", added=("bar",))
    ]
    # Two chunks, an empty context line, an end-of-file marker.
    multi = "*** Begin Patch\n*** Update File: m.txt\n@@\n a\n-b\n+B\n\n@@ ctx\n-d\n+D\n*** End of File\n*** End Patch"
    assert parse_patch(multi) == [PatchHunk("update", "m.txt", removed=("b", "d"), added=("B", "D"))]
    # Lenient mode: the heredoc markers around the patch, as gpt-4.1 sends it.
    assert parse_patch("<<'EOF'\n*** Begin Patch\n*** Delete File: gone\n*** End Patch\nEOF\n") == [
        PatchHunk("delete", "gone")
    ]


def test_patch_lines_split_only_at_newlines_like_rust_str_lines() -> None:
    # parser.rs splits with Rust's ``str::lines`` (at "\n" and "\r\n" only); a form feed or
    # U+2028 inside an added line (legal in source files) is part of that line, not a line break.
    patch = "*** Begin Patch\r\n*** Add File: a.js\r\n+var s = 'x\u2028y';\r\n+\f// page\r\n*** End Patch\r\n"
    assert parse_patch(patch) == [PatchHunk("add", "a.js", added=("var s = 'x\u2028y';", "\f// page"))]


@pytest.mark.parametrize(
    "patch",
    [
        "bad",
        "*** Begin Patch\nbad",
        "*** Begin Patch\n*** Update File: test.py\n*** End Patch",  # empty update hunk
        "*** Begin Patch\n*** Update File: a\n@@\n+x\n+y\nz\n*** End Patch",  # a line that fits no chunk
        "*** Begin Patch\n*** Update File: a\n@@\n+x\n-y\n not-a-marker\nbare\n*** End Patch",
    ],
)
def test_patches_codex_rejects_change_nothing(patch: str) -> None:
    assert parse_patch(patch) == []


def test_patch_changes_place_paths_under_a_cd() -> None:
    (change,) = patch_changes(PATCH, workdir="pkg")
    assert (change.path, change.kind, change.old_text, change.new_text) == ("pkg/a.py", "patch", "x = 1\n", "x = 2\n")
    assert (
        shell_apply_patch(json.dumps({"command": ["bash", "-lc", "ls; apply_patch <<'EOF'\n" + PATCH + "EOF"]})) == []
    )


# --- matching edits to lines ---------------------------------------------------------------------


def edit(new: str, *, path: str = "src/app.py", kind: str = "create", old: str = "", line: int = 1) -> Edit:
    return Edit(path=path, kind=kind, old_text=old, new_text=new, line=line, call_id=None, tool="t")  # type: ignore[arg-type]


def test_the_latest_edit_that_wrote_a_line_wins() -> None:
    first = edit("def f():\n    return compute_total(items)\n", line=3)
    second = edit("    return compute_total(items)", kind="replace", old="    return 0", line=9)
    assert match_edits([first, second], ["    return compute_total(items)"], ["src/app.py"]) == [second]
    # The def line is only first's; asked about both lines, both edits wrote part of them.
    assert match_edits([first, second], ["def f():", "    return compute_total(items)"], ["src/app.py"]) == [
        second,
        first,
    ]


def test_whitespace_is_normalized_and_trivial_lines_prove_nothing() -> None:
    wrote = edit("if ready:\n    launch_rocket(now)\n}\n")
    assert match_edits([wrote], ["\t\tlaunch_rocket(now)  ", "}"], ["src/app.py"]) == [wrote]
    only_brace = edit("}\n")
    assert match_edits([only_brace], ["launch_rocket(now)", "}"], ["src/app.py"]) == []
    # Asked only about a trivial line, trivial lines are all there is to go on.
    assert match_edits([only_brace], ["}"], ["src/app.py"]) == [only_brace]


def test_one_shared_common_line_is_not_a_match() -> None:
    big = edit("\n".join(f"value_{n} = compute({n})" for n in range(10)) + "\nreturn None\n")
    asked = [f"other_{n} = unrelated({n})" for n in range(6)] + ["return None"]
    assert match_edits([big], asked, ["src/app.py"]) == []
    assert match_edits([big], asked[-1:], ["src/app.py"]) == [big]


def test_context_lines_of_a_replace_are_not_its_own() -> None:
    claude_like = edit(
        "def greet():\n    pass\n\n\ndef farewell():\n    pass", kind="replace", old="def greet():\n    pass"
    )
    assert match_edits([claude_like], ["def greet():"], ["src/app.py"]) == []
    assert match_edits([claude_like], ["def farewell():"], ["src/app.py"]) == [claude_like]


def test_a_one_line_replace_matches_the_line_containing_it() -> None:
    inline = edit("%m/%d", kind="replace", old="%d/%m", path="/home/dev/src/demo/parse.py")
    assert match_edits([inline], ['    return datetime.strptime(text, "%m/%d")'], ["parse.py"]) == [inline]
    assert match_edits([inline], ['    return datetime.strptime(text, "%d/%m")'], ["parse.py"]) == []


def test_paths_absolute_relative_and_renamed() -> None:
    assert same_file("/workspace/box/project/src/app.py", ["src/app.py"])
    assert same_file("app.py", ["src/app.py"])  # relative to a cwd below the repository root
    assert same_file("./src/app.py", ["src/app.py"])
    assert same_file("C:\\work\\proj\\src\\app.py", ["src/app.py"])
    assert not same_file("/workspace/box/project/lib/app.py", ["src/app.py"])
    assert not same_file("/workspace/box/project/src/app.py", ["src/main.py"])
    moved = Edit(
        "slug.py", "patch", "a\n", "slug_value = slugify(title)\n", 4, None, "apply_patch", from_path="text.py"
    )
    # The file is called text.py in the blamed commit and slug.py now: either name finds the edit.
    assert match_edits([moved], ["slug_value = slugify(title)"], ["text.py"]) == [moved]
    assert match_edits([moved], ["slug_value = slugify(title)"], ["other.py"]) == []


def test_deletes_write_nothing() -> None:
    assert written_lines(edit("", kind="delete")) == []
    assert match_edits([edit("", kind="delete")], ["anything at all"], ["src/app.py"]) == []
