"""The viewer's building blocks without a browser: the line index and resumable hashes a page
relies on (against split_lines and hashlib), paging, cutting long text, and token counts."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tracekeeper.web import loader, views
from tracekeeper.web.loader import Blob, Loader, Slice
from tracekeeperd import notes
from tracekeeperd.agents import split_lines
from tracekeeperd.agents.usage import ModelUsage, Usage
from tracekeeperd.paths import Paths
from tracekeeperd.redact import Redactor

FIXTURES = Path(__file__).parent / "fixtures"
LINES = st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=30)


@given(LINES, st.binary(max_size=10).map(lambda b: b.replace(b"\n", b"")), st.booleans())
def test_the_line_index_reads_what_split_lines_reads(lines: list[bytes], tail: bytes, crlf: bool) -> None:
    data = b"".join(line + (b"\r\n" if crlf else b"\n") for line in lines) + tail
    expected, _ = split_lines(data)
    blob = Blob(data)
    assert blob.count == len(expected)
    assert [blob.line(n) for n in range(1, blob.count + 1)] == expected
    assert [line for _, line in blob.numbered(1, 10**6)] == expected


@settings(max_examples=50)
@given(st.binary(min_size=0, max_size=3000), st.lists(st.integers(0, 3000), min_size=1, max_size=8))
def test_resumed_prefix_hashes_equal_hashlib_in_any_order(data: bytes, lengths: list[int]) -> None:
    old = loader.HASH_STEP
    loader.HASH_STEP = 97  # small steps, so the checkpoints are used within small data
    try:
        blob = Blob(data)
        for length in lengths:
            digest = hashlib.sha256(data[:length]).hexdigest()
            assert blob.matches(length, digest) is (length <= len(data))
            assert not blob.matches(length, "0" * 64)
    finally:
        loader.HASH_STEP = old


def _blob(sizes: list[int]) -> Blob:
    return Blob(b"".join(b"x" * size + b"\n" for size in sizes))


@given(st.lists(st.integers(0, 3 * views.PAGE_BYTES // 2), min_size=1, max_size=400), st.data())
@settings(max_examples=30, deadline=None)
def test_pages_cover_a_range_once_in_order_within_their_budget(sizes: list[int], data: st.DataObject) -> None:
    blob = _blob(sizes)
    first = data.draw(st.integers(1, len(sizes)))
    end = data.draw(st.integers(first, len(sizes) + 3))  # past the bytes: a note longer than the copy
    start, covered = first, []
    while True:
        page = views.page_of(blob, start, first, end)
        assert page.first == start and page.last >= page.first, "a page is never empty"
        lines = range(page.first, page.last + 1)
        assert len(lines) <= views.PAGE_LINES
        # Over budget only by its last line: one huge line is a page of its own.
        assert sum(blob.size(n) for n in lines[:-1]) < views.PAGE_BYTES
        if page.previous is not None:
            assert first <= page.previous < page.first
        covered.extend(lines)
        if page.next is None:
            break
        assert page.next == page.last + 1
        start = page.next
    assert covered == list(range(first, min(end, len(sizes)) + 1))


def test_long_text_is_cut_folded_or_linked_and_control_characters_spelled() -> None:
    short = views.clip("a\x1b[2Jb\u202ec\nd")
    assert short.head == "a\\x1b[2Jb\\u202ec\nd" and not short.rest and not short.hidden
    folded = views.clip("y" * (views.HEAD_CHARS + 10))
    assert len(folded.head) == views.HEAD_CHARS and folded.rest == "y" * 10 and folded.hidden == 10
    many_lines = views.clip("line\n" * (views.HEAD_LINES + 5))
    assert many_lines.head.count("\n") == views.HEAD_LINES - 1 and many_lines.rest
    huge = views.clip("z" * (views.HEAD_CHARS + views.FOLD_CHARS + 1), more="/session/a/b/text/7")
    assert huge.rest == "" and huge.hidden == views.FOLD_CHARS + 1 and huge.more == "/session/a/b/text/7"


def _link(usage: Usage | None) -> notes.TraceLink:
    return notes.TraceLink("file:///t", "codex", "s", 1, 2, 10, "0" * 64, usage=usage)


def test_token_counts_read_as_log_and_show_print_them_and_unknown_is_said_never_estimated() -> None:
    usage = Usage.of({"gpt-5": ModelUsage(1000, 200, 800), "gpt-5-mini\x1b": ModelUsage(10, 2, 0)})
    shown = views.tokens(_link(usage))
    assert shown.startswith("tokens 1,010 in (800 cached) / 202 out · ")
    assert shown.endswith("; gpt-5-mini 10 in / 2 out"), "a model name's control character is not shown"
    assert views.tokens(_link(None)) == "tokens unknown"


def _gemini_link() -> notes.TraceLink:
    return notes.TraceLink("file:///t", "gemini", "s", 1, 3, 10, "0" * 64)


class CountingRedactor(Redactor):
    """The real redactor, remembering how many bytes each call was given."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []

    def redact_bytes(self, data: bytes) -> tuple[bytes, Any]:
        self.seen.append(len(data))
        return super().redact_bytes(data)


def test_a_growing_transcript_is_redacted_once_and_a_rewritten_one_again(tmp_path: Path) -> None:
    """What the viewer shows of a live transcript equals a fresh redaction of it, whether the
    agent appended (only the new lines are redacted) or rewrote the file."""
    secret = "sk-proj-" + "Ab3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gH3jK5mN7pQ9s"
    redactor, fresh = CountingRedactor(), Redactor()
    transcript = tmp_path / "t.jsonl"
    first_raw = b'{"text": "first"}\n{"key": "%s"}\n' % secret.encode()
    transcript.write_bytes(first_raw)
    viewer = Loader(Paths(tmp_path, tmp_path, tmp_path, tmp_path), redactor)
    first = viewer.local(transcript, redact=True)
    assert first is not None and secret.encode() not in first.data
    assert first.data == fresh.redact_bytes(first_raw)[0]
    first.matches(len(first.data), hashlib.sha256(first.data).hexdigest())
    assert first.count == 2

    with transcript.open("ab") as out:
        out.write(b'{"text": "again %s"}\n{"partial": ' % secret.encode())  # and a line being written
    grown = viewer.local(transcript, redact=True)
    assert grown is not None and grown is not first and secret.encode() not in grown.data
    complete = transcript.read_bytes()[: transcript.read_bytes().rfind(b"\n") + 1]
    assert grown.data == fresh.redact_bytes(complete)[0]
    assert grown.count == 3 and grown.line(3).startswith(b'{"text": "again ')
    assert redactor.seen == [len(first_raw), len(complete) - len(first_raw)], "only the appended lines"
    assert grown.matches(len(grown.data), hashlib.sha256(grown.data).hexdigest())
    assert viewer.local(transcript, redact=True) is grown, "unchanged: no new read"

    transcript.write_bytes(b'{"text": "rewritten"}\n')  # not an append: read again whole
    rewritten = viewer.local(transcript, redact=True)
    assert rewritten is not None and rewritten.data == b'{"text": "rewritten"}\n' and rewritten.count == 1


def test_a_gemini_legacy_session_pages_by_message_as_its_notes_count() -> None:
    """Gemini's pre-v0.39 sessions are one pretty-printed JSON document: pseudo-line 1 is the
    metadata and each message one more (what its notes' line ranges count), as `show` reads it."""
    from tracekeeperd.agents.gemini import legacy_json_lines

    data = (FIXTURES / "gemini" / "agent-history_real-session-01.json").read_bytes()
    blob = Loader._blob(data)
    assert blob.pseudo == legacy_json_lines(data) and blob.count == 3
    fmt = blob.format("gemini")
    assert fmt is not None and fmt.name == "gemini"
    page = views.page_of(blob, 1, 1, 3)
    assert (page.first, page.last, page.next) == (1, 3, None)
    piece = Slice(_gemini_link(), blob, "store", True)
    items = views.read_page(piece, page, "/more/")
    assert [item.kind for item in items if item.kind in ("user", "assistant")][:2] == ["user", "assistant"]
    anchors = [item.line for item in items if item.anchor]
    assert len(anchors) == len(set(anchors)) == len({item.line for item in items}), "one #L anchor per line"


def test_turns_of_one_line_share_one_anchor_and_results_fold_under_their_calls() -> None:
    """A record can hold several turns (text and a tool call in one message); the #L<line>
    anchor a link lands on is given once. A result folds under its call by call id."""
    from tracekeeperd.agents import Turn

    turns = [
        Turn("assistant", "let me look", line=5),
        Turn("tool_call", '{"cmd": "ls"}', name="shell", line=5, call_id="a"),
        Turn("tool_call", '{"cmd": "pwd"}', name="shell", line=6, call_id="b"),
        Turn("tool_result", "/work", line=7, call_id="b"),
        Turn("tool_result", "file.txt", line=8, call_id="a"),
    ]
    items = views.conversation(turns, [], "/more/", {7: ["c0ffee"]})
    assert [(item.kind, item.line, item.anchor) for item in items] == [
        ("assistant", 5, True),
        ("tool", 5, False),
        ("tool", 6, True),
        ("commit", 7, False),
    ]
    assert items[1].output is not None and items[1].output.head == "file.txt"
    assert items[2].output is not None and items[2].output.head == "/work"


def test_session_links_are_built_from_the_raw_ids_not_their_shown_form(tmp_path: Path) -> None:
    """A pushed note is hostile: its agent and session id are shown escaped (`\\x1b`), but the link
    must name the session the note really names, or it leads nowhere (the search page did this
    right; the timeline and commit pages built it from the shown form)."""
    raw_session = "s\x1b[2Jx/y"
    link = notes.TraceLink(
        url="file:///nowhere/claude-s.jsonl",
        agent="claude",
        session_id=raw_session,
        first_line=1,
        last_line=2,
        bytes=10,
        sha256="0" * 64,
    )
    viewer = Loader(Paths(tmp_path, tmp_path, tmp_path, tmp_path), Redactor())
    row = views._session_row(viewer, "a" * 40, link)
    assert "\x1b" not in row.session  # shown escaped
    assert row.href == views.session_href("claude", raw_session) == "/session/claude/s%1B%5B2Jx%2Fy"
