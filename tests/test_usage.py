"""Token usage per commit slice, against the real fixtures of every agent that records usage.

Expected figures were derived by hand from the fixture lines (and cross-checked with a throwaway
script that does not use tracekeeperd), as each comment says. Conventions (see agents/usage.py):
``input`` counts every prompt token including cache reads and writes, ``cached`` is the part read
from cache, ``cache_write`` the part written to it, ``reasoning`` the part of ``output`` spent
thinking.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracekeeperd.agents import FORMATS, TranscriptFormat, get_format, read_lines
from tracekeeperd.agents.usage import (
    MAX_MODELS,
    OTHER_MODELS,
    UNKNOWN_MODEL,
    ModelUsage,
    Usage,
    slice_usage,
    sum_usages,
)

from .transcripts import (
    CLAUDE_EDIT,
    CLAUDE_SDK,
    CLAUDE_SPOTTER,
    CODEX_EXEC,
    CODEX_SHORT,
    CODEX_TOOLS,
    COPILOT,
    CURSOR,
    FIXTURES,
    GEMINI_JSONL,
    GEMINI_LEGACY,
    PI,
    SESSIONS,
    load,
)

# Cursor and Copilot keep no token counts on disk (agents/cursor.py, agents/copilot.py).
WITH_USAGE = [relpath for relpath in SESSIONS if relpath not in (CURSOR, COPILOT)]


def fmt_of(agent: str) -> TranscriptFormat:
    fmt = get_format(agent)
    assert fmt is not None, agent
    return fmt


def lines_of(relpath: str) -> list[bytes]:
    return read_lines(FIXTURES / relpath)


def usage_of(relpath: str, lines: list[bytes] | None = None, *, start: int = 1, end: int | None = None) -> Usage | None:
    fmt, _path, whole = load(relpath)
    lines = whole if lines is None else lines
    return slice_usage(fmt, enumerate(lines, start=1), start=start, end=end)


def one(model: str, usage: ModelUsage) -> Usage:
    return Usage.of({model: usage})


# --- whole transcripts -----------------------------------------------------------------------

# Codex: one token_count with info (line 10); last_token_usage = total_token_usage there.
# input 22539 (cached 20864 included), output 10, reasoning 0; model from turn_context line 5.
CODEX_EXEC_USAGE = one("gpt-5.5", ModelUsage(input=22539, output=10, cached=20864, reasoning=0))
# Codex Desktop: line 13 is a token_count with info null (rate limits only), line 19 the one response.
CODEX_SHORT_USAGE = one("gpt-5.3-codex", ModelUsage(input=34469, output=431, cached=3456, reasoning=264))
# Codex with tools: 11 token_count events with info; lines 21, 30, 39, 48, 57 re-send the previous
# event's info unchanged (a rate-limit refresh). The six that changed the running total (18, 27, 36,
# 45, 54, 62) have last_token_usage input 42772+44218+48969+49326+49647+63441 = 298373, cached
# 3456+42880+44288+49152+49408+49664 = 238848, output 204+96+245+179+113+286 = 1123, reasoning
# 124+17+143+81+22+96 = 483: exactly the final total_token_usage on line 62, as it must be for a
# session that started at zero. Summing all 11 would give 533,105 input tokens.
CODEX_TOOLS_USAGE = one("gpt-5.3-codex", ModelUsage(input=298373, output=1123, cached=238848, reasoning=483))
# Claude SDK run, one assistant record (line 4): input_tokens 6 + cache_creation 1045 + cache_read
# 3057 = 4108; output 16.
CLAUDE_SDK_USAGE = one("claude-opus-4-7", ModelUsage(input=4108, output=16, cached=3057, cache_write=1045))
# Claude spotter: one message (msg_01MKH1…) written over lines 5, 6, 7, 8 and 10 with the same usage:
# 3 + 13835 + 11515 = 25353 input, output 13. Counting each line would give five times that.
CLAUDE_SPOTTER_USAGE = one("claude-opus-4-6", ModelUsage(input=25353, output=13, cached=11515, cache_write=13835))
# Claude edit session: five messages (lines 4+5 share one id, 17+18 share another):
#   msg_01W55…  3944 + 26404 + 15552 = 45900 in, out 121   (lines 4, 5)
#   msg_016Gz…     2 +  4099 + 41956 = 46057 in, out 224   (line 7)
#   msg_01Kpt…     2 +   336 + 46055 = 46393 in, out 153   (line 13)
#   msg_01LgJ…     2 +   110 + 46391 = 46503 in, out 347   (lines 17, 18)
#   msg_019Jk…     2 +   413 + 46501 = 46916 in, out 199   (line 20)
# input 231769, output 1044, cached (cache_read) 196455, cache_write 26404+4099+336+110+413 = 31362.
CLAUDE_EDIT_USAGE = one("claude-opus-4-8", ModelUsage(input=231769, output=1044, cached=196455, cache_write=31362))
CLAUDE_EDIT_FIRST_MESSAGE = one("claude-opus-4-8", ModelUsage(input=45900, output=121, cached=15552, cache_write=26404))
# Gemini legacy .json: one gemini message, tokens {input 4383, output 8, cached 0, thoughts 28, tool 0,
# total 4419}: input 4383 + tool 0, output 8 + thoughts 28 = 36 (4383 + 36 = total 4419).
GEMINI_LEGACY_USAGE = one("gemini-2.5-flash", ModelUsage(input=4383, output=36, cached=0, reasoning=28))
# Gemini JSONL (synthetic): message …0002 gets its tokens when re-appended on line 6 (5120 in, 31 out,
# 12 thoughts), message …0003 on line 8 (5200 in of which 4096 cached, 14 out, 0 thoughts).
GEMINI_JSONL_USAGE = one("gemini-2.5-pro", ModelUsage(input=10320, output=57, cached=4096, reasoning=12))
# pi: one assistant message (line 6), usage {input 433, output 9, cacheRead 0, cacheWrite 0}; pi's
# input excludes cache reads and writes, so input = 433 + 0 + 0.
PI_USAGE = one("gpt-5.5", ModelUsage(input=433, output=9, cached=0, cache_write=0))


@pytest.mark.parametrize(
    ("relpath", "expected"),
    [
        (CODEX_EXEC, CODEX_EXEC_USAGE),
        (CODEX_SHORT, CODEX_SHORT_USAGE),
        (CODEX_TOOLS, CODEX_TOOLS_USAGE),
        (CLAUDE_SDK, CLAUDE_SDK_USAGE),
        (CLAUDE_SPOTTER, CLAUDE_SPOTTER_USAGE),
        (CLAUDE_EDIT, CLAUDE_EDIT_USAGE),
        (GEMINI_LEGACY, GEMINI_LEGACY_USAGE),
        (GEMINI_JSONL, GEMINI_JSONL_USAGE),
        (PI, PI_USAGE),
    ],
)
def test_whole_transcript_usage(relpath: str, expected: Usage) -> None:
    assert usage_of(relpath) == expected


@pytest.mark.parametrize("relpath", [CURSOR, COPILOT])
def test_agents_that_record_no_usage_are_unknown(relpath: str) -> None:
    # Copilot's synthetic fixture has assistant.message outputTokens (output only, no input): that is
    # not a usage record; assistant.usage is ephemeral and never reaches events.jsonl.
    assert load(relpath)[0].usage is None
    assert usage_of(relpath) is None


def test_the_formats_that_read_usage_are_the_agents_that_record_it() -> None:
    assert {fmt.name for fmt in FORMATS if fmt.usage is not None} == {"codex", "claude", "gemini", "pi"}


# --- slices ----------------------------------------------------------------------------------


def test_codex_slice_counts_only_its_own_responses() -> None:
    # Lines 20-30: 21 re-sends line 18's info and 30 re-sends 27's; only 27 is a new response.
    assert usage_of(CODEX_TOOLS, start=20, end=30) == one(
        "gpt-5.3-codex", ModelUsage(input=44218, output=96, cached=42880, reasoning=17)
    )
    # Lines 1-19: the first response (line 18); the info-null event on line 12 is not usage.
    assert usage_of(CODEX_TOOLS, end=19) == one(
        "gpt-5.3-codex", ModelUsage(input=42772, output=204, cached=3456, reasoning=124)
    )


def test_codex_slice_with_only_a_resent_count_is_known_and_zero() -> None:
    # Lines 19-21: line 21 repeats line 18 (counted in the slice before): usage is recorded there,
    # and this slice spent nothing.
    usage = usage_of(CODEX_TOOLS, start=19, end=21)
    assert usage == Usage.of({})
    assert usage is not None
    assert usage.total() == ModelUsage()


def test_codex_slice_without_usage_records_is_unknown() -> None:
    # Lines 1-12: session_meta, prompts, turn_context, and a token_count whose info is null.
    assert usage_of(CODEX_TOOLS, end=12) is None


def test_codex_estimates_and_window_fills_are_not_usage() -> None:
    # openai/codex codex-rs/core/src/codex.rs: recompute_token_usage keeps the total and sets only
    # last.total_tokens (an estimate); set_total_tokens_full -> fill_to_context_window
    # (codex-rs/protocol/src/protocol.rs) overwrites the total with {total_tokens: window} and last
    # with {total_tokens: delta}. Neither is a response's usage.
    lines = lines_of(CODEX_TOOLS)
    final = json.loads(lines[61])  # line 62, the last response
    zero = dict.fromkeys(final["payload"]["info"]["last_token_usage"], 0)
    estimate = json.loads(lines[61])
    estimate["payload"]["info"]["last_token_usage"] = {**zero, "total_tokens": 51234}
    fill = json.loads(lines[61])
    fill["payload"]["info"]["total_token_usage"] = {**zero, "total_tokens": 258400}
    fill["payload"]["info"]["last_token_usage"] = {**zero, "total_tokens": max(258400 - 299496, 0)}
    lines += [json.dumps(estimate).encode(), json.dumps(fill).encode()]
    assert usage_of(CODEX_TOOLS, lines) == CODEX_TOOLS_USAGE
    assert usage_of(CODEX_TOOLS, lines, start=63) == Usage.of({})


def test_codex_model_comes_from_the_latest_turn_context() -> None:
    lines = lines_of(CODEX_TOOLS)
    record = json.loads(lines[46])  # line 47 is a turn_context
    assert record["type"] == "turn_context"
    record["payload"]["model"] = "gpt-5.3-codex-mini"
    lines[46] = json.dumps(record).encode()
    usage = usage_of(CODEX_TOOLS, lines)
    assert usage is not None
    # Line 54 answers the turn of line 47 (line 48 only re-sends 45); line 56 switches back.
    mini = ModelUsage(input=49647, output=113, cached=49408, reasoning=22)
    assert usage.by_model() == {
        "gpt-5.3-codex-mini": mini,
        "gpt-5.3-codex": ModelUsage(input=298373 - 49647, output=1123 - 113, cached=238848 - 49408, reasoning=483 - 22),
    }
    assert usage.total() == CODEX_TOOLS_USAGE.total()


def test_claude_message_split_over_lines_is_counted_once_across_slices() -> None:
    # The message spans lines 5-10. The slice that holds its first line is charged for it…
    assert usage_of(CLAUDE_SPOTTER, end=6) == CLAUDE_SPOTTER_USAGE
    # …and the next slice, holding its other lines, is known to have spent nothing more.
    later = usage_of(CLAUDE_SPOTTER, start=7)
    assert later == Usage.of({})


def test_claude_slices_of_the_edit_session() -> None:
    assert usage_of(CLAUDE_EDIT, end=4) == CLAUDE_EDIT_FIRST_MESSAGE
    rest = usage_of(CLAUDE_EDIT, start=5)
    assert rest is not None
    assert rest + CLAUDE_EDIT_FIRST_MESSAGE == CLAUDE_EDIT_USAGE
    # Line 5 repeats line 4's message: a slice of lines 5-6 has a usage record but no new spend.
    assert usage_of(CLAUDE_EDIT, start=5, end=6) == Usage.of({})
    # No assistant lines at all: unknown.
    assert usage_of(CLAUDE_EDIT, end=3) is None


def test_claude_split_message_keeps_the_largest_counts() -> None:
    # Streaming writes a block per line; a later line can carry the final output count.
    lines = lines_of(CLAUDE_SPOTTER)
    record = json.loads(lines[9])  # line 10, same message.id as line 5
    record["message"]["usage"]["output_tokens"] = 420
    lines[9] = json.dumps(record).encode()
    usage = usage_of(CLAUDE_SPOTTER, lines)
    assert usage == one("claude-opus-4-6", ModelUsage(input=25353, output=420, cached=11515, cache_write=13835))


def test_claude_records_without_message_id_each_count() -> None:
    lines = lines_of(CLAUDE_SDK)
    record = json.loads(lines[3])
    del record["message"]["id"]
    del record["requestId"]
    lines.append(json.dumps(record).encode())
    lines[3] = json.dumps(record).encode()
    usage = usage_of(CLAUDE_SDK, lines)
    assert usage is not None
    assert usage.total() == CLAUDE_SDK_USAGE.total() + CLAUDE_SDK_USAGE.total()


def test_gemini_slices() -> None:
    # From line 7 on, only message …0003 (line 8) gets tokens.
    assert usage_of(GEMINI_JSONL, start=7) == one(
        "gemini-2.5-pro", ModelUsage(input=5200, output=14, cached=4096, reasoning=0)
    )
    # Lines 1-5: message …0002 exists but has no tokens yet: no usage record.
    assert usage_of(GEMINI_JSONL, end=5) is None


def test_gemini_message_appended_again_is_not_counted_again() -> None:
    # gemini-cli appends a message again whenever it changes (tool results), tokens included.
    lines = lines_of(GEMINI_JSONL)
    lines.append(lines[5])  # line 6 again, as line 16
    assert usage_of(GEMINI_JSONL, lines) == GEMINI_JSONL_USAGE
    assert usage_of(GEMINI_JSONL, lines, start=16) == Usage.of({})


def test_gemini_rewind_does_not_refund_spent_tokens() -> None:
    lines = lines_of(GEMINI_JSONL)
    record = json.loads(lines[10])  # line 11: message …0005, rewound by line 12
    assert record["id"] == "0a9b8c7d-5555-4aaa-8bbb-000000000005"
    record["tokens"] = {"input": 100, "output": 5, "cached": 0, "thoughts": 1, "tool": 2, "total": 108}
    lines[10] = json.dumps(record).encode()
    usage = usage_of(GEMINI_JSONL, lines)
    assert usage == GEMINI_JSONL_USAGE + one("gemini-2.5-pro", ModelUsage(input=102, output=6, reasoning=1))


def test_slice_end_ignores_later_lines() -> None:
    full = lines_of(CODEX_TOOLS)
    assert usage_of(CODEX_TOOLS, full, end=30) == usage_of(CODEX_TOOLS, full[:30])


def test_start_after_the_last_line_is_unknown() -> None:
    assert usage_of(CODEX_TOOLS, start=1000) is None


@pytest.mark.parametrize("relpath", WITH_USAGE)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_slices_add_up_to_the_whole(relpath: str, data: st.DataObject) -> None:
    """Any cut of a transcript into consecutive commit slices charges every response exactly once."""
    lines = lines_of(relpath)
    cuts = sorted(data.draw(st.sets(st.integers(min_value=1, max_value=len(lines) - 1), max_size=6)))
    bounds = list(zip([1, *[cut + 1 for cut in cuts]], [*cuts, len(lines)], strict=True))
    parts = [usage_of(relpath, lines, start=first, end=last) for first, last in bounds]
    assert sum_usages(parts) == usage_of(relpath, lines)


# --- the note's JSON -------------------------------------------------------------------------


def test_to_json_is_compact_and_round_trips() -> None:
    usage = CLAUDE_EDIT_USAGE + CODEX_TOOLS_USAGE
    value = usage.to_json()
    assert value == {
        "claude-opus-4-8": {"input": 231769, "output": 1044, "cached": 196455, "cache_write": 31362},
        "gpt-5.3-codex": {"input": 298373, "output": 1123, "cached": 238848, "reasoning": 483},
    }
    assert Usage.from_json(json.loads(json.dumps(value))) == usage
    assert Usage.from_json(Usage.of({}).to_json()) == Usage.of({})


@pytest.mark.parametrize(
    "value",
    [
        None,  # an old note without usage
        "unknown",
        42,
        [],
        {"m": "lots"},
        {"m": {"input": -1, "output": 2}},
        {"m": {"input": True, "output": 2}},
        {"m": {"input": 1}},
        {"m": {"input": 10**30, "output": 1}},
        {"m": {"input": 1.5, "output": 1}},
    ],
)
def test_from_json_tolerates_absence_and_garbage(value: object) -> None:
    assert Usage.from_json(value) is None


def test_from_json_skips_damaged_entries_and_keeps_good_ones() -> None:
    value = {
        "good": {"input": 3, "output": 1},
        "bad": {"input": "3"},
        "optional-bad": {"input": 3, "output": 1, "reasoning": "x"},
    }
    assert Usage.from_json(value) == Usage.of(
        {"good": ModelUsage(input=3, output=1), "optional-bad": ModelUsage(input=3, output=1)}
    )


def test_model_names_are_made_printable_and_bounded() -> None:
    hostile = "\x1b[31mgpt\n" + "x" * 500
    usage = Usage.of({hostile: ModelUsage(input=1, output=1), "   ": ModelUsage(input=2, output=2)})
    names = list(usage.by_model())
    assert all(name.isprintable() and len(name) <= 100 for name in names)
    assert UNKNOWN_MODEL in names
    assert any(name.startswith("[31mgpt") for name in names)


def test_many_models_fold_into_other() -> None:
    per_model = {f"model-{i:02}": ModelUsage(input=100 + i, output=1) for i in range(MAX_MODELS + 5)}
    usage = Usage.of(per_model)
    models = usage.by_model()
    assert len(models) == MAX_MODELS
    assert OTHER_MODELS in models
    assert usage.total() == sum(per_model.values(), ModelUsage())
    # The biggest spenders keep their names.
    assert f"model-{MAX_MODELS + 4:02}" in models


def test_sum_usages() -> None:
    assert sum_usages([None, None]) is None
    assert sum_usages([]) is None
    assert sum_usages([None, PI_USAGE, PI_USAGE]) == one(
        "gpt-5.5", ModelUsage(input=866, output=18, cached=0, cache_write=0)
    )


def test_optional_counts_add_as_unknown_plus_known() -> None:
    assert (ModelUsage(input=1, output=1) + ModelUsage(input=1, output=1)).reasoning is None
    assert (ModelUsage(input=1, output=1) + ModelUsage(input=1, output=1, reasoning=3)).reasoning == 3


# --- hostile input ---------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=True)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
USAGE_KEYS = [
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "reasoning_output_tokens",
    "total_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "input",
    "output",
    "cached",
    "thoughts",
    "tool",
    "total",
    "cacheRead",
    "cacheWrite",
]
COUNTS = st.one_of(st.integers(min_value=0, max_value=50), JSON_VALUES)
USAGE_LIKE = st.one_of(JSON_VALUES, st.dictionaries(st.sampled_from(USAGE_KEYS), COUNTS, max_size=len(USAGE_KEYS)))
IDS = st.one_of(st.sampled_from(["a", "b"]), JSON_VALUES)


def _records() -> st.SearchStrategy[object]:
    codex = st.builds(
        lambda model, total, last, info_null: (
            {
                "type": "event_msg",
                "payload": {
                    "type": "token_count",
                    "info": None if info_null else {"total_token_usage": total, "last_token_usage": last},
                },
            }
            if model is None
            else {"type": "turn_context", "payload": {"model": model}}
        ),
        st.one_of(st.none(), JSON_VALUES),
        USAGE_LIKE,
        USAGE_LIKE,
        st.booleans(),
    )
    claude = st.builds(
        lambda msg_id, model, usage: {"type": "assistant", "message": {"id": msg_id, "model": model, "usage": usage}},
        IDS,
        JSON_VALUES,
        USAGE_LIKE,
    )
    gemini = st.builds(
        lambda msg_id, model, tokens, wrap: (
            {"$set": {"messages": [{"id": msg_id, "type": "gemini", "tokens": tokens}]}}
            if wrap
            else {"id": msg_id, "type": "gemini", "model": model, "tokens": tokens}
        ),
        IDS,
        JSON_VALUES,
        USAGE_LIKE,
        st.booleans(),
    )
    pi = st.builds(
        lambda entry_id, model, usage: {
            "type": "message",
            "id": entry_id,
            "message": {"role": "assistant", "model": model, "usage": usage},
        },
        IDS,
        JSON_VALUES,
        USAGE_LIKE,
    )
    return st.one_of(codex, claude, gemini, pi, JSON_VALUES)


LINES = st.lists(
    st.one_of(
        _records().map(lambda record: json.dumps(record).encode()),
        st.binary(max_size=40),
        st.sampled_from([line for path in WITH_USAGE for line in read_lines(FIXTURES / path)]),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(
    agent=st.sampled_from(sorted(fmt.name for fmt in FORMATS)),
    lines=LINES,
    start=st.integers(min_value=-2, max_value=14),
    end=st.one_of(st.none(), st.integers(min_value=-2, max_value=14)),
)
def test_garbled_lines_never_raise(agent: str, lines: list[bytes], start: int, end: int | None) -> None:
    usage = slice_usage(fmt_of(agent), enumerate(lines, start=1), start=start, end=end)
    if usage is None:
        return
    assert len(usage.by_model()) <= MAX_MODELS
    for name, entry in usage.by_model().items():
        assert name.isprintable()
        assert name.strip()
        counts = [entry.input, entry.output, entry.cached, entry.cache_write, entry.reasoning]
        assert all(count is None or (type(count) is int and count >= 0) for count in counts)
    assert Usage.from_json(json.loads(json.dumps(usage.to_json()))) == usage


@settings(max_examples=300, deadline=None)
@given(
    value=JSON_VALUES
    | st.dictionaries(
        st.text(max_size=8),
        st.dictionaries(st.sampled_from(["input", "output", "cached", "cache_write", "reasoning"]), COUNTS),
        max_size=4,
    )
)
def test_from_json_never_raises(value: object) -> None:
    usage = Usage.from_json(value)
    if usage is not None:
        assert Usage.from_json(usage.to_json()) == usage
