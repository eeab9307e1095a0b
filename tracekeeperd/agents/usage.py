"""Token usage per model for one commit's slice of a transcript, as the agent recorded it.

Usage is read, never estimated: a slice with no usage record answers None ("unknown"), and so
does an agent whose transcripts carry none (Cursor, Copilot). One convention for every agent,
whatever its own:

* ``input``: every prompt token the model read, **including** cache reads and cache writes;
* ``cached``: the part of ``input`` read from the prompt cache (Claude ``cache_read_input_tokens``);
* ``cache_write``: the part of ``input`` written to the cache (Claude ``cache_creation_input_tokens``,
  pi ``cacheWrite``), None where the agent does not report it;
* ``output``: every generated token, **including** reasoning;
* ``reasoning``: the part of ``output`` spent thinking, None where the agent does not report it.

OpenAI (Codex) and Gemini already count cached tokens inside input; Anthropic and pi count them
beside it, so for those ``input`` is their input plus both cache fields.

**Slices.** A commit's slice is lines ``start..end`` of the transcript, but records inside it can
only be judged with what came before: Codex re-sends an unchanged running total, Claude writes
one response over several lines, Gemini appends a message again each time it changes. So callers
pass the transcript from line 1 (``enumerate(lines, start=1)``) and the slice bounds; lines
before ``start`` are read for context only and lines after ``end`` are ignored, so a slice's
answer never changes as the session grows. Every response is charged to exactly one slice: the
one holding the line where it is first recorded (``tests/test_usage.py`` checks that slices add
up to the whole). A slice that holds usage records but no new response (a Codex rate-limit
refresh, the tail of a Claude message) is known to have spent nothing: an empty ``Usage``.

This module deliberately does not extend ``TranscriptFormat``: the readers are keyed by format
name in ``_READERS`` so it can land beside other per-format additions without touching them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from .records import Record, as_record, get_list, get_record, get_str, parse_record

if TYPE_CHECKING:
    from .base import TranscriptFormat

#: Model key for usage whose model the transcript does not name.
UNKNOWN_MODEL = "(unknown model)"
#: Model key that the smallest spenders are folded into beyond ``MAX_MODELS``.
OTHER_MODELS = "(other models)"
#: At most this many models per Usage: a garbled transcript must not blow up a note's meta line.
MAX_MODELS = 16
#: Model names longer than this are cut (they come from the transcript: hostile input).
MAX_MODEL_NAME = 100
#: A count above this is garbage, not usage (a trillion tokens in one response).
MAX_COUNT = 10**12

_OPTIONAL = ("cache_write", "reasoning")


def _count(value: object) -> int | None:
    """A token count, or None for anything else (bools, floats, negatives, absurd sizes)."""
    if type(value) is not int or not 0 <= value <= MAX_COUNT:
        return None
    return value


def _add_optional(a: int | None, b: int | None) -> int | None:
    """Unknown plus known is the known part: within one agent a field is either always or never there."""
    if a is None:
        return b
    return a if b is None else a + b


def _max_optional(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else max(a, b)


def model_name(value: object) -> str:
    """A model name safe to store and show: printable, stripped, bounded; else ``UNKNOWN_MODEL``."""
    if not isinstance(value, str):
        return UNKNOWN_MODEL
    name = "".join(char for char in value if char.isprintable()).strip()[:MAX_MODEL_NAME].strip()
    return name or UNKNOWN_MODEL


@dataclass(frozen=True)
class ModelUsage:
    """Tokens one model used; see the module docstring for what each field includes."""

    input: int = 0
    output: int = 0
    cached: int = 0
    cache_write: int | None = None
    reasoning: int | None = None

    def __add__(self, other: ModelUsage) -> ModelUsage:
        return ModelUsage(
            input=self.input + other.input,
            output=self.output + other.output,
            cached=self.cached + other.cached,
            cache_write=_add_optional(self.cache_write, other.cache_write),
            reasoning=_add_optional(self.reasoning, other.reasoning),
        )

    def largest(self, other: ModelUsage) -> ModelUsage:
        """Field by field maximum: the final counts of a response written more than once."""
        return ModelUsage(
            input=max(self.input, other.input),
            output=max(self.output, other.output),
            cached=max(self.cached, other.cached),
            cache_write=_max_optional(self.cache_write, other.cache_write),
            reasoning=_max_optional(self.reasoning, other.reasoning),
        )

    def is_zero(self) -> bool:
        return not any(getattr(self, item.name) for item in fields(self))

    def to_json(self) -> dict[str, int]:
        """``{"input", "output", "cached"}`` always, ``cache_write``/``reasoning`` when reported."""
        value = {"input": self.input, "output": self.output, "cached": self.cached}
        for name in _OPTIONAL:
            count = getattr(self, name)
            if count is not None:
                value[name] = count
        return value

    @classmethod
    def from_json(cls, value: object) -> ModelUsage | None:
        """Read ``to_json``'s shape; None unless input and output are counts. A bad optional is dropped."""
        record = as_record(value)
        if record is None:
            return None
        counts = {name: _count(record.get(name)) for name in ("input", "output", "cached", *_OPTIONAL)}
        if counts["input"] is None or counts["output"] is None:
            return None
        return cls(
            input=counts["input"],
            output=counts["output"],
            cached=counts["cached"] or 0,
            cache_write=counts["cache_write"],
            reasoning=counts["reasoning"],
        )


@dataclass(frozen=True)
class Usage:
    """Token usage per model; build it with ``Usage.of``. An empty Usage means "known, nothing spent"."""

    models: tuple[tuple[str, ModelUsage], ...] = ()

    @classmethod
    def of(cls, per_model: Mapping[str, ModelUsage]) -> Usage:
        """Normalise: names made safe (merging those that collide), sorted, at most ``MAX_MODELS``.

        Beyond the limit the smallest spenders are summed under ``OTHER_MODELS``, so totals are kept.
        """
        merged: dict[str, ModelUsage] = {}
        for name, usage in per_model.items():
            key = model_name(name)
            merged[key] = merged[key] + usage if key in merged else usage
        if len(merged) > MAX_MODELS:
            other = merged.pop(OTHER_MODELS, ModelUsage())
            ranked = sorted(merged.items(), key=lambda item: (-(item[1].input + item[1].output), item[0]))
            merged = dict(ranked[: MAX_MODELS - 1])
            merged[OTHER_MODELS] = sum((usage for _name, usage in ranked[MAX_MODELS - 1 :]), other)
        return cls(tuple(sorted(merged.items())))

    def by_model(self) -> dict[str, ModelUsage]:
        return dict(self.models)

    def total(self) -> ModelUsage:
        return sum((usage for _name, usage in self.models), ModelUsage())

    def __add__(self, other: Usage) -> Usage:
        merged = self.by_model()
        for name, usage in other.models:
            merged[name] = merged[name] + usage if name in merged else usage
        return Usage.of(merged)

    def to_json(self) -> dict[str, dict[str, int]]:
        """The compact form for a note's meta line: ``{model: {"input": n, "output": n, ...}}``."""
        return {name: usage.to_json() for name, usage in self.models}

    @classmethod
    def from_json(cls, value: object) -> Usage | None:
        """Read ``to_json``'s form from a note; None when absent (old notes) or unreadable.

        Notes travel through remotes, so the value is hostile: damaged entries are skipped, names
        are normalised, and a non-empty object with no readable entry is None, not "zero".
        """
        record = as_record(value)
        if record is None:
            return None
        entries = {name: ModelUsage.from_json(item) for name, item in record.items()}
        good = {name: usage for name, usage in entries.items() if usage is not None}
        if record and not good:
            return None
        return cls.of(good)


def sum_usages(usages: Iterable[Usage | None]) -> Usage | None:
    """The sum of the known usages, or None if none is known. Callers that must tell "partly
    unknown" apart count the Nones themselves."""
    known = [usage for usage in usages if usage is not None]
    return sum(known[1:], known[0]) if known else None


# A usage record found on a line: (line, model, what it adds). ``None`` as the amount marks a record
# that adds nothing new (already charged to an earlier line), so the slice still counts as known.
_Charge = tuple[int, str, ModelUsage | None]
_Reader = Callable[[Iterable[tuple[int, bytes]]], Iterator[_Charge]]


def _records(lines: Iterable[tuple[int, bytes]], *needles: bytes) -> Iterator[tuple[int, Record]]:
    """The JSON objects on lines that contain one of ``needles``, a key every usage record has.

    Most of a transcript is prompts and tool output; skipping lines without the key before
    decoding keeps a per-commit pass over a long session cheap. Agents write keys literally, so a
    record that spells its key with JSON escapes is missed, never misread.
    """
    for number, line in lines:
        if any(needle in line for needle in needles):
            record = parse_record(line)
            if record is not None:
                yield number, record


# --- Codex --------------------------------------------------------------------------------------
#
# openai/codex codex-rs/protocol/src/protocol.rs: ``TokenCountEvent {info: Option<TokenUsageInfo>,
# rate_limits}``, ``TokenUsageInfo {total_token_usage, last_token_usage, model_context_window}``,
# ``TokenUsage {input_tokens, cached_input_tokens, output_tokens, reasoning_output_tokens,
# total_tokens}``; ``non_cached_input() = input_tokens - cached_input_tokens`` (cached is inside
# input) and ``append_last_usage`` adds ``last`` to ``total``. codex-rs/rollout/src/policy.rs persists
# every ``TokenCount``, and codex-rs/core/src/codex.rs sends one not only after a response
# (``Session::update_token_usage_info``) but also on every rate-limit update (``update_rate_limits``:
# the same info again), after history changes (``recompute_token_usage``: only ``last.total_tokens``
# set, an estimate) and when the context window overflows (``set_total_tokens_full`` →
# ``fill_to_context_window``: totals overwritten, ``last`` holds only ``total_tokens``). So
# ``last_token_usage`` is charged only when ``total_token_usage`` differs from the previous info's;
# summing it per event would count a response once per rate-limit refresh (the fixtures do this).
# A total that restarts (a resume that did not restore it) also differs, so it is still charged
# once. The model is the latest ``turn_context.model`` (``TurnContextItem``); the event names none.
#
# Not handled: forked rollouts copy their parent's earlier items (docs/agents.md); if those include
# token counts, the fork's first slice is charged for them again.

_CODEX_FIELDS = ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_output_tokens", "total_tokens")


def _codex_usage(last: Record | None) -> ModelUsage | None:
    input_tokens = _count((last or {}).get("input_tokens"))
    output_tokens = _count((last or {}).get("output_tokens"))
    if input_tokens is None or output_tokens is None:
        return None
    cached = _count((last or {}).get("cached_input_tokens")) or 0
    return ModelUsage(
        input=input_tokens,
        output=output_tokens,
        cached=min(cached, input_tokens),
        reasoning=_count((last or {}).get("reasoning_output_tokens")),
    )


def _codex(lines: Iterable[tuple[int, bytes]]) -> Iterator[_Charge]:
    model = UNKNOWN_MODEL
    previous_total: tuple[int | None, ...] | None = None
    for number, record in _records(lines, b'"turn_context"', b'"token_count"'):
        payload = get_record(record, "payload")
        kind = get_str(record, "type")
        if kind == "turn_context":
            if get_str(payload, "model") is not None:
                model = model_name(get_str(payload, "model"))
            continue
        if kind != "event_msg" or get_str(payload, "type") != "token_count":
            continue
        info = get_record(payload, "info")
        total = get_record(info, "total_token_usage")
        usage = _codex_usage(get_record(info, "last_token_usage"))
        if total is None or usage is None:
            continue  # info null (rate limits only) or damaged: not a usage record
        total_key = tuple(_count(total.get(name)) for name in _CODEX_FIELDS)
        fresh = total_key != previous_total
        previous_total = total_key
        yield number, model, usage if fresh else None


# --- Claude Code --------------------------------------------------------------------------------
#
# Claude Code is closed source; its records carry the Anthropic Messages API ``usage`` object on
# ``message.usage`` of ``type: "assistant"`` lines (see the fixtures): ``input_tokens`` (uncached
# input only), ``cache_creation_input_tokens``, ``cache_read_input_tokens``, ``output_tokens``
# (thinking included, not reported apart). One API response is written as one line per content
# block, each repeating the response's ``message.id`` and its usage as known at that moment, so a
# response is charged once, at its first line, with the largest counts any of its lines shows (a
# later line can hold the final output count). Lines without ``message.id`` fall back to
# ``requestId``; with neither, each line counts. ``<synthetic>`` messages (errors Claude Code writes
# itself) carry zero usage and so add nothing.


def _claude_usage(usage: Record | None) -> ModelUsage | None:
    input_tokens = _count((usage or {}).get("input_tokens"))
    output_tokens = _count((usage or {}).get("output_tokens"))
    if input_tokens is None or output_tokens is None:
        return None
    read = _count((usage or {}).get("cache_read_input_tokens")) or 0
    write = _count((usage or {}).get("cache_creation_input_tokens")) or 0
    return ModelUsage(input=input_tokens + read + write, output=output_tokens, cached=read, cache_write=write)


def _claude(lines: Iterable[tuple[int, bytes]]) -> Iterator[_Charge]:
    responses: dict[str, tuple[int, str, ModelUsage]] = {}
    for number, record in _records(lines, b'"usage"'):
        if get_str(record, "type") != "assistant":
            continue
        message = get_record(record, "message")
        usage = _claude_usage(get_record(message, "usage"))
        if usage is None:
            continue
        model = model_name(get_str(message, "model"))
        key = get_str(message, "id") or get_str(record, "requestId")
        if key is None:
            yield number, model, usage
        elif key in responses:
            first, first_model, known = responses[key]
            responses[key] = (first, first_model, known.largest(usage))
            yield number, model, None
        else:
            responses[key] = (number, model, usage)
    yield from responses.values()


# --- Gemini CLI ---------------------------------------------------------------------------------
#
# google-gemini/gemini-cli packages/core/src/services/chatRecordingTypes.ts: ``TokensSummary
# {input: promptTokenCount, output: candidatesTokenCount, cached: cachedContentTokenCount, thoughts?:
# thoughtsTokenCount, tool?: toolUsePromptTokenCount, total: totalTokenCount}`` and ``model`` on
# ``type: "gemini"`` messages. chatRecordingService.ts ``recordMessageTokens`` sets a message's tokens
# once (only if it has none) and ``pushMessage`` appends the whole message again whenever it changes,
# so a message is charged at the first line that shows its tokens. Gemini's total is input + output
# + thoughts + tool (the fixtures agree): cached is inside input, thoughts are outside output, and
# tool-use prompt tokens are extra input. ``$rewindTo`` drops messages from the conversation but not
# from the bill, so it is ignored here; ``$set.messages`` entries are read like appended messages.


def _gemini_usage(tokens: Record | None) -> ModelUsage | None:
    input_tokens = _count((tokens or {}).get("input"))
    output_tokens = _count((tokens or {}).get("output"))
    if input_tokens is None or output_tokens is None:
        return None
    thoughts = _count((tokens or {}).get("thoughts")) or 0
    tool = _count((tokens or {}).get("tool")) or 0
    cached = _count((tokens or {}).get("cached")) or 0
    return ModelUsage(
        input=input_tokens + tool,
        output=output_tokens + thoughts,
        cached=min(cached, input_tokens),
        reasoning=thoughts,
    )


def _gemini(lines: Iterable[tuple[int, bytes]]) -> Iterator[_Charge]:
    charged: set[str] = set()
    for number, record in _records(lines, b'"tokens"'):
        updates = get_record(record, "$set")
        messages = get_list(updates, "messages") if updates is not None else [record]
        for item in messages:
            message = as_record(item)
            if get_str(message, "type") != "gemini":
                continue
            usage = _gemini_usage(get_record(message, "tokens"))
            if usage is None:
                continue
            message_id = get_str(message, "id")
            fresh = message_id is None or message_id not in charged
            if message_id is not None:
                charged.add(message_id)
            yield number, model_name(get_str(message, "model")), usage if fresh else None


# --- pi -----------------------------------------------------------------------------------------
#
# badlogic/pi-mono packages/ai/src/types.ts: ``AssistantMessage {model, usage: Usage}`` with ``Usage
# {input, output, cacheRead, cacheWrite, totalTokens, cost}``. The providers store ``input`` without
# the cache: openai-codex-responses.ts sets ``input = input_tokens - cached_tokens``, the Anthropic
# provider ``input = input_tokens`` beside ``cacheRead``/``cacheWrite``, and ``totalTokens`` = the four
# summed. Each entry (``type: "message"``) is written once; an id seen again is not charged again.


def _pi_usage(usage: Record | None) -> ModelUsage | None:
    input_tokens = _count((usage or {}).get("input"))
    output_tokens = _count((usage or {}).get("output"))
    if input_tokens is None or output_tokens is None:
        return None
    read = _count((usage or {}).get("cacheRead")) or 0
    write = _count((usage or {}).get("cacheWrite")) or 0
    return ModelUsage(input=input_tokens + read + write, output=output_tokens, cached=read, cache_write=write)


def _pi(lines: Iterable[tuple[int, bytes]]) -> Iterator[_Charge]:
    charged: set[str] = set()
    for number, record in _records(lines, b'"usage"'):
        message = get_record(record, "message")
        if get_str(record, "type") != "message" or get_str(message, "role") != "assistant":
            continue
        usage = _pi_usage(get_record(message, "usage"))
        if usage is None:
            continue
        entry_id = get_str(record, "id")
        fresh = entry_id is None or entry_id not in charged
        if entry_id is not None:
            charged.add(entry_id)
        yield number, model_name(get_str(message, "model")), usage if fresh else None


# --- Copilot CLI and Cursor: no usage ------------------------------------------------------------
#
# github/copilot-sdk nodejs/src/generated/session-events.ts: ``assistant.usage`` (per-call input,
# output and cache tokens) is ``ephemeral: true``, "not persisted to the session event log on disk".
# What events.jsonl keeps is ``assistant.message.outputTokens`` (output only) and, at
# ``session.shutdown``, ``modelMetrics`` totals for the whole process run, which cannot be cut per
# commit. Cursor's transcript lines are bare ``{role, message}`` (docs/agents.md §4). Both: unknown.

_READERS: dict[str, _Reader] = {"codex": _codex, "claude": _claude, "gemini": _gemini, "pi": _pi}

#: Formats whose transcripts record token usage; for the others every slice is unknown.
AGENTS_WITH_USAGE = frozenset(_READERS)


def slice_usage(
    fmt: TranscriptFormat | str,
    lines: Iterable[tuple[int, bytes]],
    *,
    start: int = 1,
    end: int | None = None,
) -> Usage | None:
    """Tokens per model spent in lines ``start..end`` (1-based, inclusive) of a transcript.

    ``lines`` are ``(line number, raw line)`` pairs from the start of the transcript, like
    ``enumerate(read_lines(path), start=1)``: lines before ``start`` are context (already charged
    responses, the model in effect), lines after ``end`` are ignored. Returns None when the slice
    holds no usage record or the agent records none; never raises on bad lines.
    """
    reader = _READERS.get(fmt if isinstance(fmt, str) else fmt.name)
    if reader is None:
        return None
    bounded = lines if end is None else ((number, line) for number, line in lines if number <= end)
    seen = False
    per_model: dict[str, ModelUsage] = {}
    for number, model, usage in reader(bounded):
        if number < start:
            continue
        seen = True
        if usage is not None and not usage.is_zero():
            per_model[model] = per_model[model] + usage if model in per_model else usage
    return Usage.of(per_model) if seen else None
